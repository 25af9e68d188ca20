// The cpc dashboard: a small page script over the JSON API (/api/v1) and the
// event stream (/api/v1/events). Views load what they show through the API
// and then keep it current from the stream. Only heartbeats are not all in
// the stream (they are journaled coarsely), so the workers and leases views
// also fetch their lists every few seconds.
// Everything that comes from the server is put in the page as text, never as
// markup, since job names, commands and logs are whatever users wrote.
// Charts are drawn by uPlot (served beside this script from its npm package).

import uPlot from './uplot.js';

const STATES = ['waiting', 'queued', 'running', 'done', 'failed', 'cancelled'];
const PAGE_SIZE = 50;
/** Seconds between fetches of the workers' and leases' lists (heartbeats move them). */
const HEARTBEAT_REFRESH_S = 5;
/** Characters of a log shown per page. */
const LOG_PAGE = 64 * 1024;
const TOKEN_KEY = 'cpc.token';
const USER_KEY = 'cpc.user';

const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  user: sessionStorage.getItem(USER_KEY),
  superuser: false,
};

// ---- small helpers ------------------------------------------------------------

/** Builds an element; strings and numbers among the children become text nodes. */
/** A table head from column names; the names in `numeric` are right-aligned. */
function thead(columns, numeric = []) {
  return h('thead', {}, h('tr', {}, columns.map((c) => h('th', numeric.includes(c) ? { class: 'num' } : {}, c))));
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (sel, root = document) => root.querySelector(sel);

function ago(ts, now = Date.now()) {
  if (ts === undefined || ts === null) return '';
  const d = now - ts;
  const abs = Math.abs(d);
  if (abs < 1000) return 'now';
  let t;
  if (abs < 60_000) t = `${Math.floor(abs / 1000)}s`;
  else if (abs < 3_600_000) t = `${Math.floor(abs / 60_000)}m ${Math.floor((abs % 60_000) / 1000)}s`;
  else if (abs < 172_800_000) t = `${Math.floor(abs / 3_600_000)}h ${Math.floor((abs % 3_600_000) / 60_000)}m`;
  else t = `${Math.floor(abs / 86_400_000)}d`;
  return d >= 0 ? `${t} ago` : `in ${t}`;
}

function duration(ms) {
  if (ms === undefined || ms === null || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.round(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

const when = (ts) => (ts ? new Date(ts).toLocaleString() : '');
const stateBadge = (state) => h('span', { class: `state ${state}`, 'data-state': state }, state);
/** The short form cpcc's tables show too: an id's last group, which cpcc and the API take back (core/short-ids.ts). */
const shortId = (id) => (/^[0-9a-f-]{36}$/.test(id) ? id.slice(-12) : id);
const commandText = (job) =>
  job.shell !== undefined ? job.shell : (job.argv ?? []).map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');

function countsView(counts) {
  return h(
    'span',
    { class: 'counts' },
    STATES.map((s) => h('span', { class: 'count', 'data-count': s }, stateBadge(s), h('b', {}, counts?.[s] ?? 0))),
  );
}

function total(counts) {
  return STATES.reduce((n, s) => n + (counts?.[s] ?? 0), 0);
}

/** Calls `fn` at most once per `ms`, the last call winning. */
function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn();
    }, wait);
  };
}

// ---- API ------------------------------------------------------------------------

class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

async function api(path, { method = 'GET', body, text = false, blob = false, raw = false, query } = {}) {
  const headers = { accept: text ? 'text/plain' : 'application/json' };
  if (session.token) headers.authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let url = `/api/v1${path}`;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
    if ([...q].length > 0) url += `?${q}`;
  }
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  if (!res.ok) {
    let err = { code: 'HTTP_' + res.status, message: res.statusText };
    try {
      err = (await res.json()).error ?? err;
    } catch {
      // not JSON
    }
    if (res.status === 401 && path !== '/login') endSession('Your session ended; log in again.');
    throw new ApiError(err.code, err.message, res.status);
  }
  if (raw) return res;
  return blob ? res.blob() : text ? res.text() : res.json();
}

