/**
 * Pieces shared by the federation tests: servers in temp homes that peers can
 * reach on 127.0.0.1, a logged-in cpcc per server (the built binary, read
 * through --json), raw calls to the unsecure port, TLS clients that present a
 * given client certificate, and one cleanup for all of it.
 */
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { request } from 'undici';
import { ApiClient } from '../../src/client/api/client.js';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/start/server.js';
import { cpcc, freePort, ROOT, until as waitUntil, type CpccRun as Run } from './server.js';

const tempDirs: string[] = [];
const running = new Set<RunningServer>();
const clients: ApiClient[] = [];
const sockets = new Set<TLSSocket>();

export async function tempDir(prefix = 'cpc-peers-'): Promise<string> {
  const dir = await fsp.mkdtemp(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

export async function cleanup(): Promise<void> {
  for (const s of sockets) s.destroy();
  sockets.clear();
  await Promise.all(clients.splice(0).map((c) => c.destroy().catch(() => {})));
  await Promise.all([...running].map((s) => s.close().catch(() => {})));
  running.clear();
  await Promise.all(tempDirs.splice(0).map((d) => fsp.rm(d, { recursive: true, force: true })));
}

/** The shared `until`, with the deadline as a plain number of milliseconds. */
export function until<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 15_000): Promise<NonNullable<T>> {
  return waitUntil(what, fn, { timeoutMs });
}

export { freePort, ROOT };

// ---- servers ----------------------------------------------------------------------

export interface PeerServer {
  server: RunningServer;
  home: string;
  password: string;
  admin: ApiClient;
  id: string;
  /** A logged-in cpcc for this server: its own config folder, this server current. */
  cpcc(args: string[], opts?: { input?: string }): Promise<Run>;
  /** peers.json as it is on disk now. */
  peersFile(): PeersFile;
  /** Stops the server; `restart` starts it again on the same home. */
  stop(): Promise<void>;
  restart(opts?: Partial<ServerOptions>): Promise<void>;
}

export interface PeersFile {
  sent: { nonce: string; peerServerId: string; host: string; port: number }[];
  received: { serverId: string; nonce: string; caFingerprint: string }[];
  peers: { serverId: string; caFingerprint: string; priority: number; host: string; unsecurePort: number; securePort: number }[];
}

async function launch(home: string, name: string, opts: Partial<ServerOptions>): Promise<RunningServer> {
  const server = await startServer({
    securePort: 0,
    unsecurePort: 0,
    host: '127.0.0.1',
    publicHost: '127.0.0.1',
    name,
    log: () => {},
    ...opts,
    home,
  });
  running.add(server);
  return server;
}

export async function startPeer(name: string, opts: Partial<ServerOptions> = {}): Promise<PeerServer> {
  const home = await tempDir(`cpc-${name}-`);
  const cpccHome = await tempDir(`cpcc-${name}-`);
  let server = await launch(home, name, opts);
  const password = server.adminPassword!;
  const login = async (s: RunningServer): Promise<ApiClient> => {
    const c = new ApiClient({ url: s.url, caPem: s.caPem, serverId: s.serverId, timeoutMs: 20_000 });
    clients.push(c);
    c.token = (await c.login('cpc-admin', password)).token;
    return c;
  };
  const peer: PeerServer = {
    server,
    home,
    password,
    admin: await login(server),
    id: server.serverId,
    cpcc: (args, o) => cpcc(cpccHome, args, o),
    peersFile: () => JSON.parse(readFileSync(join(home, 'peers.json'), 'utf8')) as PeersFile,
    stop: async () => {
      await server.close();
      running.delete(server);
    },
    restart: async (o = {}) => {
      server = await launch(home, name, { ...opts, ...o });
      peer.server = server;
      peer.admin = await login(server);
    },
  };
  ok(await peer.cpcc(['add-server', '127.0.0.1', String(server.unsecurePort), '--name', name, '--fingerprint', server.caFingerprint, '--json']));
  ok(await peer.cpcc(['login', '--password-stdin', '--json'], { input: `${password}\n` }));
  return peer;
}

/** `a` asks `b` to connect (pinning b's CA) and `b` trusts it; resolves once both sides trust each other. */
export async function connectPair(a: PeerServer, b: PeerServer): Promise<void> {
  await a.admin.connectServer('127.0.0.1', b.server.unsecurePort, b.server.caFingerprint);
  await b.admin.trustPeer(a.id);
  await until(`${a.id} to trust ${b.id}`, () => a.server.ctx.trust.isTrusted(b.id) && b.server.ctx.trust.isTrusted(a.id));
}

// ---- cpcc --------------------------------------------------------------------------

export { cpcc, type CpccRun as Run } from './server.js';

export function ok<T = any>(run: Run): T {
  assert.equal(run.code, 0, `expected exit 0, got ${run.code}; stderr: ${run.stderr}`);
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    return assert.fail(`stdout is not JSON: ${run.stdout}`);
  }
}

