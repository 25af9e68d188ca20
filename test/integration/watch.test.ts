/**
 * `cpcc watch` as a user runs it, against a real server: plain lines when
 * its output is not a terminal, JSON lines with --json, and a screen redrawn
 * in place on a terminal (a pseudo-terminal from util-linux's `script`):
 * counts by state, running jobs with worker and elapsed time, recent
 * failures. The rendering itself is also checked without a terminal.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Output } from '../../src/client/output.js';
import { WatchState } from '../../src/client/commands/watch.js';
import type { StreamEvent } from '../../src/core/wire.js';
import { ROOT, cleanup, cpccHome, resultOf, startTestServer, tempDir, until, type SimWorker, type TestServer } from '../helpers/server.js';

after(cleanup);

const CPCC = join(ROOT, 'bin', 'cpcc.ts');

interface Watcher {
  child: ChildProcess;
  out(): string;
  err(): string;
  /** Ctrl-C, then how it ended. */
  stop(): Promise<number | null>;
}

function spawnWatch(home: string, args: string[], opts: { tty?: boolean } = {}): Watcher {
  const env: NodeJS.ProcessEnv = { ...process.env, CPCC_HOME: home, NO_COLOR: '1', COLUMNS: '120', LINES: '40' };
  delete env.FORCE_COLOR;
  const command = [process.execPath, '--import', 'tsx', CPCC, 'watch', ...args];
  const child = opts.tty
    ? // script gives the command a pseudo-terminal and copies what it draws to stdout.
      // `exec` leaves no shell between: Ctrl-C must reach cpcc alone, not kill a waiting shell.
      spawn('script', ['-q', '-e', '-c', `stty cols 120 rows 40; exec ${command.map((a) => `'${a}'`).join(' ')}`, '/dev/null'], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(command[0]!, command.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    out: () => out,
    err: () => err,
    stop: async () => {
      if (opts.tty) child.stdin!.write('\x03');
      else child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

describe('cpcc watch', () => {
  let ts: TestServer;
  let home: string;
  let worker: SimWorker;

  before(async () => {
    ts = await startTestServer();
    home = await cpccHome(ts, 'demo', 'cpcc-watch-');
    await ts.admin.createProject('demo');
    await ts.admin.createProject('other');
    worker = await ts.worker({ name: 'node-3', cores: 4 });
  });

  it('prints one line per change when not on a terminal, and stops on Ctrl-C', async () => {
    const w = spawnWatch(home, []);
    await until('watch to start', () => w.err().includes("watching 'demo'") && /demo: waiting 0/.test(w.out()), { timeoutMs: 20_000 });
    const { ids } = await ts.admin.submit('demo', [{ argv: ['true'], name: 'good' }, { argv: ['false'], name: 'bad' }]);
    await ts.admin.submit('other', [{ argv: ['true'], name: 'elsewhere' }]);
    const { jobs } = await worker.client.claim(worker.workerId, { waitS: 0, max: 3 });
    assert.equal(jobs.length, 3);
    for (const j of jobs) {
      await worker.client.result(worker.workerId, resultOf(j.id, j.attempt, { exitCode: j.id === ids[1] ? 1 : 0 }));
    }
    await until('the changes to be printed', () => {
      const out = w.out();
      return (
        out.includes(`${ids[0]}  good  submitted → queued`) &&
        new RegExp(`${ids[0]}  good  queued → running  \\(running on node-3\\)`).test(out) &&
        out.includes(`${ids[0]}  good  running → done`) &&
        new RegExp(`${ids[1]}  bad  running → failed  \\(exit code 1\\)`).test(out)
      );
    });
    assert.doesNotMatch(w.out(), /elsewhere|other/, 'only the watched project');
    assert.equal(await w.stop(), 0);
  });

  it('prints the stream as JSON lines with --json', async () => {
    const w = spawnWatch(home, ['other', '--json']);
    await until('the stream to open', () => w.out().includes('"type":"ready"'), { timeoutMs: 20_000 });
    const { ids } = await ts.admin.submit('other', [{ argv: ['true'] }]);
    await until('the event as JSON', () => w.out().includes(ids[0]!));
    const lines = w.out().trim().split('\n').map((l) => JSON.parse(l) as { type: string });
    assert.ok(lines.some((m) => m.type === 'event'));
    assert.equal(await w.stop(), 0);
  });

  it('draws counts, running jobs with worker and time, and recent failures on a terminal', { skip: !existsSync('/usr/bin/script') && 'no script(1)' }, async () => {
    const w = spawnWatch(home, ['demo'], { tty: true });
    await until('the screen', () => w.out().includes('cpc watch') && w.out().includes('RUNNING (0)'), { timeoutMs: 20_000 });
    const { ids } = await ts.admin.submit('demo', [{ argv: ['sleep', '100'], name: 'long-one' }]);
    const { jobs } = await worker.client.claim(worker.workerId, { waitS: 0, max: 4 });
    assert.ok(jobs.some((j) => j.id === ids[0]));
    await until('the running job on screen', () => /RUNNING \(1\)/.test(w.out()) && /long-one\s+node-3\s+local\s+\d/.test(w.out()));
    assert.match(w.out(), /RECENT FAILURES \(1\)[\s\S]*bad/);
    assert.match(w.out(), /running 1/);
    assert.equal(await w.stop(), 0);
    // Leaving restores the screen and says where things stand.
    assert.match(w.out(), /\x1b\[\?1049l[\s\S]*demo: waiting \d+, queued \d+, running 1/);
  });
});

describe('the watch view', () => {
  it('keeps counts, running jobs and failures from events and renders them', () => {
    const state = new WatchState('p');
    const counts = { waiting: 0, queued: 1, running: 0, done: 0, failed: 0, cancelled: 0 };
    state.load([{ name: 'p', owner: 'u', members: [], createdAt: 0, counts }], [], []);
    const at = Date.now() - 65_000;
    const ev = (seq: number, extra: Partial<StreamEvent>): StreamEvent => ({ type: 'event', seq, at, kind: 'x', ...extra });
    const attempt = { n: 1, workerId: 'w', workerName: 'node-9', via: 'local', startedAt: at };
    state.apply(
      ev(1, {
        projects: [{ name: 'p', owner: 'u', members: [], counts: { ...counts, queued: 0, running: 1 } }],
        jobs: [{ id: 'job-1', project: 'p', name: 'alpha', state: 'running', from: 'queued', reason: 'running on node-9', updatedAt: at, attempts: 1, attempt }],
      }),
    );
    state.apply(ev(2, { jobs: [{ id: 'job-2', project: 'p', state: 'failed', from: 'running', reason: 'exit code 3', updatedAt: at, attempts: 1 }] }));
    state.apply(ev(3, { jobs: [{ id: 'job-9', project: 'elsewhere', state: 'failed', from: 'running', reason: 'x', updatedAt: at, attempts: 1 }] }));
    const out = new Output({ write: () => true }, { write: () => true }, { color: false });
    const screen = state.render(out, { now: Date.now(), width: 100, height: 30, server: 's', live: true }).join('\n');
    assert.match(screen, /running 1/);
    assert.match(screen, /RUNNING \(1\)\n.*job.*worker.*running for\n\s+job-1\s+alpha\s+node-9\s+local\s+1m0[45]s/);
    assert.match(screen, /RECENT FAILURES \(1\)\njob-2  exit code 3/);
    assert.doesNotMatch(screen, /job-9/);
    for (const line of screen.split('\n')) assert.ok(line.length <= 100, `fits: ${line}`);

    state.apply(ev(4, { jobs: [{ id: 'job-1', project: 'p', state: 'done', from: 'running', reason: 'exit code 0', updatedAt: at, attempts: 1, attempt }] }));
    assert.equal(state.running.size, 0);
    assert.equal(state.apply(ev(5, { omitted: [{ project: 'p', jobs: 5000 }] })), true, 'too many to list: reload');
  });
});
