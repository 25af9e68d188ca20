import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../../src/client/api/client.js';
import type { ResultRequest } from '../../src/core/wire.js';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/start/server.js';
import { adminPasswordOf, freePort, rememberAdminPassword, until } from './server.js';

/** A server for federation tests: in this process, or a subprocess that can be killed with SIGKILL. */
export interface Site {
  name: string;
  home: string;
  url: string;
  serverId: string;
  caPem: string;
  unsecurePort: number;
  securePort: number;
  admin: ApiClient;
  workerToken: string;
  server?: RunningServer;
  child?: ChildProcess;
}

export { freePort, until };

async function adminOf(url: string, caPem: string, serverId: string, password: string): Promise<ApiClient> {
  const admin = new ApiClient({ url, caPem, serverId });
  admin.token = (await admin.login('cpc-admin', password)).token;
  return admin;
}

export async function startSite(name: string, opts: Partial<ServerOptions> = {}): Promise<Site> {
  const home = mkdtempSync(join(tmpdir(), `cpc-fed-${name}-`));
  const server = await startServer({
    home,
    securePort: 0,
    unsecurePort: 0,
    host: '127.0.0.1',
    publicHost: '127.0.0.1',
    name,
    heartbeatIntervalS: 0.5,
    leaseS: 2,
    log: () => {},
    ...opts,
  });
  rememberAdminPassword(home, server.adminPassword!);
  const admin = await adminOf(server.url, server.caPem, server.serverId, server.adminPassword!);
  return {
    name,
    home,
    url: server.url,
    serverId: server.serverId,
    caPem: server.caPem,
    unsecurePort: server.unsecurePort,
    securePort: server.securePort,
    admin,
    workerToken: await server.createWorkerToken(`${name}-worker`),
    server,
  };
}

/** A server as its own process on fixed ports (so it comes back at the same address after SIGKILL). */
export async function spawnSite(name: string, home?: string, ports?: { securePort: number; unsecurePort: number }): Promise<Site> {
  home ??= mkdtempSync(join(tmpdir(), `cpc-fed-${name}-`));
  const securePort = ports?.securePort ?? (await freePort());
  const unsecurePort = ports?.unsecurePort ?? (await freePort());
  const runtime = join(home, 'server.json');
  rmSync(runtime, { force: true });
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'bin/cpc-server.ts', '--home', home, 'start', '--host', '127.0.0.1', '--public-host', '127.0.0.1', '--port', String(securePort), '--unsecure-port', String(unsecurePort), '--heartbeat-interval', '0.5'],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CPC_NAME: name } },
  );
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  await until(`${name} to start`, () => existsSync(runtime) || !running(child), { timeoutMs: 45_000 });
  if (!running(child)) throw new Error(`${name} exited: ${stderr}`);
  const info = JSON.parse(readFileSync(runtime, 'utf8')) as { url: string; serverId: string };
  const caPem = readFileSync(join(home, 'identity', 'ca.pem'), 'utf8');
  const password = adminPasswordOf(home);
  const admin = await adminOf(`https://127.0.0.1:${securePort}`, caPem, info.serverId, password);
  return {
    name,
    home,
    url: `https://127.0.0.1:${securePort}`,
    serverId: info.serverId,
    caPem,
    unsecurePort,
    securePort,
    admin,
    workerToken: (await admin.createWorkerToken(`${name}-worker-${Date.now()}`)).token,
    child,
  };
}

const running = (child: ChildProcess | undefined): child is ChildProcess =>
  child !== undefined && child.exitCode === null && child.signalCode === null;

export async function killSite(site: Site): Promise<void> {
  if (!running(site.child)) return;
  const exited = new Promise((r) => site.child!.once('exit', r));
  site.child.kill('SIGKILL');
  await exited;
  await site.admin.destroy();
}

export async function stopSite(site: Site, removeHome = true): Promise<void> {
  await site.admin.destroy().catch(() => {});
  if (site.server) await site.server.close();
  if (running(site.child)) {
    const exited = new Promise((r) => site.child!.once('exit', r));
    site.child.kill('SIGTERM');
    await exited;
  }
  if (removeHome) rmSync(site.home, { recursive: true, force: true });
}

interface PeersView {
  connected: { serverId: string; link: string; priority: number }[];
}

/** `from` asks `to` for a connection, `to` trusts it; resolves once both sides list each other. */
export async function connect(from: Site, to: Site): Promise<void> {
  const caFingerprint = new X509Certificate(to.caPem).fingerprint256;
  await from.admin.call('POST', '/peers/connect', { host: '127.0.0.1', port: to.unsecurePort, caFingerprint });
  await to.admin.call('POST', `/peers/${from.serverId}/trust`, {});
  await until(`${from.name} to trust ${to.name}`, async () => {
    const v = await from.admin.call<PeersView>('GET', '/peers');
    return v.connected.some((p) => p.serverId === to.serverId);
  });
}

export async function linkUp(a: Site, b: Site): Promise<void> {
  await until(`the link ${a.name}–${b.name}`, async () => {
    const [va, vb] = await Promise.all([a.admin.call<PeersView>('GET', '/peers'), b.admin.call<PeersView>('GET', '/peers')]);
    return va.connected.some((p) => p.serverId === b.serverId && p.link === 'up') && vb.connected.some((p) => p.serverId === a.serverId && p.link === 'up');
  });
}

/** Two sites that trust each other, with their peer link up. */
export async function linkedSites(nameA: string, nameB: string): Promise<[Site, Site]> {
  const [a, b] = await Promise.all([startSite(nameA), startSite(nameB)]);
  await connect(a, b);
  await linkUp(a, b);
  return [a, b];
}

/** Simulated workers made so far: each gets a name of its own (a gone worker's name on its host is taken for it started again). */
let simulated = 0;

/** A worker driven by the test, through the real API of its own server. */
export class SimWorker {
  readonly client: ApiClient;
  id = '';

  constructor(site: Site, readonly name = `${site.name}-sim-${++simulated}`) {
    this.client = new ApiClient({ url: site.url, caPem: site.caPem, serverId: site.serverId, token: site.workerToken });
  }

  async register(cores = 1, memoryMb = 1000): Promise<this> {
    this.id = (await this.client.register({ name: this.name, host: 'test', cores, memoryMb })).workerId;
    return this;
  }

  claim(waitS = 5) {
    return this.client.claim(this.id, { waitS });
  }

  heartbeat(attempts: { jobId: string; attempt: number; started?: true }[]) {
    return this.client.heartbeat(this.id, { attempts });
  }

  result(jobId: string, attempt: number, exitCode = 0, stdout = ''): Promise<unknown> {
    const body: ResultRequest = {
      jobId,
      attempt,
      how: 'exited',
      exitCode,
      signal: null,
      durationMs: 1,
      stdout,
      stderr: '',
      stdoutBytes: Buffer.byteLength(stdout),
      stderrBytes: 0,
    };
    return this.client.result(this.id, body);
  }

  close(): Promise<void> {
    return this.client.destroy();
  }
}