/** Downloads a file the API serves (with the session's token, which a plain link would not send). */
async function download(path, name) {
  const url = URL.createObjectURL(await api(path, { blob: true }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// ---- session -----------------------------------------------------------------------

function showLogin(message = '') {
  $('#login').hidden = false;
  $('#view').replaceChildren();
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#live').hidden = true;
  $('#who').textContent = '';
  $('#login-error').textContent = message;
  $('#login-form input[name=user]').focus();
}

function endSession(message) {
  session.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
  stream.stop();
  showLogin(message);
}

async function startSession() {
  const me = await api('/whoami');
  session.user = me.user;
  session.superuser = me.superuser;
  $('#login').hidden = true;
  $('#nav').hidden = false;
  $('#nav-peers').hidden = !me.superuser;
  $('#logout').hidden = false;
  $('#live').hidden = false;
  $('#who').textContent = me.user + (me.superuser ? ' (super user)' : '');
  stream.start();
  route();
}

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = e.target;
  const user = form.user.value.trim();
  const password = form.password.value;
  $('#login-error').textContent = '';
  try {
    const reply = await api('/login', { method: 'POST', body: { user, password } });
    session.token = reply.token;
    sessionStorage.setItem(TOKEN_KEY, reply.token);
    sessionStorage.setItem(USER_KEY, reply.user);
    form.password.value = '';
    await startSession();
  } catch (err) {
    $('#login-error').textContent = err.message;
  }
});

$('#logout').addEventListener('click', async () => {
  try {
    await api('/logout', { method: 'POST', body: {} });
  } catch {
    // the session ends here either way
  }
  endSession('');
});

// ---- event stream ---------------------------------------------------------------------

/**
 * One websocket to /api/v1/events, reconnecting with the last position seen
 * so that nothing is missed; when the server can no longer resume (`reset`),
 * the current view reloads.
 */
const stream = {
  ws: null,
  cursor: undefined,
  retryMs: 500,
  timer: null,
  running: false,

  start() {
    this.running = true;
    this.connect();
  },

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.cursor = undefined;
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  },

  connect() {
    if (!this.running || !session.token) return;
    const ws = new WebSocket(`wss://${location.host}/api/v1/events`, ['cpc.events.v1']);
    this.ws = ws;
    ws.onopen = () => {
      const hello = { type: 'hello', token: session.token };
      if (this.cursor !== undefined) hello.cursor = this.cursor;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (m) => this.receive(JSON.parse(m.data));
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      setLive(false);
      if (e.code === 4401) return endSession('Your session ended; log in again.');
      if (!this.running) return;
      this.timer = setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(10_000, this.retryMs * 2);
    };
  },

  receive(msg) {
    switch (msg.type) {
      case 'ready':
        this.retryMs = 500;
        this.cursor = msg.seq;
        setLive(true);
        return;
      case 'reset':
        this.retryMs = 500;
        this.cursor = msg.seq;
        setLive(true);
        view.reload?.();
        return;
      case 'position':
        this.cursor = Math.max(this.cursor ?? 0, msg.seq);
        return;
      case 'event':
        this.cursor = Math.max(this.cursor ?? 0, msg.seq);
        view.onEvent?.(msg);
        return;
      case 'peers':
        view.onPeers?.(msg.peers);
        return;
      default:
        return;
    }
  },
};

function setLive(up) {
  const el = $('#live');
  el.className = `live ${up ? 'up' : 'down'}`;
  el.textContent = up ? 'live' : 'reconnecting';
  el.dataset.live = up ? 'up' : 'down';
}

// ---- routing ----------------------------------------------------------------------------

/** The view on screen: its handlers for stream events, clock ticks and reloads. */
let view = {};

