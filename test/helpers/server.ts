/**
 * Shared pieces of the integration tests: servers in temp homes (in-process or
 * as a real `cpc-server` subprocess), logged-in clients, simulated and real
 * workers, a poll-until helper, a journal reader, and one cleanup that stops
 * every process and removes every temp folder this module made.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, promises as fsp, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../../src/client/api/client.js';
import { main } from '../../src/client/cli.js';
import { updateConfig } from '../../src/client/config.js';
import type { ResultRequest } from '../../src/core/wire.js';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/start/server.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVER_BIN = join(ROOT, 'bin', 'cpc-server.ts');
const WORKER_BIN = join(ROOT, 'bin', 'cpc-worker.ts');

// ---- bookkeeping ------------------------------------------------------------

const tempDirs: string[] = [];
const servers: RunningServer[] = [];
const clients: ApiClient[] = [];
const processes = new Set<ChildProcess>();
/** Processes a test left running on purpose (orphaned jobs of a killed worker). */
const strayPids = new Set<number>();

export async function tempDir(prefix = 'cpc-test-'): Promise<string> {
  const dir = await fsp.mkdtemp(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** A pid to kill at cleanup if it is still alive. */
export function killAtCleanup(pid: number): void {
  strayPids.add(pid);
}

/**
 * Stops everything this module started, in an order that lets workers talk to
 * their server while they stop: worker and server processes, in-process
 * servers, clients, stray pids, temp folders.
 */
export async function cleanup(): Promise<void> {
  const procs = [...processes];
  await Promise.all(procs.filter((p) => p.spawnargs.includes(WORKER_BIN)).map((p) => stopProcess(p)));
  await Promise.all(procs.filter((p) => !p.spawnargs.includes(WORKER_BIN)).map((p) => stopProcess(p)));
  await Promise.all(servers.splice(0).map((s) => s.close().catch(() => {})));
  await Promise.all(clients.splice(0).map((c) => c.destroy().catch(() => {})));
  for (const pid of strayPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  strayPids.clear();
  await Promise.all(tempDirs.splice(0).map((d) => fsp.rm(d, { recursive: true, force: true })));
}

/** SIGTERM twice (workers kill their jobs on the second), then SIGKILL after a grace period. */
async function stopProcess(p: ChildProcess, graceMs = 3000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGTERM');
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

// ---- polling ------------------------------------------------------------------

export interface UntilOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Gives up at once when aborted. */
  signal?: AbortSignal;
}

/**
 * Calls `fn` until it returns something truthy and returns that, or fails with
 * `what` and the last value or error once the deadline has passed. Errors
 * thrown by `fn` count as "not yet".
 */
export async function until<T>(what: string, fn: () => T | Promise<T>, opts: UntilOptions = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  const interval = opts.intervalMs ?? 50;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
      last = v;
    } catch (err) {
      last = err;
    }
    if (opts.signal?.aborted) throw new Error(`stopped waiting for ${what}`);
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? `${last.name}: ${last.message}` : JSON.stringify(last);
      throw new Error(`timed out after ${opts.timeoutMs ?? 10_000} ms waiting for ${what} (last: ${detail})`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** A TCP port that was free a moment ago (for servers that must come back on the same port). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

// ---- clients ------------------------------------------------------------------

export function makeClient(url: string, caPem: string, token?: string, serverId?: string): ApiClient {
  const c = new ApiClient({ url, caPem, token, serverId, timeoutMs: 10_000 });
  clients.push(c);
  return c;
}

export async function loginAdmin(url: string, caPem: string, password: string): Promise<ApiClient> {
  const c = makeClient(url, caPem);
  const reply = await c.login('cpc-admin', password);
  c.token = reply.token;
  return c;
}

export interface SimWorker {
  client: ApiClient;
  token: string;
  workerId: string;
}

/** Simulated workers registered so far, for their default names. */
let simulated = 0;

/**
 * A worker that is only an API client: the test decides when it claims, heartbeats and reports.
 * Each gets a name of its own unless given one: the server takes a gone worker of the same name
 * on the same host for the same worker started again, and replaces its entry.
 */
export async function simulatedWorker(
  url: string,
  caPem: string,
  token: string,
  opts: { name?: string; cores?: number; memoryMb?: number } = {},
): Promise<SimWorker> {
  const client = makeClient(url, caPem, token);
  const reg = await client.register({
    name: opts.name ?? `sim-${++simulated}`,
    host: 'test-host',
    cores: opts.cores ?? 4,
    memoryMb: opts.memoryMb ?? 4096,
  });
  return { client, token, workerId: reg.workerId };
}

/** A result report with sensible defaults. */
export function resultOf(jobId: string, attempt: number, over: Partial<ResultRequest> = {}): ResultRequest {
  const stdout = over.stdout ?? '';
  const stderr = over.stderr ?? '';
  return {
    jobId,
    attempt,
    how: 'exited',
    exitCode: 0,
    signal: null,
    durationMs: 5,
    stdout,
    stderr,
    stdoutBytes: Buffer.byteLength(stdout),
    stderrBytes: Buffer.byteLength(stderr),
    ...over,
  };
}

// ---- in-process servers -----------------------------------------------------------

export interface TestServer {
  server: RunningServer;
  home: string;
  admin: ApiClient;
  adminPassword: string;
  /** A client with no token. */
  anonymous(): ApiClient;
  /** A fresh worker token and a simulated worker registered with it. */
  worker(opts?: { name?: string; cores?: number; memoryMb?: number }): Promise<SimWorker>;
  /** Writes the CA to a file (for cpc-worker --ca). */
  caFile(): string;
}

export async function startTestServer(opts: Partial<ServerOptions> = {}): Promise<TestServer> {
  const home = opts.home ?? (await tempDir('cpc-home-'));
  const server = await startServer({
    securePort: 0,
    unsecurePort: 0,
    host: '127.0.0.1',
    heartbeatIntervalS: 1,
    log: () => {},
    ...opts,
    home,
  });
  servers.push(server);
  if (server.adminPassword) knownPasswords.set(home, server.adminPassword);
  const adminPassword = adminPasswordOf(home);
  const admin = await loginAdmin(server.url, server.caPem, adminPassword);
  return {
    server,
    home,
    admin,
    adminPassword,
    anonymous: () => makeClient(server.url, server.caPem),
    worker: async (w = {}) => {
      const token = await server.createWorkerToken(w.name ?? 'sim');
      return simulatedWorker(server.url, server.caPem, token, w);
    },
    caFile: () => join(home, 'identity', 'ca.pem'),
  };
}

/** A cpcc settings folder logged in to `ts` as cpc-admin, with `project` current. */
export async function cpccHome(ts: TestServer, project: string, prefix = 'cpcc-'): Promise<string> {
  const home = await tempDir(prefix);
  await updateConfig(home, (c) => {
    c.servers.here = {
      url: ts.server.url,
      serverId: ts.server.serverId,
      caPem: ts.server.caPem,
      caFingerprint: ts.server.caFingerprint,
      user: 'cpc-admin',
      token: ts.admin.token!,
      project,
    };
    c.current = 'here';
  });
  return home;
}

// ---- cpcc ----------------------------------------------------------------------------------------

/** The built command line (`npm test` builds first; run `npm run build` before a single test file). */
/** The cpcc users run: the bundle (scripts/bundle-cpcc.mjs). */
export const CPCC = join(ROOT, 'dist', 'bin', 'cpcc.cjs');

export interface CpccRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CpccOptions {
  /** Written to its standard input, which is then closed. */
  input?: string;
  /** Added to the environment; output is plain text unless this sets FORCE_COLOR. */
  env?: Record<string, string>;
  cwd?: string;
}

/**
 * The built cpcc as a process of its own, as a user runs it, with `home` as
 * its settings folder; `child` is there to kill it.
 */
export function cpcc(home: string, args: string[], opts: CpccOptions = {}): Promise<CpccRun> & { child: ChildProcess } {
  assert.ok(existsSync(CPCC), `${CPCC} is missing; run 'npm run build' first`);
  const env: NodeJS.ProcessEnv = { ...process.env, CPCC_HOME: home, ...opts.env };
  // Tables fit COLUMNS when it is set; a runner's own terminal width must not decide what a test sees.
  if (opts.env?.COLUMNS === undefined) delete env.COLUMNS;
  if (!opts.env?.FORCE_COLOR) {
    delete env.FORCE_COLOR;
    env.NO_COLOR = '1';
  }
  const child = spawn(process.execPath, [CPCC, ...args], { env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const done = new Promise<CpccRun>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  child.stdin!.end(opts.input ?? '');
  return Object.assign(done, { child });
}

/** Its output, once it exited 0. */
export async function cpccOk(run: Promise<CpccRun>): Promise<string> {
  const r = await run;
  assert.equal(r.code, 0, `cpcc failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** cpcc's `main` in this process, its output captured: fast, for tests of many commands. */
export async function cpccInProcess(home: string, args: string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const env: NodeJS.ProcessEnv = { ...process.env, CPCC_HOME: home, NO_COLOR: '1' };
  delete env.FORCE_COLOR;
  const code = await main(['node', 'cpcc', ...args], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    stdin: Readable.from([input]),
    env,
  });
  return { code, stdout, stderr };
}

// ---- server subprocesses ------------------------------------------------------------

export interface RuntimeInfo {
  pid: number;
  url: string;
  unsecureUrl: string;
  serverId: string;
}

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface ServerProcess {
  child: ChildProcess;
  home: string;
  info: RuntimeInfo;
  caPem: string;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Everything it wrote to stdout so far (the start banner). */
  stdout(): string;
  /** Its structured log lines so far. */
  logLines(): LogLine[];
  /** Sends a signal and resolves with how the process ended. */
  stop(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface SpawnServerOptions {
  port?: number;
  unsecurePort?: number;
  heartbeatIntervalS?: number;
  timeoutMs?: number;
  /** Start it with --local-worker. */
  localWorker?: boolean;
  /** More environment for the process (a preloaded library, say). */
  env?: Record<string, string>;
  /** More flags for `start`, after the usual ones (a later flag wins). */
  args?: string[];
}

/** `cpc-server --home HOME start …` as a real process; resolves once its server.json names it. */
export async function spawnServer(home: string, opts: SpawnServerOptions = {}): Promise<ServerProcess> {
  const args = [
    '--import',
    'tsx',
    SERVER_BIN,
    '--home',
    home,
    'start',
    '--host',
    '127.0.0.1',
    '--port',
    String(opts.port ?? 0),
    '--unsecure-port',
    String(opts.unsecurePort ?? 0),
    '--heartbeat-interval',
    String(opts.heartbeatIntervalS ?? 1),
    ...(opts.localWorker ? ['--local-worker'] : []),
    ...(opts.args ?? []),
  ];
  const env = { ...process.env };
  // The settings of the test run's own shell stay out, but for the password hash cost (scripts/run-tests.mjs).
  for (const k of Object.keys(env)) if (k.startsWith('CPC_') && k !== 'CPC_SCRYPT_LOG_N') delete env[k];
  Object.assign(env, opts.env);
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  processes.add(child);
  let err = '';
  let out = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      processes.delete(child);
      resolve({ code, signal });
    }),
  );
  const runtimeFile = join(home, 'server.json');
  const gone = new AbortController();
  const listening = until(
    'the server subprocess to write its server.json',
    () => {
      if (!existsSync(runtimeFile)) return null;
      const parsed = JSON.parse(readFileSync(runtimeFile, 'utf8')) as RuntimeInfo;
      return parsed.pid === child.pid ? parsed : null;
    },
    { timeoutMs: opts.timeoutMs ?? 45_000, signal: gone.signal },
  );
  let info: RuntimeInfo;
  try {
    info = await Promise.race([
      listening,
      exit.then(({ code, signal }) => {
        throw new Error(`cpc-server exited (${signal ?? `code ${code}`}) before listening`);
      }),
    ]);
  } catch (e) {
    gone.abort();
    listening.catch(() => {});
    child.kill('SIGKILL');
    throw new Error(`${(e as Error).message}; stderr: ${err}; stdout: ${out}`);
  }
  return {
    child,
    home,
    info,
    caPem: readFileSync(join(home, 'identity', 'ca.pem'), 'utf8'),
    stderr: () => err,
    stdout: () => out,
    logLines: () => parseLogLines(err),
    stop: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exit;
    },
  };
}

export function parseLogLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // not a log line
    }
  }
  return out;
}

/** cpc-admin's first password by home: the server removes its file once cpc-admin has logged in. */
const knownPasswords = new Map<string, string>();

/** For servers started in this process, whose first password the test holds before the file goes. */
export function rememberAdminPassword(home: string, password: string): void {
  knownPasswords.set(home, password);
}

export function adminPasswordOf(home: string): string {
  let password = knownPasswords.get(home);
  if (password === undefined) {
    password = readFileSync(join(home, 'initial-admin-password'), 'utf8').trim();
    knownPasswords.set(home, password);
  }
  return password;
}

// ---- worker subprocesses ----------------------------------------------------------------

export interface WorkerProcess {
  child: ChildProcess;
  name: string;
  stderr(): string;
  stop(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface SpawnWorkerOptions {
  url: string;
  caFile: string;
  serverId: string;
  token: string;
  name: string;
  cores?: number;
  memoryMb?: number;
  workDir: string;
  claimWaitS?: number;
  /** More flags, after the usual ones. */
  args?: string[];
  /** In a process group of its own, so that the test can signal the whole group. */
  detached?: boolean;
  /** Give the token in a 0600 file (--token-file) instead of CPC_WORKER_TOKEN, as isolation none asks. */
  tokenFile?: boolean;
}

/** A worker token in a file of its own, mode 0600, in a folder removed at cleanup. */
function writeTokenFile(token: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'cpc-token-'));
  tempDirs.push(dir);
  const path = join(dir, 'token');
  writeFileSync(path, token, { mode: 0o600 });
  return path;
}

/** `cpc-worker` as a real process, with its token in CPC_WORKER_TOKEN (or a file, see tokenFile). */
export function spawnWorker(o: SpawnWorkerOptions): WorkerProcess {
  const args = [
    '--import',
    'tsx',
    WORKER_BIN,
    '--server',
    o.url,
    '--ca',
    o.caFile,
    '--server-id',
    o.serverId,
    '--cores',
    String(o.cores ?? 2),
    '--memory',
    String(o.memoryMb ?? 1024),
    '--work-dir',
    o.workDir,
    '--name',
    o.name,
    '--claim-wait',
    String(o.claimWaitS ?? 5),
    ...(o.tokenFile ? ['--token-file', writeTokenFile(o.token)] : []),
    ...(o.args ?? []),
  ];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    detached: o.detached ?? false,
    env: o.tokenFile ? process.env : { ...process.env, CPC_WORKER_TOKEN: o.token },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  processes.add(child);
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      processes.delete(child);
      resolve({ code, signal });
    }),
  );
  return {
    child,
    name: o.name,
    stderr: () => err,
    stop: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exit;
    },
  };
}

// ---- journal ----------------------------------------------------------------------------------

export function journalDir(home: string): string {
  return join(home, 'state', 'journal');
}

/** Journal segment files of a home, oldest first. */
export function journalFiles(home: string): string[] {
  const dir = journalDir(home);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => /^journal-\d{6,}\.log$/.test(n))
    .sort()
    .map((n) => join(dir, n));
}

/**
 * The records of every journal segment of a home, read frame by frame
 * (u32le length, u32le CRC-32, JSON payload); stops at the first incomplete frame.
 */
export function readJournalRecords(home: string): Record<string, unknown>[] {
  const records: Record<string, unknown>[] = [];
  for (const file of journalFiles(home)) {
    const buf = readFileSync(file);
    let off = 0;
    while (off + 8 <= buf.length) {
      const len = buf.readUInt32LE(off);
      if (len === 0 || off + 8 + len > buf.length) break;
      try {
        records.push(JSON.parse(buf.subarray(off + 8, off + 8 + len).toString('utf8')) as Record<string, unknown>);
      } catch {
        break;
      }
      off += 8 + len;
    }
  }
  return records;
}
