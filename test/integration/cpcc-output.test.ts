/**
 * Output that fits and never loses data, with cpcc spawned as users run it
 * against a real server: tables cut to COLUMNS without wrapping a row (ids
 * whole), piped tables as plain columns with their footers on stderr,
 * errors as JSON under --json with the usual exit codes, and downloads that
 * keep an existing file unless --force, or go to stdout with `-o -`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CPCC, cleanup, cpcc, cpccHome, cpccOk, resultOf, spawnWorker, startTestServer, tempDir, type TestServer } from '../helpers/server.js';

after(cleanup);

const ok = cpccOk;
const LONG_NAME = 'calibration-of-the-second-detector-array-run';
const LONG_WORD = 'an-argument-long-enough-to-need-cutting-on-any-narrow-terminal';

/** Width as a terminal shows it: every character here is one column wide (`…` included). */
const widthOf = (line: string) => [...line].length;

describe('cpcc output', () => {
  let ts: TestServer;
  let home: string;
  let data: string;
  const ids: string[] = [];

  before(async () => {
    ts = await startTestServer();
    await ts.admin.createProject('fit');
    home = await cpccHome(ts, 'fit');
    data = await tempDir('cpcc-output-');
    for (let i = 0; i < 3; i++) ids.push(await ok(cpcc(home, ['submit', '--name', `${LONG_NAME}-${i}`, '--', 'echo', LONG_WORD, String(i)])));
    await ok(cpcc(home, ['set', 'a-value-with-a-rather-long-descriptive-name', `${LONG_WORD} ${LONG_WORD}`]));
  });

  for (const width of [60, 80]) {
    it(`fits the jobs table to COLUMNS=${width}: one line a row, ids whole, long cells cut with …`, async () => {
      const r = await cpcc(home, ['jobs'], { env: { COLUMNS: String(width) } });
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trimEnd().split('\n');
      // A header and one line for each job: no row wrapped onto a second line.
      assert.equal(lines.length, 1 + ids.length, r.stdout);
      for (const line of lines) assert.ok(widthOf(line) <= width, `wider than ${width}: '${line}'`);
      assert.match(lines[0]!, /^id\s/);
      for (const row of lines.slice(1)) {
        // The id column still shows what pastes back: the short form of a real id (its last group), whole.
        const shown = row.split(/\s+/)[0]!;
        assert.ok(shown.length >= 8 && !shown.includes('…'), `id cut: '${row}'`);
        assert.ok(ids.some((id) => id.endsWith(`-${shown}`)), `'${shown}' is no job's id`);
        assert.ok(!row.includes(LONG_NAME) && !row.includes(LONG_WORD), `long cells not cut: '${row}'`);
        assert.match(row, /\S…(\s|$)/, `no cell ends with …: '${row}'`);
      }
    });

    it(`fits a table without ids to COLUMNS=${width}`, async () => {
      const r = await cpcc(home, ['ls'], { env: { COLUMNS: String(width) } });
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trimEnd().split('\n');
      assert.equal(lines.length, 2, r.stdout);
      for (const line of lines) assert.ok(widthOf(line) <= width, `wider than ${width}: '${line}'`);
      assert.match(lines[1]!, /^a-value-with\S*…? +an-argument\S*… +\S/);
    });
  }

  it("fits a terminal's own width when COLUMNS is not set, without boxes when they would leave the cells no room", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, CPCC_HOME: home, NO_COLOR: '1' };
    delete env.COLUMNS;
    delete env.FORCE_COLOR;
    // script gives cpcc a pseudo-terminal 60 columns wide and copies what it writes, unwrapped, to stdout.
    const child = spawn('script', ['-q', '-e', '-c', `stty cols 60 rows 40; exec '${process.execPath}' '${CPCC}' jobs`, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, out);
    const lines = out.replace(/\r/g, '').trimEnd().split('\n');
    for (const line of lines) assert.ok(widthOf(line) <= 60, `wider than 60: '${line}'`);
    // Boxed while the boxes fit, plain columns when they would leave the cells no room: a line a job either way.
    const rows = lines.filter((l) => ids.some((id) => l.replace(/^│ /, '').startsWith(id.slice(-12))));
    assert.equal(rows.length, ids.length, out);
    assert.equal(lines.length, ids.length + (lines[0]!.startsWith('┌') ? 4 : 1), out);
    assert.ok(rows.every((l) => l.includes('…')), out);
  });

  it('draws boxes on a terminal wide enough for them, and cuts cells to fit', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, CPCC_HOME: home, NO_COLOR: '1' };
    delete env.COLUMNS;
    delete env.FORCE_COLOR;
    const child = spawn('script', ['-q', '-e', '-c', `stty cols 100 rows 40; exec '${process.execPath}' '${CPCC}' jobs`, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, out);
    const lines = out.replace(/\r/g, '').trimEnd().split('\n');
    // Top border, header, rule, a line a job, bottom border.
    assert.equal(lines.length, 4 + ids.length, out);
    for (const line of lines) assert.ok(widthOf(line) <= 100, `wider than 100: '${line}'`);
    assert.match(lines[0]!, /^┌─+┬/);
    assert.ok(lines.slice(3, -1).every((l) => /^│ \S{8,} +│/.test(l) && l.includes('…')), out);
  });

  it('keeps piped tables as plain whitespace columns with no width limit, their footer on stderr', async () => {
    const r = await cpcc(home, ['jobs', '--limit', '1']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 2, r.stdout);
    assert.match(lines[0]!, /^id +name +state +command +tries +exit +took +updated$/);
    const row = lines[1]!;
    assert.ok(ids.some((id) => id.endsWith(`-${row.split(/ +/)[0]!}`)), `not a job's short id: '${row}'`);
    // Only the columns' own limits cut: the name's 24 characters, the command's 40.
    assert.ok(row.includes(`${LONG_NAME.slice(0, 23)}…`), row);
    assert.ok(row.includes(`echo ${LONG_WORD.slice(0, 34)}…`), row);
    assert.ok(widthOf(row) > 80);
    assert.doesNotMatch(r.stdout, /more jobs/);
    assert.match(r.stderr, /more jobs: use --all, or a larger --limit/);
  });

  it('prints errors under --json as {"error":{"code","message"}} on stderr, with exit codes 1 and 2', async () => {
    const missing = await cpcc(home, ['--json', 'job', '00000000-0000-4000-8000-000000000000']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, '');
    const e = JSON.parse(missing.stderr) as { error: { code: string; message: string } };
    assert.equal(e.error.code, 'JOB_NOT_FOUND');
    assert.equal(typeof e.error.message, 'string');
    assert.ok(e.error.message.length > 0);
    assert.deepEqual(Object.keys(e), ['error']);

    const bad = await cpcc(home, ['jobs', '--no-such-flag', '--json']);
    assert.equal(bad.code, 2);
    assert.deepEqual(JSON.parse(bad.stderr), { error: { code: 'USAGE', message: "unknown option '--no-such-flag'" } });

    // Without --json the same error is the one line it always was.
    const plain = await cpcc(home, ['job', '00000000-0000-4000-8000-000000000000']);
    assert.equal(plain.code, 1);
    assert.match(plain.stderr, /^cpcc: .*\(JOB_NOT_FOUND\)\n$/);
    // `--json` after `--` belongs to the job's command, not to cpcc.
    assert.equal((await cpcc(home, ['submit', '--cores', 'x', '--', 'echo', '--json'])).stderr.startsWith('cpcc: '), true);
  });

  it('getf keeps an existing file unless --force, and writes to stdout with -o -', async () => {
    const src = join(data, 'src.txt');
    writeFileSync(src, 'the stored bytes\n');
    await ok(cpcc(home, ['setf', 'result', src]));
    const dir = await tempDir('cpcc-getf-');
    const target = join(dir, 'out.txt');
    writeFileSync(target, 'mine\n');

    const refused = await cpcc(home, ['getf', '@result', '-o', target]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /out\.txt exists; nothing was written \(--force overwrites it\)/);
    assert.equal(readFileSync(target, 'utf8'), 'mine\n');
    assert.deepEqual(readdirSync(dir), ['out.txt']);

    // The default name in the current folder is kept alike.
    writeFileSync(join(dir, 'result'), 'also mine\n');
    const here = await cpcc(home, ['--json', 'getf', 'result'], { cwd: dir });
    assert.equal(here.code, 1);
    assert.equal(JSON.parse(here.stderr).error.code, 'FILE_EXISTS');
    assert.equal(readFileSync(join(dir, 'result'), 'utf8'), 'also mine\n');

    await ok(cpcc(home, ['getf', '@result', '-o', target, '--force']));
    assert.equal(readFileSync(target, 'utf8'), 'the stored bytes\n');
    assert.deepEqual(readdirSync(dir).sort(), ['out.txt', 'result']);

    const piped = await cpcc(home, ['getf', '@result', '-o', '-']);
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stdout, 'the stored bytes\n');
  });

  it('save keeps an existing file unless --force, and writes the tar to stdout with - or -o -', async () => {
    const dir = await tempDir('cpcc-save-');
    const target = join(dir, 'fit.tar');
    writeFileSync(target, 'not yours to replace\n');
    for (const args of [['save', 'fit', target], ['save', 'fit', '-o', target]]) {
      const refused = await cpcc(home, args);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /fit\.tar exists; nothing was written \(--force overwrites it\)/);
      assert.equal(readFileSync(target, 'utf8'), 'not yours to replace\n');
    }
    const refusedHere = await cpcc(home, ['save', 'fit'], { cwd: dir });
    assert.equal(refusedHere.code, 1);
    assert.equal(readFileSync(target, 'utf8'), 'not yours to replace\n');
    assert.deepEqual(readdirSync(dir), ['fit.tar']);

    await ok(cpcc(home, ['save', 'fit', target, '--force']));
    const saved = readFileSync(target);
    assert.equal(saved.subarray(257, 262).toString('latin1'), 'ustar');

    for (const args of [['save', 'fit', '-'], ['save', 'fit', '-o', '-']]) {
      const r = await cpcc(home, args);
      assert.equal(r.code, 0, r.stderr);
      // A tar's first header is ASCII, so its magic survives being read as text.
      assert.equal(r.stdout.slice(257, 262), 'ustar');
      assert.match(r.stderr, /saved project fit to stdout/);
    }
    assert.deepEqual(readdirSync(dir), ['fit.tar']);
  });

  it('fits the wait progress line to COLUMNS and shows an ETA once jobs finish', async () => {
    await ts.admin.createProject('a-project-with-a-long-enough-name');
    const waiter = await cpccHome(ts, 'a-project-with-a-long-enough-name');
    for (let i = 0; i < 4; i++) await ok(cpcc(waiter, ['submit', '--', 'sleep', '1']));
    spawnWorker({
      url: ts.server.url,
      caFile: ts.caFile(),
      serverId: ts.server.serverId,
      token: await ts.server.createWorkerToken('one-core'),
      name: 'one-core',
      cores: 1,
      workDir: await tempDir('cpc-work-one-core-'),
    });
    const width = 50;
    const r = await cpcc(waiter, ['wait'], { env: { COLUMNS: String(width) } });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.trimEnd().split('\n');
    for (const line of lines) assert.ok(widthOf(line) <= width, `wider than ${width}: '${line}'`);
    // One job at a time: after the first of four finishes there is a pace, and the time left is shown, cut text or not.
    assert.ok(lines.some((l) => /^a-project\S*: [123]\/4 .*, ETA \d+(\.\d)?(ms|s|m\d\ds)$/.test(l)), r.stderr);
    assert.ok(lines.some((l) => l.includes('…')), r.stderr);
  });
});