function route() {
  if (!session.token) return showLogin();
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = hash.split('?');
  const query = new URLSearchParams(qs ?? '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const root = $('#view');
  view = {};
  for (const a of document.querySelectorAll('#nav a')) a.classList.remove('active');
  const nav = (name) => $(`#nav a[data-nav=${name}]`)?.classList.add('active');
  if (parts[0] === 'p' && parts[1]) {
    nav('projects');
    view = projectView(root, parts[1], query);
  } else if (parts[0] === 'j' && parts[1]) {
    nav('projects');
    view = jobView(root, parts[1]);
  } else if (parts[0] === 'workers') {
    nav('workers');
    view = workersView(root);
  } else if (parts[0] === 'leases') {
    nav('leases');
    view = leasesView(root);
  } else if (parts[0] === 'peers') {
    nav('peers');
    view = peersView(root);
  } else {
    nav('projects');
    view = projectsView(root);
  }
  guard(view);
  view.reload?.();
}

/**
 * Holds stream events while the view loads and applies them after: an API
 * answer may be older than an event that arrived before it, and must not
 * hide it. Views reload through `view.reload`, so every load is guarded.
 */
function guard(v) {
  const load = v.reload;
  const apply = v.onEvent;
  if (!load) return;
  let loading = null;
  let held = [];
  const run = async () => {
    try {
      await load();
    } finally {
      loading = null;
      const later = held;
      held = [];
      for (const ev of later) apply?.(ev);
    }
  };
  // A view left behind (the user moved on) loads nothing more.
  v.reload = () => (view !== v ? Promise.resolve() : (loading ??= run()));
  if (apply) v.onEvent = (ev) => (loading ? held.push(ev) : apply(ev));
}

window.addEventListener('hashchange', route);
setInterval(() => view.onTick?.(), 1000);

function failure(root, err) {
  root.replaceChildren(h('p', { class: 'error', role: 'alert' }, err.message));
}

// ---- projects -------------------------------------------------------------------------------

function projectsView(root) {
  const rows = new Map();
  const tbody = h('tbody');
  root.replaceChildren(
    h('h1', {}, 'Projects'),
    h('table', { id: 'projects' }, h('thead', {}, h('tr', {}, h('th', {}, 'project'), h('th', {}, 'owner'), h('th', {}, 'jobs by state'), h('th', { class: 'num' }, 'total'))), tbody),
  );
  const row = (p) =>
    h(
      'tr',
      { 'data-project': p.name },
      h('td', {}, h('a', { href: `#/p/${encodeURIComponent(p.name)}` }, p.name)),
      h('td', {}, p.owner),
      h('td', {}, countsView(p.counts)),
      h('td', { class: 'num' }, total(p.counts)),
    );
  const reload = async () => {
    try {
      const { projects } = await api('/projects');
      rows.clear();
      tbody.replaceChildren(...projects.map((p) => {
        const r = row(p);
        rows.set(p.name, r);
        return r;
      }));
      if (projects.length === 0) tbody.append(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No projects yet.')));
    } catch (err) {
      failure(root, err);
    }
  };
  const later = throttle(() => self.reload(), 1000);
  const self = {
    reload,
    onEvent(ev) {
      for (const p of ev.projects ?? []) {
        const r = rows.get(p.name);
        if (p.removed || !r) later();
        else r.replaceWith(rows.set(p.name, row(p)).get(p.name));
      }
    },
  };
  return self;
}

// ---- one project's jobs -----------------------------------------------------------------------

function projectView(root, name, query) {
  const state = STATES.includes(query.get('state')) ? query.get('state') : '';
  const after = query.get('after') ?? '';
  // Earlier pages' cursors, to page back (the API pages forward only).
  const back = (query.get('back') ?? '').split(',').filter(Boolean);
  const link = (q) => {
    const s = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v) s.set(k, v);
    const t = s.toString();
    return `#/p/${encodeURIComponent(name)}${t ? `?${t}` : ''}`;
  };
  const counts = h('div', { id: 'project-counts' });
  const tbody = h('tbody');
  const rows = new Map();
  const pager = h('div', { class: 'pager' });
  const values = h('div', { id: 'values-section' });
  const charts = usageCharts(name);
  root.replaceChildren(
    h('h1', {}, h('a', { href: '#/' }, 'Projects'), ' / ', name),
    counts,
    charts.el,
    h(
      'div',
      { class: 'filters', id: 'state-filter' },
      h('a', { href: link({}), class: state === '' ? 'active' : '' }, 'all'),
      STATES.map((s) => h('a', { href: link({ state: s }), class: state === s ? 'active' : '', 'data-filter': s }, s)),
    ),
    h(
      'table',
      { id: 'jobs' },
      thead(['job', 'name', 'state', 'command', 'tries', 'exit', 'took', 'updated'], ['tries', 'exit']),
      tbody,
    ),
    pager,
    h('h2', {}, 'Values'),
    values,
  );
  const showValues = (list) =>
    values.replaceChildren(
      list.length === 0
        ? h('p', { class: 'muted' }, "No values; set them with cpcc set, cpcc setf, or a job's --output-to.")
        : h(
            'table',
            { id: 'values' },
            thead(['name', 'value', 'set', '']),
            h(
              'tbody',
              {},
              list.map((v) =>
                h(
                  'tr',
                  { 'data-value': v.name },
                  h('td', { class: 'mono' }, v.name),
                  h('td', { class: v.text !== undefined ? 'mono' : '' }, v.text !== undefined ? v.text.slice(0, 200) : `file, ${v.size} bytes${v.job ? ` from job ${shortId(v.job)}` : ''}`),
                  h('td', { 'data-ts': v.at, title: when(v.at) }, ago(v.at)),
                  h(
                    'td',
                    {},
                    v.sha256 === undefined
                      ? ''
                      : h(
                          'button',
                          {
                            type: 'button',
                            onclick: () =>
                              download(`/projects/${encodeURIComponent(name)}/values/${encodeURIComponent(v.name)}/file`, v.name.split('/').pop()).catch((err) =>
                                values.append(h('p', { class: 'error' }, err.message)),
                              ),
                          },
                          'Download',
                        ),
                  ),
                ),
              ),
            ),
          ),
    );
  const loadValues = async () => showValues((await api(`/projects/${encodeURIComponent(name)}/values`)).values);
  const row = (j) =>
    h(
      'tr',
      { 'data-job-id': j.id },
      h('td', { class: 'mono' }, h('a', { href: `#/j/${j.id}`, title: j.id }, shortId(j.id))),
      h('td', {}, j.name ?? ''),
      h('td', { class: 'job-state' }, stateBadge(j.state)),
      h('td', { class: 'mono' }, commandText(j).slice(0, 80)),
      h('td', { class: 'num' }, j.attempts.length ?? j.attempts),
      h('td', { class: 'num' }, j.exitCode ?? ''),
      h('td', {}, duration(j.durationMs)),
      h('td', { 'data-ts': j.updatedAt, title: when(j.updatedAt) }, ago(j.updatedAt)),
    );
  const reload = async () => {
    try {
      const [project, page] = await Promise.all([
        api(`/projects/${encodeURIComponent(name)}`),
        // Newest first: a job submitted while the page is open comes in at the top of the first page.
        api(`/projects/${encodeURIComponent(name)}/jobs`, { query: { state, after, limit: PAGE_SIZE, order: 'desc' } }),
        loadValues(),
      ]);
      // Off the page's critical path: the figures cover every job, archived ones too.
      charts.load();
      counts.replaceChildren(countsView(project.counts), h('span', { class: 'muted' }, ` ${total(project.counts)} jobs`));
      rows.clear();
      tbody.replaceChildren(...page.jobs.map((j) => {
        const r = row(j);
        rows.set(j.id, r);
        return r;
      }));
      if (page.jobs.length === 0) tbody.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, state ? `No ${state} jobs.` : 'No jobs.')));
      const prev = back.length > 0 ? link({ state, after: back[back.length - 1] === '-' ? '' : back[back.length - 1], back: back.slice(0, -1).join(',') }) : null;
      const next = page.next ? link({ state, after: page.next, back: [...back, after || '-'].join(',') }) : null;
      pager.replaceChildren(
        h('button', { type: 'button', id: 'first-page', disabled: !after, onclick: () => (location.hash = link({ state })) }, 'First'),
        h('button', { type: 'button', id: 'prev-page', disabled: !prev, onclick: () => prev && (location.hash = prev) }, 'Previous'),
        h('button', { type: 'button', id: 'next-page', disabled: !next, onclick: () => next && (location.hash = next) }, 'Next'),
        h('span', { class: 'muted' }, `page ${back.length + 1}, ${PAGE_SIZE} per page, newest first`),
      );
    } catch (err) {
      failure(root, err);
    }
  };
  // New jobs and jobs leaving the filter change which jobs are on the page;
  // the page is fetched again, at most once a second however busy the project.
  const later = throttle(() => self.reload(), 1000);
  const laterValues = throttle(() => loadValues().catch((err) => values.replaceChildren(h('p', { class: 'error' }, err.message))), 1000);
  const self = {
    reload,
    onEvent(ev) {
      for (const p of ev.projects ?? []) {
        if (p.name !== name) continue;
        if (p.removed) return failure(root, new Error(`project '${name}' was removed`));
        if (ev.kind === 'value-set' || ev.kind === 'attempt-finished') laterValues();
        if (CHART_KINDS.has(ev.kind)) charts.later();
        counts.replaceChildren(countsView(p.counts), h('span', { class: 'muted' }, ` ${total(p.counts)} jobs`));
      }
      for (const j of ev.jobs ?? []) {
        if (j.project !== name) continue;
        const r = rows.get(j.id);
        if (!r || (state && j.state !== state)) {
          later();
          continue;
        }
        r.querySelector('.job-state').replaceChildren(stateBadge(j.state));
        r.children[4].textContent = j.attempts;
        if (j.attempt?.exitCode !== undefined && j.attempt.exitCode !== null) r.children[5].textContent = j.attempt.exitCode;
        r.children[7].dataset.ts = j.updatedAt;
        r.children[7].textContent = ago(j.updatedAt);
      }
      if ((ev.omitted ?? []).some((o) => o.project === name)) later();
    },
    onTick() {
      for (const td of tbody.querySelectorAll('td[data-ts]')) td.textContent = ago(Number(td.dataset.ts));
    },
  };
  return self;
}

