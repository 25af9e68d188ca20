/**
 * Real cpc-server and cpc-worker processes on the hosts of a fault network
 * (netns.ts): each server listens on its host's address, on the usual
 * ports, and the test talks to it across the bridge as a client would.
 */
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../../src/client/api/client.js';
import type { JobView } from '../../src/core/wire.js';
import { ROOT, until } from '../helpers/server.js';
import { Network } from './netns.js';

export const SECURE_PORT = 13807;
export const UNSECURE_PORT = 13808;
const SERVER_BIN = join(ROOT, 'dist', 'bin', 'cpc-server.js');
const WORKER_BIN = join(ROOT, 'dist', 'bin', 'cpc-worker.js');

export interface NsSite {
  name: string;
  host: string;
  address: string;
  /** The address other servers reach it by: its own, or its relay's (delay-relay.ts). */
  publicAddress: string;
  home: string;
  url: string;
  serverId: string;
  caPem: string;
  admin: ApiClient;
  child: ChildProcess;
  stderr(): string;
}

const running = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;

/**
 * A server on `host`; `heartbeatS` sets the workers' interval (the lease is
 * twice that); `publicHost` is the address it tells peers (by default its own).
 */
export async function startSite(net: Network, host: string, opts: { heartbeatS?: number; home?: string; publicHost?: string } = {}): Promise<NsSite> {
  const address = net.host(host).address;
  const publicAddress = opts.publicHost ?? address;
  const home = opts.home ?? mkdtempSync(join(tmpdir(), `cpc-fault-${host}-`));
  rmSync(join(home, 'server.json'), { force: true });
  const args = [SERVER_BIN, '--home', home, 'start', '--host', address, '--public-host', publicAddress, '--port', String(SECURE_PORT), '--unsecure-port', String(UNSECURE_PORT), '--heartbeat-interval', String(opts.heartbeatS ?? 1)];
  const child = net.spawn(host, process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CPC_NAME: host, CPC_SCRYPT_LOG_N: '14' } });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-8000)));
  // The runtime file may be seen while it is being written: wait until it reads whole.
  const runtime = (): { serverId: string } | null => {
    try {
      return JSON.parse(readFileSync(join(home, 'server.json'), 'utf8')) as { serverId: string };
    } catch {
      return null;
    }
  };
  await until(`${host}'s server to start`, () => runtime() !== null || !running(child), { timeoutMs: 60_000 });
  if (!running(child)) throw new Error(`${host}'s server exited: ${err}`);
  const { serverId } = runtime()!;
  const caPem = readFileSync(join(home, 'identity', 'ca.pem'), 'utf8');
  const url = `https://${address}:${SECURE_PORT}`;
  const admin = new ApiClient({ url, caPem, serverId });
  const passwordFile = join(home, 'initial-admin-password');
  const password = readFileSync(passwordFile, 'utf8').trim();
  admin.token = (await admin.login('cpc-admin', password)).token;
  return { name: host, host, address, publicAddress, home, url, serverId, caPem, admin, child, stderr: () => err };
}

/** `from` asks `to` for a connection and `to` trusts it; resolves once the link is up both ways. */
export async function connect(from: NsSite, to: NsSite, priority?: number): Promise<void> {
  const caFingerprint = new X509Certificate(to.caPem).fingerprint256;
  await from.admin.connectServer(to.publicAddress, UNSECURE_PORT, caFingerprint);
  await to.admin.trustPeer(from.serverId);
  if (priority !== undefined) await from.admin.setPeerPriority(to.serverId, priority);
  await linkUp(from, to, 60_000);
}

/** Both sides list each other with the link up. */
export async function linkUp(a: NsSite, b: NsSite, timeoutMs: number): Promise<void> {
  await until(
    `the link ${a.name}–${b.name}`,
    async () => {
      const [va, vb] = await Promise.all([a.admin.peers(), b.admin.peers()]);
      return va.connected.some((p) => p.serverId === b.serverId && p.link === 'up') && vb.connected.some((p) => p.serverId === a.serverId && p.link === 'up');
    },
    { timeoutMs },
  );
}

export interface NsRelay {
  child: ChildProcess;
  /** Connections the relay took, by port. */
  accepted: Map<number, number>;
}

/**
 * A delaying relay (delay-relay.ts) on `relayHost` in front of `targetAddress`'s
 * server ports: a server that names `relayHost`'s address as its public host
 * is reached by its peers across it.
 */
export async function startRelay(net: Network, relayHost: string, targetAddress: string, oneWayMs: number, jitterMs: number): Promise<NsRelay> {
  const script = join(ROOT, 'test', 'faults', 'delay-relay.ts');
  const args = ['--import', 'tsx', script, net.host(relayHost).address, targetAddress, String(oneWayMs), String(jitterMs), String(SECURE_PORT), String(UNSECURE_PORT)];
  const child = net.spawn(relayHost, process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const accepted = new Map<number, number>();
  let ready = false;
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
  let buffered = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buffered += d;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = JSON.parse(buffered.slice(0, nl)) as { ready?: true; accepted?: number };
      buffered = buffered.slice(nl + 1);
      if (line.ready) ready = true;
      if (line.accepted) accepted.set(line.accepted, (accepted.get(line.accepted) ?? 0) + 1);
    }
  });
  await until(`the relay on ${relayHost}`, () => ready || !running(child), { timeoutMs: 30_000 });
  if (!running(child)) throw new Error(`the relay on ${relayHost} exited: ${err}`);
  return { child, accepted };
}

