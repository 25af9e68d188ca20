import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { updateConfig } from '../src/client/config.js';
import { benchServer, COMPILED, round } from './lib.js';

/**
 * Cold starts, as users and scripts pay them: whole processes, from spawn to
 * exit, of the built bins (dist/bin; `npm run bench` builds them), each
 * beside a bare `node -e 0` measured in the same rounds, so that a loaded
 * machine slows both alike. Rounds alternate the commands, and each figure
 * is the median of its rounds.
 *
 *   offline    cpcc --version, --help, pwd; cpc-server --help; cpc-worker --help
 *   online     cpcc status, jobs --limit 20, submit -- true against a local server
 *              (in this process, with a project of its own)
 *   server     cpc-server start on an empty home, from spawn until its secure
 *              port answers a request
 */

export interface ColdStartRun {
  /** Median wall time of `node -e 0`, in ms. */
  nodeMs: number;
  /** Median wall time of each command, in ms. */
  ms: Record<string, number>;
  /** Each command's median over node's: the offline targets. */
  ratio: Record<string, number>;
  /** Each command's median less node's, in ms: the online targets. */
  overMs: Record<string, number>;
  /** cpc-server start on an empty home until its first answered request, median, in ms. */
  serverStartMs: number;
}

const ROOT = COMPILED ? join(import.meta.dirname, '..', '..') : join(import.meta.dirname, '..');
/**
 * The package whose built bins are measured: this one, or the one named by
 * CPC_BENCH_BINS (a checkout of another version, built), to set figures
 * before and after a change side by side on the same machine.
 */
const BINS = process.env.CPC_BENCH_BINS ?? ROOT;
const bin = (name: string): string => {
  // cpcc is the bundle users run, where the build makes one (older builds have the modules only).
  const bundle = join(BINS, 'dist', 'bin', `${name}.cjs`);
  return existsSync(bundle) ? bundle : join(BINS, 'dist', 'bin', `${name}.js`);
};

export const OFFLINE = ['cpcc --version', 'cpcc --help', 'cpcc pwd', 'cpc-server --help', 'cpc-worker --help'] as const;
export const ONLINE = ['cpcc status', 'cpcc jobs --limit 20', 'cpcc submit -- true'] as const;

/** Wall time of one process, spawn to exit; a failure is an error (a fast wrong answer measures nothing). */
function timed(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const ms = performance.now() - t0;
      if (code === 0) resolve(ms);
      else reject(new Error(`${argv.slice(1).join(' ')} exited with ${code}: ${err.slice(0, 300)}`));
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** True once anything answers HTTPS on the port (the certificate is not checked: only the answer's time counts). */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/api/v1/server', rejectUnauthorized: false, agent: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** `cpc-server start` on a new home: ms from spawn until the secure port answers. */
async function serverStart(): Promise<number> {
  const home = mkdtempSync(join(tmpdir(), 'cpc-bench-start-'));
  const [port, unsecure] = [await freePort(), await freePort()];
  const t0 = performance.now();
  const child = spawn(process.execPath, [bin('cpc-server'), '--home', home, 'start', '--host', '127.0.0.1', '--port', String(port), '--unsecure-port', String(unsecure)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    while (!(await answers(port))) {
      if (child.exitCode !== null) throw new Error(`cpc-server start exited with ${child.exitCode}: ${err.slice(0, 300)}`);
      if (performance.now() - t0 > 60_000) throw new Error('cpc-server start did not answer within 60 s');
      await new Promise((r) => setTimeout(r, 2));
    }
    return performance.now() - t0;
  } finally {
    child.kill('SIGTERM');
    await exited;
    rmSync(home, { recursive: true, force: true });
  }
}

export async function coldStart(rounds: number, serverStarts: number): Promise<ColdStartRun> {
  const bench = await benchServer();
  const home = mkdtempSync(join(tmpdir(), 'cpc-bench-cpcc-'));
  try {
    const { server, admin } = bench;
    await updateConfig(home, (c) => {
      c.servers.here = { url: server.url, serverId: server.serverId, caPem: server.caPem, caFingerprint: server.caFingerprint, user: 'cpc-admin', token: admin.token!, project: bench.project };
      c.current = 'here';
    });
    // A list of 20 has 20 to show.
    await admin.submit(bench.project, Array.from({ length: 20 }, () => ({ argv: ['true'] })));
    const env = { ...process.env, CPCC_HOME: home, NO_COLOR: '1' };
    const commands: Record<string, string[]> = { node: ['-e', '0'] };
    for (const c of [...OFFLINE, ...ONLINE]) {
      const [name, ...args] = c.split(' ');
      commands[c] = [bin(name!), ...args];
    }
    // One untimed round: the files are read from disk once, as after any first use.
    for (const argv of Object.values(commands)) await timed(argv, env);
    const times: Record<string, number[]> = {};
    for (let i = 0; i < rounds; i++) {
      for (const [name, argv] of Object.entries(commands)) (times[name] ??= []).push(await timed(argv, env));
    }
    const nodeMs = median(times.node!);
    const ms: Record<string, number> = {};
    const ratio: Record<string, number> = {};
    const overMs: Record<string, number> = {};
    for (const c of [...OFFLINE, ...ONLINE]) {
      ms[c] = round(median(times[c]!), 1);
      ratio[c] = round(ms[c] / nodeMs);
      overMs[c] = round(ms[c] - nodeMs, 1);
    }
    const starts: number[] = [];
    for (let i = 0; i < serverStarts; i++) starts.push(await serverStart());
    return { nodeMs: round(nodeMs, 1), ms, ratio, overMs, serverStartMs: round(median(starts), 1) };
  } finally {
    rmSync(home, { recursive: true, force: true });
    await bench.close();
  }
}