// ---- usage charts ------------------------------------------------------------------------------

/** Seconds between fetches of a busy project's charts. */
const CHARTS_REFRESH_S = 5;
/** Events that start or end attempts, and so change the charts. */
const CHART_KINDS = new Set(['jobs-claimed', 'attempt-finished', 'attempts-lost', 'attempts-stopped', 'foreign-finished']);

/**
 * A project's usage drawn with uPlot: histograms of measured attempts' wall
 * time and peak memory, and how many attempts ran over time. Each chart's
 * figure carries the numbers it draws (`data-counts`, `data-running`), the
 * same arrays handed to uPlot.
 */
function usageCharts(name) {
  const el = h('div', { id: 'charts', class: 'charts' });
  const plots = [];
  const width = () => Math.max(260, Math.min(440, Math.floor((el.clientWidth || 900) / 3) - 40));
  const bars = uPlot.paths.bars({ size: [0.9, 80], align: 1 });
  const histogramChart = (id, title, unit, hist) => {
    const fig = h('figure', { class: 'chart', 'data-chart': id });
    if (!hist) {
      fig.append(h('figcaption', {}, title), h('p', { class: 'muted' }, 'No measured attempts yet.'));
      fig.dataset.counts = '';
      return fig;
    }
    fig.dataset.counts = hist.counts.join(',');
    fig.dataset.edges = hist.edges.join(',');
    fig.append(h('figcaption', {}, `${title} (${unit}), ${hist.counts.reduce((a, b) => a + b, 0)} attempts`));
    const x = hist.edges.slice(0, -1);
    // A single bin (all values equal) still needs a width to draw.
    const max = hist.edges[hist.edges.length - 1] > hist.edges[0] ? hist.edges[hist.edges.length - 1] : hist.edges[0] + 1;
    plots.push(
      new uPlot(
        {
          width: width(),
          height: 180,
          legend: { show: false },
          cursor: { show: false },
          scales: { x: { time: false, range: () => [hist.edges[0], max] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi)] } },
          axes: [{ stroke: '#68737d' }, { stroke: '#68737d', label: 'attempts' }],
          series: [{}, { label: 'attempts', fill: 'rgba(36, 88, 179, .55)', stroke: '#2458b3', paths: bars, points: { show: false } }],
        },
        [x, hist.counts],
        fig,
      ),
    );
    return fig;
  };
  const runningChart = (series) => {
    const fig = h('figure', { class: 'chart', 'data-chart': 'running' });
    fig.dataset.running = series.running.join(',');
    if (series.t.length === 0) {
      fig.append(h('figcaption', {}, 'Attempts running'), h('p', { class: 'muted' }, 'No attempts yet.'));
      return fig;
    }
    fig.append(h('figcaption', {}, `Attempts running, at most ${Math.max(...series.running)}`));
    plots.push(
      new uPlot(
        {
          width: width(),
          height: 180,
          legend: { show: false },
          scales: { y: { range: (u, lo, hi) => [0, Math.max(1, hi)] } },
          axes: [{ stroke: '#68737d' }, { stroke: '#68737d', label: 'running' }],
          series: [{}, { label: 'running', stroke: '#2458b3', fill: 'rgba(36, 88, 179, .15)', paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } }],
        },
        // uPlot's time axis counts seconds.
        [series.t.map((t) => t / 1000), series.running],
        fig,
      ),
    );
    return fig;
  };
  let busy = false;
  const load = async () => {
    if (busy) return;
    busy = true;
    try {
      const stats = await api(`/projects/${encodeURIComponent(name)}/stats`, { query: { charts: 'true' } });
      for (const p of plots.splice(0)) p.destroy();
      const c = stats.charts;
      el.replaceChildren(
        histogramChart('wall', 'Wall time', 's', c.wallS),
        histogramChart('memory', 'Peak memory', 'MB', c.maxRssMb),
        runningChart(c.running),
      );
      el.dataset.measured = String(stats.measured);
    } catch (err) {
      el.replaceChildren(h('p', { class: 'error' }, `Charts: ${err.message}`));
    } finally {
      busy = false;
    }
  };
  return { el, load, later: throttle(() => load(), CHARTS_REFRESH_S * 1000) };
}

