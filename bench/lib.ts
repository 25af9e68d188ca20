import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../src/client/api/client.js';
import { startServer, type RunningServer, type ServerOptions } from '../src/server/start/server.js';
import { dropOnLoopback, lossyAddresses } from './wan-loss.js';

/** A server in a temp home with an admin client and a project, for one benchmark. */
export interface Bench {
  server: RunningServer;
  admin: ApiClient;
  project: string;
  workerToken: string;
  close(): Promise<void>;
}

/**
 * `npm run bench` runs the suite compiled (dist/bench), as the servers run in
 * production: code run through tsx carries a helper call for every function
 * it makes, which showed in the per-request profiles. From source (tsx) it
 * works the same, a little slower.
 */
export const COMPILED = import.meta.url.endsWith('.js');

/** bench/ in the source tree, where results and profiles go either way. */
export const BENCH_DIR = COMPILED ? join(import.meta.dirname, '..', '..', 'bench') : import.meta.dirname;

export function tempHome(): string {
  return mkdtempSync(join(tmpdir(), 'cpc-bench-'));
}

export async function benchServer(opts: Partial<ServerOptions> = {}): Promise<Bench> {
  const home = tempHome();
  const server = await startServer({ home, securePort: 0, unsecurePort: 0, host: '127.0.0.1', publicHost: '127.0.0.1', logLevel: 'warn', ...opts });
  const admin = new ApiClient({ url: server.url, caPem: server.caPem, serverId: server.serverId });
  admin.token = (await admin.login('cpc-admin', server.adminPassword!)).token;
  await admin.createProject('bench');
  const workerToken = await server.createWorkerToken('bench');
  return {
    server,
    admin,
    project: 'bench',
    workerToken,
    close: async () => {
      await admin.close();
      await server.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Makes `a` and `b` trusted peers and waits for their link; `a` dials `b` at `host` (its public host). */
export async function connectPeers(a: Bench, b: Bench, host = '127.0.0.1'): Promise<void> {
  await a.admin.call('POST', '/peers/connect', { host, port: b.server.unsecurePort, caFingerprint: b.server.caFingerprint });
  await b.admin.call('POST', `/peers/${a.server.serverId}/trust`, {});
  const deadline = Date.now() + 15_000;
  while (a.server.ctx.linkState?.(b.server.serverId) !== 'up' || b.server.ctx.linkState?.(a.server.serverId) !== 'up') {
    if (Date.now() > deadline) throw new Error('the peer link did not come up');
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export interface Stat {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function stat(runs: number[]): Stat {
  const s = [...runs].sort((a, b) => a - b);
  return { median: percentile(s, 50), min: s[0]!, max: s[s.length - 1]!, runs };
}

export const round = (n: number, digits = 2): number => Number(n.toFixed(digits));

export function percentiles(samples: number[]): { p50: number; p90: number; p99: number; max: number } {
  const s = Float64Array.from(samples).sort();
  const at = (p: number) => (s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!);
  return { p50: round(at(50)), p90: round(at(90)), p99: round(at(99)), max: round(s.length ? s[s.length - 1]! : NaN) };
}

/**
 * CPU time this process has used, in µs. Per item of work it is a steadier
 * figure than a rate on a machine shared with other work, and it tells a
 * server that is busy from one that waits for its load generator.
 */
export function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Set by `bench/run.ts --profile`: where CPU profiles of measured phases go.
 * An environment variable, so that child processes profile themselves too.
 */
export const PROFILE_ENV = 'CPC_BENCH_PROFILE';

let profileSeq = 0;
/** Profiles still running; `reply` ends them before the process exits. */
const running = new Set<() => Promise<void>>();

/**
 * Runs `fn`, the measured phase of a figure, under the V8 CPU profiler when
 * profiling was asked for; set-up and checks stay out of the profile, so its
 * top entries are what the figure pays for.
 */
export async function profiled<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const dir = process.env[PROFILE_ENV];
  if (!dir) return fn();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      running.delete(stop);
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${name}-${process.pid}-${++profileSeq}.cpuprofile`), JSON.stringify(profile));
    })());
  running.add(stop);
  try {
    return await fn();
  } finally {
    await stop();
  }
}

/**
 * Runs a TypeScript file of bench/ in a child node process and resolves with
 * the last JSON line it prints. `onLine` sees every line as it arrives, for
 * children that say when their measured phase starts.
 */
export function runChild<T>(
  script: string,
  args: string[],
  opts: { nodeFlags?: string[]; onLine?: (line: string) => void } = {},
): Promise<T> {
  const file = join(import.meta.dirname, COMPILED ? script.replace(/\.ts$/, '.js') : script);
  const child = spawn(process.execPath, [...(opts.nodeFlags ?? []), ...(COMPILED ? [] : ['--import', 'tsx']), file, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let buffered = '';
  let last = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line) continue;
      last = line;
      opts.onLine?.(line);
    }
  });
  return new Promise<T>((resolve, reject) => {
    child.on('error', reject);
    // 'close', not 'exit': the last line may still be in the pipe when the process exits.
    child.on('close', (code, signal) => {
      if (code !== 0) return reject(new Error(`${script} exited with ${code ?? signal}`));
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`${script} printed no result (last line: ${last.slice(0, 200)})`));
      }
    });
  });
}

/** Prints one JSON line for the parent and exits once it is written (and any profile saved). */
export function reply(value: unknown): void {
  void Promise.all([...running].map((stop) => stop())).finally(() =>
    process.stdout.write(JSON.stringify(value) + '\n', () => process.exit(0)),
  );
}

/**
 * A closed-loop load: `concurrency` loops each send one request after the
 * other; after a warm-up of at most a second, requests and their latencies
 * are counted for `seconds` (profiled under `name` when asked).
 */
export async function closedLoop(
  name: string,
  concurrency: number,
  seconds: number,
  send: () => Promise<void>,
): Promise<{ requests: number; ms: number } & ReturnType<typeof percentiles>> {
  let measuring = false;
  let stop = false;
  let requests = 0;
  const latencies: number[] = [];
  const loop = async (): Promise<void> => {
    while (!stop) {
      const t0 = performance.now();
      await send();
      if (measuring) {
        requests++;
        latencies.push(performance.now() - t0);
      }
    }
  };
  const loops = Array.from({ length: concurrency }, () => loop());
  await new Promise((r) => setTimeout(r, Math.min(1000, seconds * 500)));
  const result = await profiled(name, async () => {
    measuring = true;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    measuring = false;
    return { requests, ms: performance.now() - t0 };
  });
  stop = true;
  await Promise.all(loops);
  return { ...result, ...percentiles(latencies) };
}

/** A wide-area path between two bench servers: each way `oneWayMs` ± `jitterMs`, and `lossPercent` of the packets dropped (wan-loss.ts, as root). */
export interface Wan {
  oneWayMs: number;
  jitterMs: number;
  lossPercent?: number;
}

/**
 * Two servers, `asking` connected to `home`. With `wan`, each server's
 * public host is a loopback address of its own (127.0.0.2, 127.0.0.3) where
 * a delaying relay (test/faults/delay-relay.ts, in a process of its own:
 * wan-relay.ts) listens on its ports: every byte between the two servers
 * crosses a relay, while the bench's clients reach them directly.
 */
export async function delegatingPair(wan?: Wan): Promise<{ asking: Bench; home: Bench; close(): Promise<void> }> {
  if (!wan) {
    const asking = await benchServer();
    const home = await benchServer();
    await connectPeers(asking, home);
    return { asking, home, close: async () => void (await Promise.all([home.close(), asking.close()])) };
  }
  const lossy = (wan.lossPercent ?? 0) > 0;
  const [askingHost, homeHost] = lossy ? lossyAddresses() : ['127.0.0.2', '127.0.0.3'];
  const asking = await benchServer({ publicHost: askingHost });
  const home = await benchServer({ publicHost: homeHost });
  const ports = (b: Bench) => `${b.server.securePort},${b.server.unsecurePort}`;
  const file = join(import.meta.dirname, COMPILED ? 'wan-relay.js' : 'wan-relay.ts');
  const relays = spawn(
    process.execPath,
    [...(COMPILED ? [] : ['--import', 'tsx']), file, String(wan.oneWayMs), String(wan.jitterMs), `${askingHost}:127.0.0.1:${ports(asking)}`, `${homeHost}:127.0.0.1:${ports(home)}`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const keep = lossy ? dropOnLoopback([askingHost, homeHost], wan.lossPercent!) : () => {};
  const closeAll = async () => {
    keep();
    relays.kill('SIGTERM');
    await Promise.all([home.close(), asking.close()]);
  };
  try {
    await new Promise<void>((resolve, reject) => {
      relays.once('exit', (code) => reject(new Error(`wan-relay.ts exited with ${code}`)));
      relays.stdout.on('data', (d: Buffer) => d.toString().includes('"ready"') && resolve());
    });
    await connectPeers(asking, home, homeHost);
  } catch (err) {
    await closeAll();
    throw err;
  }
  return { asking, home, close: closeAll };
}
