import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import {
  readTail,
  startAttempt,
  type AttemptSpec,
  type RunnerOptions,
  type RunningAttempt,
} from '../../src/worker/runner.js';

const tempDirs: string[] = [];
const started: RunningAttempt[] = [];
const strayPids = new Set<number>();

async function workDir(): Promise<string> {
  const d = await fsp.mkdtemp(join(tmpdir(), 'cpc-runner-'));
  tempDirs.push(d);
  return d;
}

after(async () => {
  await Promise.all(started.map((a) => a.abandon()));
  for (const pid of strayPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await Promise.all(tempDirs.map((d) => fsp.rm(d, { recursive: true, force: true })));
});

let seq = 0;
function spec(over: Partial<AttemptSpec>): AttemptSpec {
  seq++;
  return {
    jobId: `job-${seq}`,
    attempt: 1,
    project: 'proj',
    env: {},
    resources: { cores: 2, memoryMb: 512 },
    timeoutS: null,
    ...over,
  };
}

async function run(over: Partial<AttemptSpec>, opts: Partial<RunnerOptions> = {}): Promise<RunningAttempt> {
  const a = await startAttempt(spec(over), { workDir: opts.workDir ?? (await workDir()), ...opts });
  started.push(a);
  return a;
}

/** A process that is a zombie has ended; only its parent has not noticed yet. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function readPid(path: string): Promise<number> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const text = await fsp.readFile(path, 'utf8').catch(() => '');
    if (/^\d+\n/.test(text)) {
      const pid = Number(text.trim());
      strayPids.add(pid);
      return pid;
    }
    if (Date.now() > deadline) throw new Error(`no pid in ${path}`);
    await delay(20);
  }
}

async function waitDead(pid: number, ms = 2000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await delay(20);
  }
  return true;
}

describe('runner', () => {
  it('reports the exit code and the output of an argv job', async () => {
    const a = await run({ argv: ['sh', '-c', 'echo hi; echo oops >&2; exit 3'] });
    const o = await a.done;
    assert.equal(o.how, 'exited');
    assert.equal(o.exitCode, 3);
    assert.equal(o.signal, null);
    assert.equal(o.stdout, 'hi\n');
    assert.equal(o.stderr, 'oops\n');
    assert.equal(o.stdoutBytes, 3);
    assert.equal(o.stderrBytes, 5);
    assert.ok(o.durationMs >= 0);
    assert.equal(readFileSync(join(a.dir, 'stdout.log'), 'utf8'), 'hi\n');
  });

  it('runs a shell line with /bin/sh and exit code 0', async () => {
    const o = await (await run({ shell: 'x=4; echo "$((x * 2))" | tr 8 E' })).done;
    assert.deepEqual([o.how, o.exitCode, o.stdout], ['exited', 0, 'E\n']);
  });

  it('passes argv through without a shell', async () => {
    const o = await (await run({ argv: ['printf', '%s|', '$HOME', 'a b', '*'] })).done;
    assert.equal(o.stdout, '$HOME|a b|*|');
  });

  it('reports death by a signal', async () => {
    const o = await (await run({ shell: 'kill -KILL $$' })).done;
    assert.equal(o.how, 'exited');
    assert.equal(o.exitCode, null);
    assert.equal(o.signal, 'SIGKILL');
  });

  it('runs in a fresh folder of its own with the job environment', async () => {
    const dir = await workDir();
    await fsp.mkdir(join(dir, 'j-env-7'), { recursive: true });
    await fsp.writeFile(join(dir, 'j-env-7', 'leftover'), 'old');
    const saved = process.env.CPC_WORKER_TOKEN;
    process.env.CPC_WORKER_TOKEN = 'do-not-leak';
    let a: RunningAttempt;
    try {
      a = await startAttempt(
        {
          jobId: 'j-env',
          attempt: 7,
          project: 'physics',
          shell: 'ls; pwd; env',
          env: { GREETING: 'hello world', CPC_ATTEMPT: 'forged' },
          resources: { cores: 3, memoryMb: 1500 },
          timeoutS: null,
        },
        { workDir: dir },
      );
    } finally {
      if (saved === undefined) delete process.env.CPC_WORKER_TOKEN;
      else process.env.CPC_WORKER_TOKEN = saved;
    }
    started.push(a);
    const o = await a.done;
    assert.equal(a.dir, join(dir, 'j-env-7'));
    const lines = o.stdout.split('\n');
    assert.ok(!lines.includes('leftover'), 'the folder is made fresh');
    assert.ok(lines.includes(await fsp.realpath(a.dir)) || lines.includes(a.dir), 'cwd is the attempt folder');
    const env = new Map(lines.filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    assert.equal(env.get('CPC_JOB_ID'), 'j-env');
    assert.equal(env.get('CPC_ATTEMPT'), '7');
    assert.equal(env.get('CPC_PROJECT'), 'physics');
    assert.equal(env.get('CPC_CORES'), '3');
    assert.equal(env.get('CPC_MEMORY_MB'), '1500');
    assert.equal(env.get('GREETING'), 'hello world');
    assert.equal(env.get('PATH'), process.env.PATH);
    assert.equal(env.has('CPC_WORKER_TOKEN'), false);
  });

  it('keeps only the last maxLogBytes of each stream, with exact byte counts', async () => {
    const o = await (
      await run(
        { shell: 'head -c 3000000 /dev/zero | tr "\\0" x; printf END; i=0; while [ $i -lt 100 ]; do printf 0123456789 >&2; i=$((i+1)); done' },
        { maxLogBytes: 1000 },
      )
    ).done;
    assert.equal(o.stdoutBytes, 3_000_003);
    assert.equal(o.stdout.length, 1000);
    assert.equal(o.stdout, 'x'.repeat(997) + 'END');
    assert.equal(o.stderrBytes, 1000);
    assert.equal(o.stderr, '0123456789'.repeat(100));
  });

  it('does not start a tail inside a multi-byte character', async () => {
    // 'a' + four two-byte characters = 9 bytes; the last 5 start on a continuation byte.
    const o = await (await run({ argv: ['printf', 'a\u00e9\u00e9\u00e9\u00e9'] }, { maxLogBytes: 5 })).done;
    assert.equal(o.stdoutBytes, 9);
    assert.equal(o.stdout, '\u00e9\u00e9');
  });

  it('reports start-failed for a missing binary', async () => {
    const a = await run({ argv: ['cpc-no-such-binary-here', '--flag'] });
    const o = await a.done;
    assert.equal(o.how, 'start-failed');
    assert.equal(o.exitCode, null);
    assert.match(o.stderr, /cpc-no-such-binary-here/);
    assert.match(o.stderr, /ENOENT/);
    assert.equal(o.stderrBytes, Buffer.byteLength(o.stderr));
    assert.equal(a.pid, undefined);
  });

  it('reports start-failed for a job with no command', async () => {
    const o = await (await run({ argv: [] })).done;
    assert.equal(o.how, 'start-failed');
    assert.match(o.stderr, /neither argv nor a shell/);
  });

  it('kills leftovers of a job that exited', async () => {
    const a = await run({ shell: 'sleep 300 & echo $! > bg.pid; exit 0' });
    const o = await a.done;
    assert.equal(o.exitCode, 0);
    const bg = await readPid(join(a.dir, 'bg.pid'));
    assert.ok(await waitDead(bg), 'the background child is killed with its group');
  });

  it('times out: SIGTERM to the whole group', async () => {
    const t0 = performance.now();
    const a = await run({ shell: 'echo $$ > main.pid; sleep 300 & echo $! > bg.pid; sleep 300', timeoutS: 0.5 }, { killGraceMs: 10_000 });
    const main = await readPid(join(a.dir, 'main.pid'));
    const bg = await readPid(join(a.dir, 'bg.pid'));
    assert.ok(isAlive(main) && isAlive(bg));
    const o = await a.done;
    const waited = performance.now() - t0;
    assert.equal(o.how, 'timeout');
    assert.equal(o.signal, 'SIGTERM');
    assert.ok(o.durationMs >= 450, `ran ${o.durationMs} ms`);
    assert.ok(waited < 5000, `SIGTERM was enough, yet the outcome took ${waited} ms`);
    assert.equal(isAlive(main), false);
    assert.ok(await waitDead(bg), 'the background child died with the group');
  });

  it('times out: SIGKILL after the grace when SIGTERM is ignored', async () => {
    const a = await run(
      { shell: 'trap "" TERM; echo $$ > main.pid; sleep 300 & echo $! > bg.pid; sleep 300', timeoutS: 0.3 },
      { killGraceMs: 400 },
    );
    const main = await readPid(join(a.dir, 'main.pid'));
    const bg = await readPid(join(a.dir, 'bg.pid'));
    const o = await a.done;
    assert.equal(o.how, 'timeout');
    assert.equal(o.signal, 'SIGKILL');
    assert.ok(o.durationMs >= 650, `ran ${o.durationMs} ms`);
    assert.equal(isAlive(main), false);
    assert.ok(await waitDead(bg), 'the background child was killed too');
  });

  it('abandon kills the group, and removeDir removes the folder', async () => {
    const a = await run({ shell: 'echo $$ > main.pid; sleep 300 & echo $! > bg.pid; wait' }, { killGraceMs: 10_000 });
    const main = await readPid(join(a.dir, 'main.pid'));
    const bg = await readPid(join(a.dir, 'bg.pid'));
    assert.equal(a.abandoned, false);
    await a.abandon();
    assert.equal(a.abandoned, true);
    assert.equal(isAlive(main), false);
    assert.ok(await waitDead(bg));
    assert.ok(existsSync(a.dir));
    await a.removeDir();
    assert.equal(existsSync(a.dir), false);
    await a.abandon(); // twice is harmless
  });

  it('readTail of a missing file is empty', async () => {
    assert.deepEqual(await readTail(join(await workDir(), 'nope.log'), 10), { text: '', bytes: 0 });
  });
});