// ---- one job ------------------------------------------------------------------------------------

function jobView(root, id) {
  const head = h('div');
  const attempts = h('div');
  const files = h('div');
  const logs = h('div', { id: 'logs' });
  root.replaceChildren(head, h('h2', {}, 'Attempts'), attempts, h('h2', {}, 'Files'), files, h('h2', {}, 'Logs'), logs);
  let job = null;
  // One page of the log at a time, asked of the server by bytes: a log of
  // hundreds of megabytes is never fetched whole.
  // While the attempt runs, the last page follows its output: a read that
  // waits on the server for bytes past the end shown (`gen` tells a
  // follow loop that the reader has moved on to another log).
  const log = { attempt: null, stream: 'stdout', text: null, page: 0, size: 0, end: 0, running: false, gen: 0 };

  const showLog = async () => {
    if (!job) return;
    const tabs = h(
      'div',
      { class: 'tabs' },
      job.attempts.map((a) =>
        h('button', { type: 'button', class: a.n === log.attempt ? 'active' : '', 'data-attempt': a.n, onclick: () => openLog(a.n, log.stream) }, `attempt ${a.n}`),
      ),
      ' ',
      ['stdout', 'stderr'].map((s) =>
        h('button', { type: 'button', class: s === log.stream ? 'active' : '', 'data-stream': s, onclick: () => openLog(log.attempt, s) }, s),
      ),
    );
    if (job.attempts.length === 0) return logs.replaceChildren(h('p', { class: 'muted' }, 'The job has not run yet.'));
    if (log.attempt === null) return logs.replaceChildren(tabs, h('p', { class: 'muted' }, 'Choose an attempt.'));
    if (log.text === null) return logs.replaceChildren(tabs, h('p', { class: 'muted' }, 'Loading…'));
    const pages = Math.max(1, Math.ceil(log.size / LOG_PAGE));
    const page = log.page;
    logs.replaceChildren(
      tabs,
      h(
        'div',
        { class: 'pager' },
        h('button', { type: 'button', id: 'log-prev', disabled: page === 0, onclick: () => loadPage(page - 1) }, 'Previous'),
        h('button', { type: 'button', id: 'log-next', disabled: page >= pages - 1, onclick: () => loadPage(page + 1) }, 'Next'),
        h('span', { class: 'muted' }, `page ${page + 1} of ${pages}, ${log.size} bytes`),
      ),
      log.running ? h('p', { class: 'muted', id: 'log-live' }, 'The attempt is running: its output shows as it arrives.') : '',
      h('pre', { class: 'log', id: 'log-text', 'data-stream': log.stream, 'data-attempt': log.attempt, 'data-running': String(log.running) }, log.text === '' ? (log.running ? '' : '(empty)') : log.text),
    );
  };

  /** Reads what the attempt prints past the end shown, for as long as it runs and this log is the one shown. */
  const follow = async (gen) => {
    while (log.gen === gen && log.running && root.isConnected) {
      const want = { attempt: log.attempt, stream: log.stream };
      try {
        const res = await api(`/jobs/${encodeURIComponent(id)}/logs`, { query: { ...want, offset: log.end, wait: 15 }, text: true, raw: true });
        const text = await res.text();
        if (log.gen !== gen) return;
        log.size = Number(res.headers.get('x-log-size') ?? log.size);
        log.running = res.headers.get('x-log-running') === '1';
        if (log.size > (log.page + 1) * LOG_PAGE) {
          // Past this page: the last page is shown instead, and followed from there.
          return loadPage(Math.floor((log.size - 1) / LOG_PAGE));
        }
        log.text += text;
        log.end = Number(res.headers.get('x-log-end') ?? log.end);
      } catch {
        if (log.gen !== gen) return;
        await new Promise((resolve) => setTimeout(resolve, 1000));
        continue;
      }
      await showLog();
    }
  };

  const loadPage = async (page) => {
    const want = { attempt: log.attempt, stream: log.stream };
    try {
      const res = await api(`/jobs/${encodeURIComponent(id)}/logs`, { query: { ...want, offset: page * LOG_PAGE, limit: LOG_PAGE }, text: true, raw: true });
      const text = await res.text();
      // A later click may have asked for another page or stream meanwhile.
      if (log.attempt !== want.attempt || log.stream !== want.stream) return;
      log.text = text;
      log.size = Number(res.headers.get('x-log-size') ?? text.length);
      log.end = Number(res.headers.get('x-log-end') ?? log.size);
      log.running = res.headers.get('x-log-running') === '1';
      log.page = page;
    } catch (err) {
      log.text = '';
      logs.append(h('p', { class: 'error' }, err.message));
      return;
    }
    const gen = ++log.gen;
    await showLog();
    // The last page of a running attempt's log grows as the attempt prints.
    if (log.running && log.end >= log.size) void follow(gen);
  };

  const openLog = async (attempt, streamName) => {
    log.attempt = attempt;
    log.stream = streamName;
    log.text = null;
    log.size = 0;
    log.running = false;
    log.gen++;
    await showLog();
    await loadPage(0);
  };

  const render = () => {
    const last = job.attempts[job.attempts.length - 1];
    head.replaceChildren(
      h('h1', {}, h('a', { href: `#/p/${encodeURIComponent(job.project)}` }, job.project), ' / ', h('span', { class: 'mono' }, job.id)),
      h(
        'dl',
        { class: 'fields', id: 'job-fields' },
        [
          ['name', job.name ?? ''],
          ['state', h('span', { id: 'job-state' }, stateBadge(job.state), ' ', job.reason)],
          ['command', h('span', { class: 'mono' }, job.shell !== undefined ? 'sh -c ' : '', commandText(job))],
          ['env', Object.entries(job.env ?? {}).map(([k, v]) => `${k}=${v}`).join(' ')],
          ['resources', `${job.resources.cores} core${job.resources.cores === 1 ? '' : 's'}, ${job.resources.memoryMb} MB`],
          ['priority', job.priority],
          ['retries', job.maxRetries],
          ['time limit', job.timeoutS === null ? 'none' : `${job.timeoutS} s`],
          ['after', job.after.join(' ')],
          ['created', when(job.createdAt)],
          ['updated', when(job.updatedAt)],
          ['exit code', job.exitCode ?? ''],
          ['took', duration(job.durationMs)],
          ['ran on', last ? `${last.workerName}${last.via !== 'local' ? ` via ${last.viaName ?? last.via}` : ''}` : ''],
        ].flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
      ),
    );
    attempts.replaceChildren(
      job.attempts.length === 0
        ? h('p', { class: 'muted' }, 'No attempts yet.')
        : h(
            'table',
            { id: 'attempts' },
            thead(['n', 'worker', 'via', 'started', 'ended', 'took', 'how', 'exit', 'reason', 'wall', 'CPU', 'CPU use', 'peak memory', 'asked']),
            h(
              'tbody',
              {},
              job.attempts.map((a) =>
                h(
                  'tr',
                  { 'data-attempt': a.n },
                  h('td', {}, a.n),
                  h('td', {}, a.workerName || a.workerId),
                  h('td', { title: a.via }, a.viaName ?? a.via),
                  h('td', {}, when(a.startedAt)),
                  h('td', {}, when(a.endedAt)),
                  h('td', {}, duration((a.endedAt ?? Date.now()) - a.startedAt)),
                  h('td', {}, a.how ? a.how : stateBadge('running')),
                  h('td', {}, a.signal ?? a.exitCode ?? ''),
                  h('td', {}, a.reason ?? ''),
                  // What the attempt used (the latest figures while it runs) and what it asked for.
                  h('td', { class: 'num', 'data-usage': 'wall' }, a.usage ? `${a.usage.wallS.toFixed(1)} s` : ''),
                  h('td', { class: 'num', 'data-usage': 'cpu' }, a.usage ? `${(a.usage.userS + a.usage.systemS).toFixed(2)} s` : ''),
                  // CPU seconds over cores asked × wall seconds, as cpcc stats counts efficiency.
                  h('td', { class: 'num', 'data-usage': 'efficiency' }, a.usage && a.usage.wallS > 0 ? `${Math.round((100 * (a.usage.userS + a.usage.systemS)) / (job.resources.cores * a.usage.wallS))} %` : ''),
                  h('td', { class: 'num', 'data-usage': 'memory' }, a.usage ? `${Math.round(a.usage.maxRssMb)} MB` : ''),
                  h('td', { class: 'num' }, a.limits ? `${a.limits.memoryMb} MB${a.limits.timeoutS === null ? '' : `, ${a.limits.timeoutS} s`}` : ''),
                ),
              ),
            ),
          ),
    );
  };

  const renderFiles = () => {
    const source = (i) => (i.sha256 !== undefined ? 'uploaded' : i.job !== undefined ? `${i.output} of job ${i.job}` : `value @${i.value}`);
    const inputs = job.inputs ?? [];
    const kept = job.files ?? [];
    const wanted = (job.outputs ?? []).map((o) => (o.to ? `${o.glob} → @${o.to}` : o.glob)).join(', ');
    files.replaceChildren(
      inputs.length === 0 && kept.length === 0 && !wanted
        ? h('p', { class: 'muted' }, 'No input or output files.')
        : h(
            'table',
            { id: 'files' },
            thead(['', 'name', 'from', 'bytes', 'sha256', '']),
            h(
              'tbody',
              {},
              inputs.map((i) => h('tr', { 'data-input': i.name }, h('td', {}, 'input'), h('td', { class: 'mono' }, i.name), h('td', {}, source(i)), h('td', { class: 'num' }, i.size ?? ''), h('td', { class: 'mono' }, (i.sha256 ?? '').slice(0, 16)), h('td'))),
              kept.map((f) =>
                h(
                  'tr',
                  { 'data-output': f.name },
                  h('td', {}, 'output'),
                  h('td', { class: 'mono' }, f.name),
                  h('td', {}, 'kept by the job'),
                  h('td', { class: 'num' }, f.size),
                  h('td', { class: 'mono' }, f.sha256.slice(0, 16)),
                  h('td', {}, h('button', { type: 'button', onclick: () => download(`/jobs/${encodeURIComponent(id)}/outputs/${encodeURIComponent(f.name)}`, f.name.split('/').pop()).catch((err) => files.append(h('p', { class: 'error' }, err.message))) }, 'Download')),
                ),
              ),
            ),
          ),
      wanted ? h('p', { class: 'muted' }, `Kept after the job: ${wanted}`) : '',
    );
  };

  const reload = async () => {
    try {
      job = await api(`/jobs/${encodeURIComponent(id)}`);
    } catch (err) {
      return failure(root, err);
    }
    render();
    renderFiles();
    const latest = job.attempts[job.attempts.length - 1];
    // Open the latest attempt's output, running or ended, unless one was chosen already.
    if (log.attempt === null && latest) await openLog(latest.n, 'stdout');
    else if (log.attempt !== null && log.text === '' && job.attempts.some((a) => a.n === log.attempt && a.endedAt !== undefined)) await openLog(log.attempt, log.stream);
    else await showLog();
  };
  const later = throttle(() => self.reload(), 300);
  const self = {
    reload,
    onEvent(ev) {
      if ((ev.jobs ?? []).some((j) => j.id === id)) later();
    },
  };
  return self;
}