describe('cpcc jobs --columns', () => {
  let ts: TestServer;
  let home: string;

  before(async () => {
    ts = await startTestServer();
    await ts.admin.createProject('acct');
    home = await cpccHome(ts, 'acct');
  });

  it('lists wall, CPU, peak memory and efficiency of each job’s latest measured attempt, uncut at COLUMNS=80', async () => {
    const a = await ok(cpcc(home, ['submit', '--name', 'calibration-of-the-array', '--', 'true']));
    const b = await ok(cpcc(home, ['submit', '--name', 'b', '--cores', '2', '--', 'true']));
    const queued = await ok(cpcc(home, ['submit', '--name', 'c', '--cores', '4', '--', 'true']));
    const worker = await ts.worker({ name: 'acct-node', cores: 4, memoryMb: 8192 });
    const figures = new Map([
      [a, { wallS: 90, userS: 40, systemS: 5, maxRssMb: 300 }],
      [b, { wallS: 3600, userS: 7000, systemS: 200, maxRssMb: 2048 }],
    ]);
    const claimed = new Set<string>();
    while (claimed.size < 2) {
      const { jobs } = await worker.client.claim(worker.workerId, { waitS: 1, max: 2 - claimed.size });
      for (const j of jobs) {
        const usage = figures.get(j.id);
        assert.ok(usage, `only jobs a and b fit beside each other: claimed ${j.id}`);
        await worker.client.result(worker.workerId, resultOf(j.id, j.attempt, { usage, durationMs: usage.wallS * 1000 }));
        claimed.add(j.id);
      }
    }
    const r = await cpcc(home, ['jobs', '--columns', 'wall,cpu,mem,eff'], { env: { COLUMNS: '80' } });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 4, r.stdout);
    for (const line of lines) assert.ok(widthOf(line) <= 80, `wider than 80: '${line}'`);
    assert.match(lines[0]!, /^id\s+name\s+state\s+tries\s+exit\s+wall\s+cpu\s+mem\s+eff$/);
    const rowOf = (id: string) => lines.find((l) => id.endsWith(`-${l.split(/\s+/)[0]}`))!;
    assert.match(rowOf(a), /\s1m30s\s+45s\s+300M\s+50%$/);
    assert.match(rowOf(b), /\s1h\s+2h\s+2048M\s+100%$/);
    // Not run yet: no figures.
    assert.doesNotMatch(rowOf(queued), /%$/);

    const json = JSON.parse(await ok(cpcc(home, ['jobs', '--json', '--columns', 'mem'])));
    assert.equal(json.jobs.length, 3, 'the JSON listing is the same with or without columns');

    const bad = await cpcc(home, ['jobs', '--columns', 'wall,disk']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--columns.*'disk' is not a column; give a comma-separated list of wall, cpu, mem, eff/);
  });
});
