/**
 * The peers' servers, each started by the bench in a temp folder on a free
 * port (never the system's service) and stopped by its PID: redis-server and
 * PostgreSQL, installed from Debian's packages when missing. Also how their
 * CPU time and memory are read from /proc.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export function run(file: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; uid?: number; gid?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid } : {}) },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout, stderr: stderr || (err && code !== 0 ? err.message : '') });
      },
    );
  });
}

export function which(cmd: string, extra: string[] = []): string | null {
  for (const d of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', ...extra]) {
    if (d && existsSync(join(d, cmd))) return join(d, cmd);
  }
  return null;
}

/** Installs Debian packages (as root); null when done, otherwise why not. */
export async function aptInstall(packages: string[]): Promise<string | null> {
  if (process.getuid?.() !== 0) return `${packages.join(', ')} not installed, and installing needs root (uid ${process.getuid?.()})`;
  if (!which('apt-get')) return `${packages.join(', ')} not installed, and there is no apt-get`;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...packages], { env, timeoutMs: 600_000 });
  let r = await install();
  if (r.code !== 0) {
    await run('apt-get', ['update', '-q'], { env, timeoutMs: 600_000 });
    r = await install();
  }
  return r.code === 0 ? null : `apt-get install ${packages.join(' ')} failed: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`;
}

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

async function until(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

// ---- /proc ---------------------------------------------------------------------

const TICK_US = 1_000_000 / 100; // USER_HZ is 100 on Linux

/** utime + stime of a process (all its threads), and cutime + cstime of the children it has reaped, in µs. */
export function procCpuUs(pid: number): { own: number; reaped: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the command name: field 3 is f[0]; utime is field 14, stime 15, cutime 16, cstime 17.
    return { own: (Number(f[11]) + Number(f[12])) * TICK_US, reaped: (Number(f[13]) + Number(f[14])) * TICK_US };
  } catch {
    return { own: 0, reaped: 0 };
  }
}

export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * CPU time of a server: the process, its live children (PostgreSQL's
 * backends) and the children it has reaped since it started, in µs.
 */
export function serverCpuUs(pid: number, withChildren: boolean): number {
  const self = procCpuUs(pid);
  let total = self.own + (withChildren ? self.reaped : 0);
  if (withChildren) for (const c of childrenOf(pid)) total += procCpuUs(c).own;
  return total;
}

/** Resident memory of a process, in bytes. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

// ---- redis-server ----------------------------------------------------------------

export interface PeerServer {
  /** The process whose CPU time and memory are the server's. */
  pid: number;
  port: number;
  dir: string;
  /** The settings it was started with, as written into the results. */
  settings: Record<string, string>;
  stop(): Promise<void>;
}

export type Started<T> = { server: T; skip?: undefined } | { server?: undefined; skip: string };

/** redis-server with the append-only file on, fsynced `always` or `everysec`, in a temp folder. */
export async function startRedis(appendfsync: 'always' | 'everysec'): Promise<Started<PeerServer>> {
  if (!which('redis-server')) {
    const why = await aptInstall(['redis-server']);
    if (why) return { skip: why };
  }
  const bin = which('redis-server');
  if (!bin) return { skip: 'redis-server is not on the PATH after installing it' };
  const dir = mkdtempSync(join(tmpdir(), 'cpc-bench-redis-'));
  const port = await freePort();
  const settings = {
    appendonly: 'yes',
    appendfsync,
    save: '""',
    'maxmemory-policy': 'noeviction',
    bind: '127.0.0.1',
  };
  const child = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', appendfsync, '--save', '', '--maxmemory-policy', 'noeviction', '--daemonize', 'no', '--logfile', join(dir, 'redis.log')],
    { stdio: 'ignore' },
  );
  const stop = async () => {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until('redis-server to answer', async () => {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
      return (await run(which('redis-cli') ?? 'redis-cli', ['-p', String(port), 'ping'])).stdout.includes('PONG');
    });
  } catch (err) {
    const log = existsSync(join(dir, 'redis.log')) ? readFileSync(join(dir, 'redis.log'), 'utf8').split('\n').slice(-5).join('\n') : '';
    await stop();
    return { skip: `redis-server did not start: ${(err as Error).message}\n${log}` };
  }
  return { server: { pid: child.pid!, port, dir, settings, stop } };
}