// ---- workers ----------------------------------------------------------------------------------------

function workersView(root) {
  const tbody = h('tbody');
  root.replaceChildren(
    h('h1', {}, 'Workers'),
    h(
      'table',
      { id: 'workers' },
      thead(['worker', 'host', 'cores', 'memory', 'running jobs', 'last seen', 'registered']),
      tbody,
    ),
  );
  const meter = (used, all, unit) => {
    // Set through the style object, not a style attribute: the page's CSP (style-src 'self') drops inline style attributes.
    const fill = h('span');
    fill.style.width = `${all > 0 ? Math.round((100 * used) / all) : 0}%`;
    return h('span', {}, h('span', { class: 'bar' }, fill), `${used} / ${all}${unit}`);
  };
  const reload = async () => {
    try {
      const [{ workers }, { leases }] = await Promise.all([api('/workers'), api('/heartbeats')]);
      const byWorker = new Map();
      for (const l of leases) {
        if (!byWorker.has(l.workerId)) byWorker.set(l.workerId, []);
        byWorker.get(l.workerId).push(l);
      }
      tbody.replaceChildren(
        ...workers.map((w) =>
          h(
            'tr',
            // Gone (stopped, or lost: not heard from for a lease) workers stay listed until the server's retention ends.
            { 'data-worker-id': w.id, 'data-worker-state': w.state, class: w.state === 'live' ? null : 'gone' },
            h(
              'td',
              {},
              w.name,
              w.state === 'live' ? null : [' ', h('span', { class: 'state gone', title: w.state === 'stopped' ? 'it said it stopped' : 'not heard from for a lease' }, `gone (${w.state})`)],
              h('div', { class: 'muted mono', title: w.id }, shortId(w.id)),
            ),
            h('td', {}, w.host),
            h('td', {}, meter(w.used.cores, w.resources.cores, '')),
            h('td', {}, meter(w.used.memoryMb, w.resources.memoryMb, ' MB')),
            h(
              'td',
              { class: 'running' },
              (byWorker.get(w.id) ?? []).map((l) =>
                // A peer's job (borrowed) opens on its home server, not here: its id and home are shown.
                l.home
                  ? h('div', { 'data-home': l.home.serverId }, h('span', { class: 'mono', title: l.jobId }, shortId(l.jobId)), ` ${l.project} from ${l.home.name}`)
                  : h('div', {}, h('a', { class: 'mono', href: `#/j/${l.jobId}`, title: l.jobId }, shortId(l.jobId)), ` ${l.project}`),
              ),
              w.running > (byWorker.get(w.id)?.length ?? 0) ? h('div', { class: 'muted' }, `${w.running - (byWorker.get(w.id)?.length ?? 0)} of other projects`) : null,
            ),
            h('td', { 'data-ts': w.lastSeen, title: when(w.lastSeen) }, ago(w.lastSeen)),
            h('td', {}, when(w.registeredAt)),
          ),
        ),
      );
      if (workers.length === 0) tbody.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No workers registered.')));
    } catch (err) {
      failure(root, err);
    }
  };
  return liveTable(
    reload,
    (ev) => ev.workers || ev.leases,
    () => {
      for (const td of tbody.querySelectorAll('td[data-ts]')) td.textContent = ago(Number(td.dataset.ts));
    },
  );
}

