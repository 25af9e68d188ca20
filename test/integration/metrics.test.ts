/**
 * /metrics: Prometheus text that a parser library reads and that also holds
 * to the format's rules checked strictly here; counters and gauges that move
 * with real traffic (submits, dispatches, heartbeats, a lease expiry, fsyncs,
 * requests by route); and access by token, open, or off. Also the log
 * lines: JSON, at the configured level, with the request's id.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { resolveConfig } from '../../src/server/start/config.js';
import { createLogger } from '../../src/common/logger.js';
import { cleanup, makeClient, resultOf, startTestServer, until, type TestServer } from '../helpers/server.js';

after(cleanup);

const METRICS_TOKEN = 'scrape-token-0123456789abcdef';

async function scrape(ts: TestServer, token?: string): Promise<{ status: number; type: string; text: string }> {
  const dispatcher = new Agent({ connect: { ca: ts.server.caPem, rejectUnauthorized: false } });
  try {
    const res = await request(ts.server.url + '/metrics', {
      dispatcher,
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    });
    return { status: res.statusCode, type: String(res.headers['content-type']), text: await res.body.text() };
  } finally {
    await dispatcher.close();
  }
}

type Samples = Map<string, number>;

/**
 * Checks the exposition text strictly (HELP and TYPE before a family's
 * samples, well-formed labels and values, cumulative buckets ending in +Inf
 * equal to _count, counters named _total and never negative) and returns
 * every sample as `name{label="value",…}` (labels sorted) → value.
 */