export interface NsWorker {
  child: ChildProcess;
  workDir: string;
  stderr(): string;
}

/** A cpc-worker on `host` for `site` (isolation none: the fault tests watch the jobs' processes by their environment). */
export async function startWorker(net: Network, host: string, site: NsSite, name: string, cores = 2): Promise<NsWorker> {
  const { token } = await site.admin.createWorkerToken(`${name}-${Date.now()}`);
  const workDir = mkdtempSync(join(tmpdir(), `cpc-fault-w-${name}-`));
  const caFile = join(site.home, 'identity', 'ca.pem');
  const tokenFile = join(workDir, '..', `${name}-${Date.now()}.token`);
  writeFileSync(tokenFile, token, { mode: 0o600 });
  const args = [WORKER_BIN, '--token-file', tokenFile, '--server', site.url, '--ca', caFile, '--server-id', site.serverId, '--cores', String(cores), '--memory', '1024', '--work-dir', workDir, '--name', name, '--claim-wait', '5', '--isolation', 'none', '--shared-identity'];
  const child = net.spawn(host, process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-8000)));
  await until(`worker ${name} to register`, async () => (await site.admin.workers()).workers.some((w) => w.name === name) || !running(child), { timeoutMs: 60_000 });
  if (!running(child)) throw new Error(`worker ${name} exited: ${err}`);
  return { child, workDir, stderr: () => err };
}

/**
 * Watches the processes of jobs on this machine (all hosts share its pid
 * space) by the job id and attempt in their environment, every `everyMs`,
 * and remembers any moment when one job had processes of two attempts alive.
 */
export class AttemptWatch {
  readonly overlaps: string[] = [];
  readonly seen = new Map<string, Set<number>>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly jobIds: () => Set<string>, everyMs = 100) {
    this.timer = setInterval(() => this.scan(), everyMs);
  }

  scan(): void {
    const ids = this.jobIds();
    const alive = new Map<string, Set<number>>();
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      let env: string;
      try {
        env = readFileSync(`/proc/${pid}/environ`, 'latin1');
      } catch {
        continue;
      }
      const job = /(?:^|\0)CPC_JOB_ID=([^\0]+)/.exec(env)?.[1];
      const attempt = /(?:^|\0)CPC_ATTEMPT=(\d+)/.exec(env)?.[1];
      if (!job || !attempt || !ids.has(job)) continue;
      const set = alive.get(job) ?? new Set<number>();
      set.add(Number(attempt));
      alive.set(job, set);
    }
    for (const [job, attempts] of alive) {
      const all = this.seen.get(job) ?? new Set<number>();
      for (const a of attempts) all.add(a);
      this.seen.set(job, all);
      if (attempts.size > 1) this.overlaps.push(`${job}: attempts ${[...attempts].join(', ')} alive at once`);
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Each job's finished attempts: the ones the home server took a result for. */
export function reportedAttempts(job: JobView): number {
  return job.attempts.filter((a) => a.how === 'exited' || a.how === 'timeout' || a.how === 'output-failed' || a.how === 'start-failed').length;
}

/** A home server with project `p` and no worker, two servers (b1, b2) borrowing from it with a worker each, and a watch on the jobs' processes. */
export interface BorrowingFederation {
  net: Network;
  home: NsSite;
  borrowers: NsSite[];
  /** The home's jobs the watch looks for. */
  jobIds: Set<string>;
  watch: AttemptWatch;
  close(): Promise<void>;
}

export async function borrowingFederation(opts: { heartbeatS: number; cores: number }): Promise<BorrowingFederation> {
  const net = new Network();
  for (const h of ['home', 'b1', 'b2']) net.addHost(h);
  const [home, ...borrowers] = await Promise.all(['home', 'b1', 'b2'].map((h) => startSite(net, h, { heartbeatS: opts.heartbeatS })));
  for (const b of borrowers) {
    await connect(b, home!);
    await startWorker(net, b.host, b, `${b.host}-worker`, opts.cores);
  }
  await home!.admin.createProject('p');
  const jobIds = new Set<string>();
  const watch = new AttemptWatch(() => jobIds);
  return {
    net,
    home: home!,
    borrowers,
    jobIds,
    watch,
    close: async () => {
      watch.stop();
      await Promise.all([home!, ...borrowers].map((s) => s.admin.destroy()));
      await net.destroy();
    },
  };
}

/** The job once it has ended (done, failed or cancelled). */
export function jobEnded(admin: ApiClient, id: string, timeoutMs: number): Promise<JobView> {
  return until(
    `job ${id} to end`,
    async () => {
      const j = await admin.job(id);
      return j.state === 'done' || j.state === 'failed' || j.state === 'cancelled' ? j : null;
    },
    { timeoutMs },
  );
}