// ---- leases -------------------------------------------------------------------------------------------

function leasesView(root) {
  const tbody = h('tbody');
  root.replaceChildren(
    h('h1', {}, 'Leases'),
    h('p', { class: 'muted' }, 'Running attempts and the deadline by which their worker must send a heartbeat.'),
    h('table', { id: 'leases' }, thead(['job', 'project', 'attempt', 'worker', 'via', 'deadline']), tbody),
  );
  const deadline = (td) => {
    const ts = Number(td.dataset.deadline);
    td.textContent = ago(ts);
    td.classList.toggle('late', ts < Date.now());
  };
  const reload = async () => {
    try {
      const { leases } = await api('/heartbeats');
      tbody.replaceChildren(
        ...leases.map((l) => {
          const td = h('td', { 'data-deadline': l.deadline, title: when(l.deadline) });
          deadline(td);
          return h(
            'tr',
            { 'data-lease': l.jobId },
            // A borrowed job lives on its home server: no page here to open.
            h('td', {}, l.home ? h('span', { class: 'mono', title: l.jobId }, shortId(l.jobId)) : h('a', { class: 'mono', href: `#/j/${l.jobId}`, title: l.jobId }, shortId(l.jobId))),
            h('td', {}, l.project),
            h('td', {}, l.attempt),
            h('td', {}, l.workerName),
            h('td', {}, l.home ? `from ${l.home.name}` : l.via === 'local' ? 'local' : (l.viaName ?? l.via)),
            td,
          );
        }),
      );
      if (leases.length === 0) tbody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'Nothing is running.')));
    } catch (err) {
      failure(root, err);
    }
  };
  return liveTable(
    reload,
    (ev) => ev.leases,
    () => {
      for (const td of tbody.querySelectorAll('td[data-deadline]')) deadline(td);
    },
  );
}