function strictParse(text: string): Samples {
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Samples = new Map();
  const histograms = new Map<string, { buckets: [number, number][]; count?: number }>();
  let family = '';
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const sampleLine = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`);
  for (const line of text.slice(0, -1).split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^# HELP (${NAME}) (.*)$`).exec(line))) {
      assert.ok(!helps.has(m[1]!), `one HELP for ${m[1]}`);
      helps.add(m[1]!);
      continue;
    }
    if ((m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line))) {
      assert.ok(!types.has(m[1]!), `one TYPE for ${m[1]}`);
      assert.ok(helps.has(m[1]!), `HELP before TYPE for ${m[1]}`);
      types.set(m[1]!, m[2]!);
      family = m[1]!;
      continue;
    }
    m = sampleLine.exec(line);
    assert.ok(m, `a well-formed sample line: ${JSON.stringify(line)}`);
    const [, name, labelText, valueText] = m;
    const type = types.get(family);
    const suffix = name!.slice(family.length);
    assert.ok(name!.startsWith(family) && (suffix === '' || (type === 'histogram' && ['_bucket', '_sum', '_count'].includes(suffix))), `${name} belongs to the family ${family}`);
    assert.match(valueText!, /^([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]Inf|NaN)$/, `a number: ${line}`);
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    const labels: [string, string][] = [];
    if (labelText !== undefined && labelText !== '') {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
      let pos = 0;
      while (pos < labelText.length) {
        re.lastIndex = pos;
        const l = re.exec(labelText);
        assert.ok(l, `well-formed labels: ${line}`);
        labels.push([l[1]!, l[2]!]);
        pos = re.lastIndex;
      }
    }
    if (type === 'counter') {
      assert.ok(family.endsWith('_total'), `counter ${family} ends in _total`);
      assert.ok(value >= 0, `counter ${name} is not negative`);
    }
    const key = `${name}{${labels
      .slice()
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}="${v}"`)
      .join(',')}}`;
    assert.ok(!samples.has(key), `one sample for ${key}`);
    samples.set(key, value);
    if (type === 'histogram') {
      const rest = labels.filter(([k]) => k !== 'le').map(([k, v]) => `${k}=${v}`).sort().join(',');
      const h = histograms.get(`${family}|${rest}`) ?? { buckets: [] };
      histograms.set(`${family}|${rest}`, h);
      if (suffix === '_bucket') {
        const le = labels.find(([k]) => k === 'le');
        assert.ok(le, `${line} has le`);
        h.buckets.push([le[1] === '+Inf' ? Infinity : Number(le[1]), value]);
      } else if (suffix === '_count') h.count = value;
    }
  }
  for (const [series, h] of histograms) {
    assert.ok(h.buckets.length > 0 && h.buckets[h.buckets.length - 1]![0] === Infinity, `${series} ends with le="+Inf"`);
    for (let i = 1; i < h.buckets.length; i++) {
      assert.ok(h.buckets[i]![0] > h.buckets[i - 1]![0], `${series}: bucket bounds increase`);
      assert.ok(h.buckets[i]![1] >= h.buckets[i - 1]![1], `${series}: bucket counts are cumulative`);
    }
    assert.equal(h.buckets[h.buckets.length - 1]![1], h.count, `${series}: +Inf bucket equals _count`);
  }
  return samples;
}

/** Parses with the library (which must accept it) and strictly; returns the samples. */
function parse(text: string): Samples {
  const families = parsePrometheusTextFormat(text);
  const byName = new Map(families.map((f) => [f.name, f]));
  for (const [name, type] of [
    ['cpc_jobs', 'GAUGE'],
    ['cpc_dispatches_total', 'COUNTER'],
    ['cpc_lease_expiries_total', 'COUNTER'],
    ['cpc_heartbeats_total', 'COUNTER'],
    ['cpc_claims_waiting', 'GAUGE'],
    ['cpc_peers_up', 'GAUGE'],
    ['cpc_journal_fsync_duration_seconds', 'HISTOGRAM'],
    ['cpc_journal_changes_per_fsync', 'HISTOGRAM'],
    ['cpc_http_request_duration_seconds', 'HISTOGRAM'],
  ] as const) {
    assert.equal(byName.get(name)?.type, type, `${name} is a ${type.toLowerCase()}`);
  }
  assert.deepEqual(
    byName.get('cpc_jobs')!.metrics.map((m) => m.labels?.state).sort(),
    ['cancelled', 'done', 'failed', 'queued', 'running', 'waiting'],
  );
  return strictParse(text);
}

const get = (s: Samples, key: string): number => {
  const v = s.get(key);
  assert.ok(v !== undefined, `sample ${key} is there`);
  return v;
};

describe('/metrics', () => {
  let ts: TestServer;

  before(async () => {
    ts = await startTestServer({ metrics: 'token', metricsToken: METRICS_TOKEN, heartbeatIntervalS: 0.5 });
  });

  it('needs the metrics token or a super user', async () => {
    await ts.server.ctx.accounts.addUser('carol', 'carol-password', false);
    const carol = makeClient(ts.server.url, ts.server.caPem);
    carol.token = (await carol.login('carol', 'carol-password')).token;
    assert.equal((await scrape(ts)).status, 401);
    assert.equal((await scrape(ts, 'scrape-token-wrong-0123456789')).status, 401);
    assert.equal((await scrape(ts, carol.token)).status, 401, 'a regular user may not');
    const ok = await scrape(ts, METRICS_TOKEN);
    assert.equal(ok.status, 200);
    assert.match(ok.type, /^text\/plain; version=0\.0\.4/);
    assert.equal((await scrape(ts, ts.admin.token)).status, 200, 'a super user may');
  });

  it('parses as Prometheus text, and its counters move with real traffic', async () => {
    const before = parse((await scrape(ts, METRICS_TOKEN)).text);
    const worker = await ts.worker({ name: 'm1', cores: 2 });
    await ts.admin.createProject('m');
    const { ids } = await ts.admin.submit('m', [{ argv: ['a'] }, { argv: ['b'] }, { argv: ['c'] }]);

    // Two run to the end with a heartbeat between.
    const first = await worker.client.claim(worker.workerId, { waitS: 0, max: 2 });
    assert.equal(first.jobs.length, 2);
    await worker.client.heartbeat(worker.workerId, { attempts: first.jobs.map((j) => ({ jobId: j.id, attempt: j.attempt })) });
    for (const j of first.jobs) await worker.client.result(worker.workerId, resultOf(j.id, j.attempt));

    const third = await worker.client.claim(worker.workerId, { waitS: 0, max: 1 });
    assert.equal(third.jobs.length, 1);
    // The third is never heartbeaten: its lease runs out and it is re-queued.
    await until('the lease to expire', async () => ts.server.model.job(ids[2]!)?.attempts[0]?.how === 'lease-expired', { timeoutMs: 10_000 });

    // With nothing queued, a claim waits (long-poll), and shows as waiting.
    const other = await ts.worker({ name: 'm2', cores: 1 });
    await ts.admin.cancel([ids[2]!]);
    const waiting = other.client.claim(other.workerId, { waitS: 10 });
    const during = await until('a claim to be waiting', async () => {
      const s = parse((await scrape(ts, METRICS_TOKEN)).text);
      return get(s, 'cpc_claims_waiting{}') === 1 ? s : null;
    });
    assert.equal(get(during, 'cpc_claims_waiting{}'), 1);
    await other.client.release(other.workerId);
    await waiting;

    const s = parse((await scrape(ts, METRICS_TOKEN)).text);
    const moved = (key: string) => get(s, key) - (before.get(key) ?? 0);
    assert.equal(moved('cpc_dispatches_total{via="local"}'), 3);
    assert.equal(moved('cpc_jobs_submitted_total{}'), 3);
    assert.equal(moved('cpc_heartbeats_total{}'), 1);
    assert.equal(moved('cpc_lease_expiries_total{}'), 1);
    assert.equal(moved('cpc_attempts_lost_total{how="lease-expired"}'), 1);
    assert.equal(moved('cpc_attempts_finished_total{how="exited",success="true"}'), 2);
    assert.equal(get(s, 'cpc_jobs{state="done"}'), 2);
    assert.equal(get(s, 'cpc_jobs{state="cancelled"}'), 1);
    assert.equal(get(s, 'cpc_workers{}'), 2);
    assert.equal(get(s, 'cpc_claims_waiting{}'), 0);
    assert.equal(get(s, 'cpc_peers_up{}'), 0);
    assert.ok(moved('cpc_journal_fsync_duration_seconds_count{}') >= 5, 'fsyncs were timed');
    assert.ok(moved('cpc_journal_changes_per_fsync_sum{}') >= moved('cpc_journal_changes_per_fsync_count{}'));
    assert.equal(moved('cpc_http_request_duration_seconds_count{method="POST",route="/projects/:project/jobs",status="200"}'), 1);
    assert.equal(moved('cpc_http_request_duration_seconds_count{method="POST",route="/workers/:id/results",status="200"}'), 2);
    assert.ok(get(s, 'cpc_http_request_duration_seconds_count{method="GET",route="/metrics",status="200"}') >= 2);
    assert.ok(get(s, 'process_resident_memory_bytes{}') > 0);
  });
});

describe('/metrics settings', () => {
  it('can be open to anyone, or off', async () => {
    const open = await startTestServer({ metrics: 'open' });
    const r = await scrape(open);
    assert.equal(r.status, 200);
    parse(r.text);
    const off = await startTestServer({ metrics: 'off' });
    assert.equal((await scrape(off, off.admin.token)).status, 404);
  });

  it('refuses a metrics token that is too short', () => {
    assert.throws(() => resolveConfig('/nonexistent', { metricsToken: 'short' }, {}), /metricsToken/);
    assert.equal(resolveConfig('/nonexistent', {}, { CPC_METRICS: 'off' }).metrics, 'off');
  });
});

describe('log lines', () => {
  async function login(ts: TestServer, requestId?: string): Promise<string> {
    const dispatcher = new Agent({ connect: { ca: ts.server.caPem, rejectUnauthorized: false } });
    try {
      const res = await request(ts.server.url + '/api/v1/login', {
        dispatcher,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(requestId === undefined ? {} : { 'x-request-id': requestId }) },
        body: JSON.stringify({ user: 'cpc-admin', password: ts.adminPassword }),
      });
      await res.body.text();
      assert.equal(res.statusCode, 200);
      return String(res.headers['x-request-id']);
    } finally {
      await dispatcher.close();
    }
  }

  it('are JSON with level, time and message, and carry the id of the request they belong to', async () => {
    const lines: string[] = [];
    const ts = await startTestServer({ log: createLogger('debug', (l) => lines.push(l)) });
    const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);

    assert.equal(await login(ts, 'trace-me-123'), 'trace-me-123', 'a sane incoming id is kept and echoed');
    const line = parsed().find((l) => l.msg === 'user logged in' && l.reqId === 'trace-me-123');
    assert.ok(line, `a log line with the request id among ${lines.join('')}`);
    assert.equal(line.level, 'info');
    assert.match(String(line.time), /^\d{4}-\d\d-\d\dT/);

    const made = await login(ts, 'no good: "quotes" and spaces');
    assert.match(made, /^[A-Za-z0-9_-]{8}-[0-9a-z]+$/, 'an unusable id is replaced by a new one');
    assert.ok(parsed().some((l) => l.msg === 'user logged in' && l.reqId === made));
    const another = await login(ts);
    assert.notEqual(another, made, 'every request gets its own');
    assert.ok(parsed().filter((l) => l.msg === 'listening').every((l) => l.reqId === undefined), 'lines outside requests have none');
  });

  it('follow the configured level', async () => {
    const quiet: string[] = [];
    const ts = await startTestServer({ log: (l: string) => quiet.push(l), logLevel: 'warn' });
    await login(ts, 'quiet-1');
    assert.ok(!quiet.some((l) => l.includes('user logged in')), 'info lines are left out at warn');
    const chatty: string[] = [];
    const ts2 = await startTestServer({ log: (l: string) => chatty.push(l), logLevel: 'info' });
    await login(ts2, 'chatty-1');
    assert.ok(chatty.some((l) => l.startsWith('info user logged in') && l.includes('"reqId":"chatty-1"')));
    const pino: string[] = [];
    const log = createLogger('warn', (l) => pino.push(l));
    log.info('not written');
    log.warn('written', { n: 1 });
    assert.deepEqual(pino.map((l) => JSON.parse(l).msg), ['written']);
  });
});