// ---- PostgreSQL --------------------------------------------------------------------

function postgresBin(): string | null {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(base, versions[0], 'bin') : null;
}

/**
 * A PostgreSQL cluster of its own (initdb in a temp folder), durable commits
 * (`synchronous_commit=on`, `fsync=on`), listening on 127.0.0.1 and a free
 * port. PostgreSQL refuses to run as root: under root it runs as the
 * `postgres` user the package creates.
 */
export interface PostgresServer extends PeerServer {
  url: string;
  version: string;
  /** Runs one statement through psql and returns its unaligned output. */
  query(sql: string): Promise<string>;
}

export async function startPostgres(): Promise<Started<PostgresServer>> {
  if (!postgresBin()) {
    const why = await aptInstall(['postgresql']);
    if (why) return { skip: why };
  }
  const bin = postgresBin();
  if (!bin) return { skip: 'no /usr/lib/postgresql/*/bin/postgres after installing postgresql' };
  let owner: { uid: number; gid: number } | undefined;
  if (process.getuid?.() === 0) {
    const r = await run('id', ['-u', 'postgres']);
    const g = await run('id', ['-g', 'postgres']);
    if (r.code !== 0) return { skip: 'running as root and there is no postgres user to run PostgreSQL as' };
    owner = { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
  }
  const dir = mkdtempSync(join(tmpdir(), 'cpc-bench-pg-'));
  const data = join(dir, 'data');
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const asOwner = owner ?? {};
  const user = owner ? 'postgres' : userInfo().username;
  const init = await run(join(bin, 'initdb'), ['-D', data, '-U', user, '--auth=trust', '-E', 'UTF8', '--no-instructions'], { ...asOwner, timeoutMs: 120_000 });
  if (init.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return { skip: `initdb failed: ${init.stderr.trim().split('\n').slice(-3).join(' ')}` };
  }
  const port = await freePort();
  const settings: Record<string, string> = {
    synchronous_commit: 'on',
    fsync: 'on',
    wal_sync_method: 'fdatasync (the default)',
    max_connections: '200',
    shared_buffers: '256MB',
    listen_addresses: '127.0.0.1',
  };
  const args = ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'synchronous_commit=on', '-c', 'fsync=on', '-c', 'max_connections=200', '-c', 'shared_buffers=256MB'];
  const child = spawn(join(bin, 'postgres'), args, { stdio: ['ignore', 'ignore', 'pipe'], ...asOwner });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  // SIGINT is PostgreSQL's fast shutdown: sessions are ended, the cluster is closed cleanly.
  const stop = async () => {
    await stopChild(child, 'SIGINT');
    rmSync(dir, { recursive: true, force: true });
  };
  const psql = which('psql', [bin]) ?? join(bin, 'psql');
  try {
    await until('PostgreSQL to accept connections', async () => {
      if (child.exitCode !== null) throw new Error(`postgres exited with ${child.exitCode}`);
      return (await run(psql, ['-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', 'postgres', '-Atc', 'select 1'])).stdout.trim() === '1';
    });
    const c = await run(psql, ['-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', 'postgres', '-c', 'create database bench']);
    if (c.code !== 0) throw new Error(c.stderr);
  } catch (err) {
    await stop();
    return { skip: `PostgreSQL did not start: ${(err as Error).message}\n${log.split('\n').slice(-5).join('\n')}` };
  }
  const version = bin.split('/').at(-2) ?? '?';
  const query = async (sql: string) => {
    const r = await run(psql, ['-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', 'bench', '-Atc', sql]);
    if (r.code !== 0) throw new Error(`psql: ${r.stderr.trim()}`);
    return r.stdout.trim();
  };
  return { server: { pid: child.pid!, port, dir, settings, version, url: `postgres://${user}@127.0.0.1:${port}/bench`, query, stop } };
}
