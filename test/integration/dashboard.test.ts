/**
 * The web dashboard in a real browser (Debian's chromium, driven by
 * playwright-core): log in, watch a submitted job go from queued to done
 * without reloading, open its logs; workers, leases and peers pages; and a
 * project of 100 000 jobs that still pages at once; a project's usage charts
 * (uPlot) with the counts of a known set of attempts. A screenshot of the job
 * page is kept in test-artifacts/.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ApiClient } from '../../src/client/api/client.js';
import { ROOT, cleanup, resultOf, startTestServer, tempDir, type SimWorker, type TestServer } from '../helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts');
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// CI installs chromium (.ci/run); only a developer machine without it skips.
const missing = !existsSync(CHROMIUM);
if (missing && process.env.CI) throw new Error(`${CHROMIUM} is missing; .ci/run installs it`);

describe('dashboard in a browser', { skip: missing ? `${CHROMIUM} is not installed` : false }, () => {
  let ts: TestServer;
  let context: BrowserContext;
  let page: Page;
  let worker: SimWorker;
  let admin: ApiClient;

  before(async () => {
    ts = await startTestServer({ publicHost: '127.0.0.1', name: 'site-a' });
    admin = ts.admin;
    await admin.createProject('demo');
    worker = await ts.worker({ name: 'node-7', cores: 4, memoryMb: 2048 });
    context = await chromium.launchPersistentContext(await tempDir('cpc-chromium-'), {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      ignoreHTTPSErrors: true,
      viewport: { width: 1280, height: 900 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(15_000);
  });

  after(async () => {
    await context?.close();
    await cleanup();
  });

  it('logs in, and refuses a wrong password', async () => {
    await page.goto(ts.server.url + '/');
    await page.locator('#login-form').waitFor();
    await page.fill('input[name=user]', 'cpc-admin');
    await page.fill('input[name=password]', 'not the password');
    await page.click('#login-form button[type=submit]');
    await page.locator('#login-error', { hasText: 'wrong user name or password' }).waitFor();
    await page.fill('input[name=password]', ts.adminPassword);
    await page.click('#login-form button[type=submit]');
    await page.locator('#projects tr[data-project="demo"]').waitFor();
    await page.locator('#live[data-live="up"]').waitFor();
    assert.equal(await page.locator('#who').textContent(), 'cpc-admin (super user)');
  });

  it('shows a submitted job going from queued to done without reloading, and its logs', async () => {
    await page.click('#projects a:text-is("demo")');
    await page.locator('#jobs').waitFor();
    // Anything that reloads the page loses this.
    // (Page scripts are given as text: the tests are compiled without the DOM's types.)
    await page.evaluate('window.stayed = true');
    let loads = 0;
    page.on('load', () => loads++);

    const { ids } = await admin.submit('demo', [{ argv: ['sh', '-c', 'echo hello'], name: 'greeting' }]);
    const id = ids[0]!;
    const row = page.locator(`#jobs tr[data-job-id="${id}"]`);
    await row.locator('[data-state="queued"]').waitFor();
    await page.locator('#project-counts [data-count="queued"] b', { hasText: '1' }).waitFor();

    const { jobs } = await worker.client.claim(worker.workerId, { waitS: 0 });
    assert.equal(jobs[0]?.id, id);
    await row.locator('[data-state="running"]').waitFor();

    const stdout = Array.from({ length: 5000 }, (_, i) => `line ${i} of the job's output\n`).join('');
    await worker.client.result(worker.workerId, resultOf(id, jobs[0]!.attempt, { stdout, stderr: 'a warning on stderr\n', durationMs: 1234 }));
    await row.locator('[data-state="done"]').waitFor();
    await page.locator('#project-counts [data-count="done"] b', { hasText: '1' }).waitFor();

    assert.equal(loads, 0, 'the page was not reloaded');
    assert.equal(await page.evaluate('window.stayed'), true);

    const logRequests: URL[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/logs')) logRequests.push(new URL(r.url()));
    });
    await row.locator('a').first().click();
    await page.locator('#job-state [data-state="done"]').waitFor();
    await page.locator('#attempts tr[data-attempt="1"]', { hasText: 'node-7' }).waitFor();
    // Full logs, a page at a time: the first page, then the next.
    const log = page.locator('#log-text[data-stream="stdout"]');
    await log.waitFor();
    assert.match((await log.textContent()) ?? '', /^line 0 of the job's output/);
    await page.locator('.pager', { hasText: /page 1 of 3/ }).waitFor();
    await page.click('#log-next');
    await page.locator('#log-text', { hasText: 'line 3000 of the job' }).waitFor();
    await page.click('#log-next');
    await page.locator('#log-text', { hasText: 'line 4999 of the job' }).waitFor();
    assert.equal(await page.locator('#log-next').isDisabled(), true);
    await page.click('#log-prev');
    await page.click('#log-prev');
    await page.locator('#log-text', { hasText: 'line 0 of the job' }).waitFor();
    // Each page was asked of the server on its own; the log was never fetched whole.
    assert.ok(logRequests.length >= 5);
    assert.ok(logRequests.every((u) => u.searchParams.get('limit') === String(64 * 1024)), logRequests.join(' '));
    assert.deepEqual(
      [...new Set(logRequests.map((u) => Number(u.searchParams.get('offset'))))].sort((a, b) => a - b),
      [0, 64 * 1024, 128 * 1024],
    );

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-job.png'), fullPage: false });

    await page.click('#logs button[data-stream="stderr"]');
    await page.locator('#log-text[data-stream="stderr"]', { hasText: 'a warning on stderr' }).waitFor();
  });

  it("draws a project's wall time and peak memory histograms and its attempts running over time, and a job's usage", async () => {
    const cspErrors: string[] = [];
    const onConsole = (m: { type(): string; text(): string }) => {
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) cspErrors.push(m.text());
    };
    page.on('console', onConsole);
    await admin.createProject('usage');
    // Six attempts measured at known figures; a seventh runs until the end.
    const wall = [1, 1, 2, 9, 10, 10];
    const rss = [100, 100, 100, 100, 200, 400];
    const { ids } = await admin.submit('usage', [...wall.map((_, i) => ({ argv: ['true'], name: `u-${i}`, cores: 1 })), { argv: ['true'], name: 'held', cores: 1 }]);
    const held = ids[6]!;
    const figures = new Map(ids.slice(0, 6).map((id, i) => [id, { wallS: wall[i]!, userS: wall[i]! / 2, systemS: 0, maxRssMb: rss[i]! }]));
    const done = new Set<string>();
    let heldAttempt = 0;
    while (done.size < 6 || heldAttempt === 0) {
      const { jobs } = await worker.client.claim(worker.workerId, { waitS: 1 });
      for (const j of jobs) {
        const usage = figures.get(j.id);
        assert.ok(usage !== undefined || j.id === held, 'only the test project has queued jobs');
        if (!usage) {
          heldAttempt = j.attempt;
          continue;
        }
        await worker.client.result(worker.workerId, resultOf(j.id, j.attempt, { usage, durationMs: usage.wallS * 1000 }));
        done.add(j.id);
      }
    }
    const st = await admin.stats('usage');
    assert.equal(st.states.running, 1);

    await page.goto(`${ts.server.url}/#/p/usage`);
    const wallChart = page.locator('#charts figure[data-chart="wall"]');
    const memChart = page.locator('#charts figure[data-chart="memory"]');
    const runChart = page.locator('#charts figure[data-chart="running"]');
    // 6 values → 3 bins: wall [1, 4) [4, 7) [7, 10]; memory [100, 200) [200, 300) [300, 400]
    await page.locator('#charts figure[data-chart="wall"][data-counts="3,0,3"]').waitFor();
    assert.equal(await wallChart.getAttribute('data-edges'), '1,4,7,10');
    assert.equal(await memChart.getAttribute('data-counts'), '4,1,1');
    // uPlot drew each chart on a canvas.
    for (const c of [wallChart, memChart, runChart]) await c.locator('.uplot canvas').waitFor();
    const running = (await runChart.getAttribute('data-running'))!.split(',').map(Number);
    assert.equal(running[running.length - 1], 1, 'the held attempt still runs');
    assert.ok(Math.max(...running) >= 1 && Math.max(...running) <= 4, `at most the worker's 4 cores ran at once: ${running}`);

    // The held attempt ends: the charts follow without a reload (7 values → 3 bins).
    await worker.client.result(worker.workerId, resultOf(held, heldAttempt, { usage: { wallS: 5, userS: 5, systemS: 0, maxRssMb: 300 } }));
    await page.locator('#charts figure[data-chart="wall"][data-counts="3,1,3"]').waitFor({ timeout: 30_000 });
    assert.equal(await memChart.getAttribute('data-counts'), '4,1,2');
    await page.locator('#charts figure[data-chart="running"][data-running$=",0"]').waitFor();
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-charts.png'), fullPage: false });

    // A job's page: its attempt's wall time, CPU and CPU use (cores × wall).
    await page.goto(`${ts.server.url}/#/j/${ids[3]}`);
    const row = page.locator('#attempts tr[data-attempt="1"]');
    await row.locator('[data-usage="wall"]', { hasText: '9.0 s' }).waitFor();
    assert.equal(await row.locator('[data-usage="cpu"]').textContent(), '4.50 s');
    assert.equal(await row.locator('[data-usage="efficiency"]').textContent(), '50 %');
    assert.equal(await row.locator('[data-usage="memory"]').textContent(), '100 MB');
    page.off('console', onConsole);
    assert.deepEqual(cspErrors, [], 'the page broke none of its CSP');
  });

  it('follows the log of a running attempt as its output arrives, without reloading', async () => {
    const { ids } = await admin.submit('demo', [{ argv: ['sh', '-c', 'echo live'], name: 'live' }]);
    const id = ids[0]!;
    const { jobs } = await worker.client.claim(worker.workerId, { waitS: 0 });
    assert.equal(jobs[0]?.id, id);
    const chunk = (offset: number, text: string) =>
      worker.client.logChunks(worker.workerId, { chunks: [{ jobId: id, attempt: 1, stream: 'stdout', offset, data: Buffer.from(text).toString('base64') }] });
    await chunk(0, 'first line\n');
    await page.goto(`${ts.server.url}/#/j/${id}`);
    await page.locator('#job-state [data-state="running"]').waitFor();
    await page.locator('#log-text[data-running="true"]', { hasText: 'first line' }).waitFor();
    await page.evaluate('window.following = true');
    await chunk(11, 'second line\n');
    await page.locator('#log-text[data-running="true"]', { hasText: 'second line' }).waitFor();
    await worker.client.result(worker.workerId, resultOf(id, 1, { stdout: 'first line\nsecond line\nthird line\n' }));
    await page.locator('#log-text[data-running="false"]', { hasText: 'third line' }).waitFor();
    assert.equal(await page.locator('#log-text').textContent(), 'first line\nsecond line\nthird line\n');
    assert.equal(await page.evaluate('window.following'), true, 'the page was not reloaded');
  });

  it('lists a job’s input and output files, and downloads one', async () => {
    const input = Buffer.from('the input\n');
    const inputSum = createHash('sha256').update(input).digest('hex');
    await admin.sendBytes(`/projects/demo/files/${inputSum}`, Readable.from([input]), input.length);
    const { ids } = await admin.submit('demo', [
      { argv: ['true'], name: 'with-files', inputs: [{ name: 'in.txt', sha256: inputSum, size: input.length }], outputs: [{ glob: 'out/*.txt' }] },
    ]);
    const id = ids[0]!;
    const { jobs } = await worker.client.claim(worker.workerId, { waitS: 0 });
    assert.equal(jobs[0]?.id, id);
    // As cpc-worker does: the kept file is uploaded, then named in the result.
    const kept = Buffer.from('what the job made\n');
    const keptSum = createHash('sha256').update(kept).digest('hex');
    await worker.client.sendBytes(`/workers/${worker.workerId}/files/${keptSum}`, Readable.from([kept]), kept.length, { job: id, attempt: 1 });
    await worker.client.result(worker.workerId, resultOf(id, 1, { outputs: [{ name: 'out/result.txt', sha256: keptSum, size: kept.length }] }));

    await page.goto(`${ts.server.url}/#/j/${id}`);
    await page.locator('#files tr[data-input="in.txt"]', { hasText: 'uploaded' }).waitFor();
    const row = page.locator('#files tr[data-output="out/result.txt"]');
    await row.waitFor();
    const [file] = await Promise.all([page.waitForEvent('download'), row.locator('button').click()]);
    assert.equal(file.suggestedFilename(), 'result.txt');
    assert.equal(readFileSync((await file.path())!, 'utf8'), 'what the job made\n');
  });

  it('lists a project’s values, live, and downloads a file value', async () => {
    await admin.setValue('demo', 'fe.steps', { text: '5000' });
    await page.goto(`${ts.server.url}/#/p/demo`);
    await page.locator('#values tr[data-value="fe.steps"]', { hasText: '5000' }).waitFor();
    // Set while the page is open: it appears without a reload.
    const conf = Buffer.from('temperature 300\n');
    const sum = createHash('sha256').update(conf).digest('hex');
    await admin.sendBytes(`/projects/demo/files/${sum}`, Readable.from([conf]), conf.length);
    await admin.setValue('demo', 'runs/conf', { sha256: sum, size: conf.length });
    const row = page.locator('#values tr[data-value="runs/conf"]', { hasText: `file, ${conf.length} bytes` });
    await row.waitFor();
    const [file] = await Promise.all([page.waitForEvent('download'), row.locator('button').click()]);
    assert.equal(file.suggestedFilename(), 'conf');
    assert.equal(readFileSync((await file.path())!, 'utf8'), 'temperature 300\n');
  });

  it('shows workers with their running jobs and heartbeat age, leases with deadlines, and peers', async () => {
    const { ids } = await admin.submit('demo', [{ argv: ['sleep', '60'], cores: 2, memoryMb: 512 }]);
    const { jobs } = await worker.client.claim(worker.workerId, { waitS: 0 });
    assert.equal(jobs[0]?.id, ids[0]);

    await page.click('#nav a[data-nav="workers"]');
    const w = page.locator(`#workers tr[data-worker-id="${worker.workerId}"]`);
    await w.waitFor();
    await w.locator('.running a', { hasText: ids[0]!.slice(-12) }).waitFor();
    assert.match((await w.textContent()) ?? '', /2 \/ 4/);
    // The cores bar is drawn half full (2 of 4), although the page's CSP refuses inline style attributes.
    const bar = w.locator('.bar').first();
    const [outer, inner] = await Promise.all([bar.boundingBox(), bar.locator('span').boundingBox()]);
    assert.ok(outer && inner && outer.width > 0, 'the bar is drawn');
    const drawn = inner!.width / outer!.width;
    assert.ok(drawn > 0.4 && drawn < 0.6, `the bar is drawn ${Math.round(drawn * 100)} % full for 2 of 4 cores`);
    assert.match((await w.locator('td[data-ts]').textContent()) ?? '', /now|ago/);

    await page.click('#nav a[data-nav="leases"]');
    const lease = page.locator(`#leases tr[data-lease="${ids[0]}"]`);
    await lease.waitFor();
    assert.match((await lease.textContent()) ?? '', /node-7/);
    assert.match((await lease.locator('td[data-deadline]').textContent()) ?? '', /^in |ago$/);

    // It leaves the list live when the job is cancelled.
    await admin.cancel(ids);
    await lease.waitFor({ state: 'detached' });

    await page.click('#nav a[data-nav="peers"]');
    await page.locator('#peers', { hasText: 'No trusted peers.' }).waitFor();
  });

  it('shows a worker that stopped as gone, and one not heard from for a lease as lost', async () => {
    const stopping = await ts.worker({ name: 'node-stopping', cores: 2, memoryMb: 1024 });
    const silent = await ts.worker({ name: 'node-silent', cores: 2, memoryMb: 1024 });
    await page.click('#nav a[data-nav="workers"]');
    const row = page.locator(`#workers tr[data-worker-id="${stopping.workerId}"]`);
    await page.locator(`#workers tr[data-worker-id="${stopping.workerId}"][data-worker-state="live"]`).waitFor();
    assert.equal(await row.locator('.state.gone').count(), 0);
    // As cpc-worker does on its way out.
    await stopping.client.workerStopped(stopping.workerId);
    await row.locator('.state.gone', { hasText: 'gone (stopped)' }).waitFor();
    assert.equal(await row.getAttribute('data-worker-state'), 'stopped');
    assert.match((await row.getAttribute('class')) ?? '', /\bgone\b/);
    // No heartbeat since it registered: lost once a lease (2 s here) has passed, at the view's next refresh.
    const quiet = page.locator(`#workers tr[data-worker-id="${silent.workerId}"]`);
    await quiet.locator('.state.gone', { hasText: 'gone (lost)' }).waitFor();
  });

  it('fits its header in a window 400 px wide, and shows its icon', async () => {
    const problems: string[] = [];
    const onConsole = (m: { type(): string; text(): string }) => {
      if (/Content Security Policy|favicon/i.test(m.text())) problems.push(m.text());
    };
    page.on('console', onConsole);
    try {
      await page.setViewportSize({ width: 400, height: 800 });
      await page.goto(`${ts.server.url}/#/workers`);
      await page.locator('#workers').waitFor();
      await page.locator('#logout').waitFor();
      // Nothing in the header reaches past the window or scrolls sideways.
      const fit = (await page.evaluate(`(() => {
        const header = document.querySelector('header');
        const right = Math.max(...[...header.querySelectorAll('*')].filter((e) => e.getClientRects().length > 0).map((e) => e.getBoundingClientRect().right));
        return { scroll: header.scrollWidth, client: header.clientWidth, right, width: window.innerWidth };
      })()`)) as { scroll: number; client: number; right: number; width: number };
      assert.equal(fit.width, 400);
      assert.ok(fit.scroll <= fit.client, `the header scrolls sideways: ${JSON.stringify(fit)}`);
      assert.ok(fit.right <= fit.width, `something in the header reaches past the window: ${JSON.stringify(fit)}`);
      for (const nav of ['projects', 'workers', 'leases', 'peers']) assert.ok(await page.locator(`#nav a[data-nav="${nav}"]`).isVisible(), `${nav} link shown`);
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'dashboard-400px.png'), fullPage: false });

      // The page names its icon, the server gives it as SVG, and the page's CSP lets the browser load it.
      const href = await page.locator('link[rel="icon"]').getAttribute('href');
      assert.equal(href, '/dashboard/favicon.svg');
      const icon = await page.request.get(ts.server.url + href);
      assert.equal(icon.status(), 200);
      assert.equal(icon.headers()['content-type'], 'image/svg+xml');
      assert.match(await icon.text(), /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      const loaded = (await page.evaluate(`new Promise((resolve) => {
        const img = new Image();
        img.onload = () => resolve(img.naturalWidth > 0);
        img.onerror = () => resolve(false);
        img.src = ${JSON.stringify(href)};
      })`)) as boolean;
      assert.equal(loaded, true, 'the icon loads under the page CSP');
      assert.deepEqual(problems, []);
    } finally {
      page.off('console', onConsole);
      await page.setViewportSize({ width: 1280, height: 900 });
    }
  });

  it('shows peers with their priority and link state as they change', async () => {
    await page.click('#nav a[data-nav="peers"]');
    await page.locator('#peers', { hasText: 'No trusted peers.' }).waitFor();
    const b = await startTestServer({ publicHost: '127.0.0.1', name: 'site-b' });
    await admin.connectServer('127.0.0.1', b.server.unsecurePort, b.server.caFingerprint);
    await b.admin.trustPeer(ts.server.serverId);
    const row = page.locator(`#peers tr[data-peer="${b.server.serverId}"]`);
    await row.locator('td[data-link="up"]').waitFor();
    assert.match((await row.textContent()) ?? '', /^0site-b/);
    await b.server.close();
    await row.locator('td[data-link="up"]').waitFor({ state: 'detached' });
  });

  it('pages through a project of 100 000 jobs at once, with state filters', async () => {
    await admin.createProject('big');
    await admin.submit('big', Array.from({ length: 100_000 }, (_, i) => ({ argv: ['true'], name: `n${i}` })));
    const started = Date.now();
    await page.evaluate("location.hash = '#/p/big'");
    await page.locator('#project-counts [data-count="queued"] b', { hasText: '100000' }).waitFor();
    await page.locator('#jobs tbody tr').nth(49).waitFor();
    assert.equal(await page.locator('#jobs tbody tr').count(), 50);
    // Newest first.
    const firstName = await page.locator('#jobs tbody tr td:nth-child(2)').first().textContent();
    assert.equal(firstName, 'n99999');

    for (let i = 1; i <= 3; i++) {
      await page.click('#next-page');
      await page.locator('#jobs tbody tr td:nth-child(2)', { hasText: new RegExp(`^n${99_999 - i * 50}$`) }).waitFor();
    }
    await page.click('#prev-page');
    await page.locator('#jobs tbody tr td:nth-child(2)', { hasText: /^n99899$/ }).waitFor();
    await page.click('#first-page');
    await page.locator('#jobs tbody tr td:nth-child(2)', { hasText: /^n99999$/ }).waitFor();

    await page.click('#state-filter a[data-filter="done"]');
    await page.locator('#jobs', { hasText: 'No done jobs.' }).waitFor();
    await page.click('#state-filter a[data-filter="queued"]');
    await page.locator('#jobs tbody tr').nth(49).waitFor();
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 10_000, `paging 100 000 jobs took ${elapsed} ms`);

    // A job submitted while the page is open shows at the top, without paging; a change to it shows as it happens.
    await page.click('#state-filter a:text-is("all")');
    await page.locator('#jobs tbody tr td:nth-child(2)', { hasText: /^n99999$/ }).waitFor();
    const [fresh] = (await admin.submit('big', [{ argv: ['true'], name: 'fresh' }])).ids;
    const row = page.locator('#jobs tbody tr').first();
    await page.locator(`#jobs tbody tr:first-child[data-job-id="${fresh}"]`).waitFor();
    await admin.cancel([fresh!]);
    await row.locator('[data-state="cancelled"]').waitFor();
  });
});