// ---- the unsecure port ---------------------------------------------------------------

export interface RawReply {
  status: number;
  body: any;
}

/** POSTs `body` (JSON unless a string is given) to a path of a server's unsecure port. */
export async function postUnsecure(port: number, path: string, body: unknown): Promise<RawReply> {
  const res = await request(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.body.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // left as text
  }
  return { status: res.statusCode, body: parsed };
}

export function assertRefused(reply: RawReply, status: number, code: string, message?: RegExp): void {
  assert.equal(reply.status, status, `expected HTTP ${status} ${code}, got ${reply.status} ${JSON.stringify(reply.body)}`);
  assert.equal(reply.body?.error?.code, code, JSON.stringify(reply.body));
  if (message) assert.match(String(reply.body.error.message), message);
}

// ---- TLS clients with client certificates ----------------------------------------------

export interface TlsOutcome {
  /** The HTTP status, or null if the server closed the connection before answering. */
  status: number | null;
  error?: string;
}

export interface ClientCert {
  certPem?: string;
  keyPem?: string;
}

/** GET /api/v1/info over a fresh TLS connection presenting `client` (or no certificate). */
export function tlsGet(port: number, caPem: string, client: ClientCert = {}): Promise<TlsOutcome> {
  return new Promise((resolve) => {
    let data = '';
    let error: string | undefined;
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: caPem,
      cert: client.certPem,
      key: client.keyPem,
      checkServerIdentity: () => undefined,
    });
    sockets.add(socket);
    const timer = setTimeout(() => socket.destroy(new Error('no answer in time')), 5000);
    socket.setEncoding('utf8');
    socket.on('secureConnect', () => socket.write('GET /api/v1/info HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n\r\n'));
    socket.on('data', (d: string) => (data += d));
    socket.on('error', (e) => (error = (e as NodeJS.ErrnoException).code ?? e.message));
    socket.on('close', () => {
      clearTimeout(timer);
      sockets.delete(socket);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      resolve({ status: m ? Number(m[1]) : null, error });
    });
  });
}

/** A keep-alive TLS connection that has had one answer; `closed` resolves when the server cuts it. */
export async function tlsHold(port: number, caPem: string, client: ClientCert): Promise<{ status: number; closed: Promise<void> }> {
  const socket = connect({ host: '127.0.0.1', port, ca: caPem, cert: client.certPem, key: client.keyPem, checkServerIdentity: () => undefined });
  sockets.add(socket);
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  let data = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (data += d));
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  socket.write('GET /api/v1/info HTTP/1.1\r\nHost: peer\r\nConnection: keep-alive\r\n\r\n');
  const status = await until('an answer on the held connection', () => {
    const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
    return m && data.includes('\r\n\r\n') ? Number(m[1]) : null;
  }, 5000);
  return { status, closed };
}

export function identityFiles(home: string): { certPem: string; keyPem: string; caPem: string } {
  const dir = join(home, 'identity');
  return {
    certPem: readFileSync(join(dir, 'server.pem'), 'utf8'),
    keyPem: readFileSync(join(dir, 'server-key.pem'), 'utf8'),
    caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
  };
}