/**
 * The live part of the workers and leases views: reload at most once a second
 * when an event `wants` picks arrives, and every HEARTBEAT_REFRESH_S seconds
 * anyway (heartbeats move no events); `tick` refreshes the clocks each second.
 */
function liveTable(reload, wants, tick) {
  let ticks = 0;
  const later = throttle(() => self.reload(), 1000);
  const self = {
    reload,
    onEvent(ev) {
      if (wants(ev)) later();
    },
    onTick() {
      tick();
      if (++ticks % HEARTBEAT_REFRESH_S === 0) later();
    },
  };
  return self;
}

// ---- peers -------------------------------------------------------------------------------------------

function peersView(root) {
  const tbody = h('tbody');
  root.replaceChildren(
    h('h1', {}, 'Peers'),
    h('p', { class: 'muted' }, 'Trusted servers, in the order they are asked for work.'),
    h('table', { id: 'peers' }, thead(['priority', 'server', 'address', 'link', 'CA fingerprint', 'trusted']), tbody),
  );
  const render = (peers) => {
    tbody.replaceChildren(
      ...[...peers]
        .sort((a, b) => a.priority - b.priority)
        .map((p) =>
          h(
            'tr',
            { 'data-peer': p.serverId },
            h('td', { class: 'num' }, p.priority),
            h('td', {}, p.name, h('div', { class: 'muted mono' }, p.serverId)),
            h('td', { class: 'mono' }, `${p.host}:${p.securePort}`),
            h('td', { 'data-link': p.link }, h('span', { class: `state ${p.link === 'up' ? 'done' : p.link === 'connecting' ? 'queued' : 'failed'}` }, p.link)),
            h('td', { class: 'mono' }, p.caFingerprint.slice(0, 23) + '…'),
            h('td', {}, when(p.trustedAt)),
          ),
        ),
    );
    if (peers.length === 0) tbody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No trusted peers.')));
  };
  const reload = async () => {
    if (!session.superuser) return failure(root, new Error('Only super users see the peers.'));
    try {
      render((await api('/peers')).connected);
    } catch (err) {
      failure(root, err);
    }
  };
  return { reload, onPeers: render };
}

// ---- start ---------------------------------------------------------------------------------------------

if (session.token) startSession().catch(() => showLogin());
else showLogin();
