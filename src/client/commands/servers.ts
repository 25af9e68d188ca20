/**
 * Servers: trusting one (add-server), choosing one (use-server), logging in
 * and out, and asking who it is and who we are (server-info).
 */
import { X509Certificate } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { request } from '../../common/undici.js';
import { ApiError } from '../api/client.js';
import { patchServer, setServer, useServer, type ServerEntry } from '../config.js';
import { CliError, EXIT_USAGE, duration, fail, usage } from '../output.js';
import type { CommandSpec, Context } from './context.js';
import { port } from './parsers.js';
import { askHidden, confirm, readAll } from './prompt.js';

export const DEFAULT_UNSECURE_PORT = 14807;
export const DEFAULT_SECURE_PORT = 13807;
export const DEFAULT_USER = 'cpc-admin';
const CA_TIMEOUT_MS = 10_000;

/** What a server's unsecure port says about itself before any trust exists. */
export interface CaReply {
  serverId: string;
  name: string;
  caPem: string;
  caFingerprint: string;
  securePort: number;
}

/** Fingerprints are compared as bare hex, so `AB:CD…`, `abcd…` and `sha256:…` all match. */
export function normalizeFingerprint(fp: string): string {
  return fp.trim().replace(/^sha-?256[:=]?/i, '').replace(/[^0-9a-f]/gi, '').toLowerCase();
}

/** Computed here, never taken from the server's word: the fingerprint is what the user checks. */
export function caFingerprintOf(caPem: string, where: string): string {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(caPem);
  } catch {
    throw new ApiError('BAD_RESPONSE', `${where} is not a PEM certificate`);
  }
  if (!cert.ca) throw new ApiError('BAD_RESPONSE', `${where} is not a CA certificate`);
  return cert.fingerprint256;
}

export function hostPort(host: string, p: number): string {
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${h}:${p}`;
}

export async function fetchCa(host: string, unsecurePort: number): Promise<CaReply> {
  const url = `http://${hostPort(host, unsecurePort)}/ca`;
  let raw: string;
  let status: number;
  try {
    const res = await request(url, {
      method: 'GET',
      headers: { accept: 'application/json' },
      headersTimeout: CA_TIMEOUT_MS,
      bodyTimeout: CA_TIMEOUT_MS,
    });
    status = res.statusCode;
    raw = await res.body.text();
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') {
      throw new ApiError('TIMEOUT', `${url} did not answer in time`);
    }
    throw new ApiError('UNREACHABLE', `cannot reach ${url} (${e.code ?? e.message ?? String(err)})`);
  }
  if (status !== 200) throw new ApiError('BAD_RESPONSE', `${url} answered HTTP ${status}; is this a cpc server's unsecure port?`, status);
  let body: Partial<CaReply>;
  try {
    body = JSON.parse(raw) as Partial<CaReply>;
  } catch {
    throw new ApiError('BAD_RESPONSE', `${url} answered something that is not JSON; is this a cpc server's unsecure port?`);
  }
  if (
    typeof body.serverId !== 'string' ||
    typeof body.caPem !== 'string' ||
    typeof body.securePort !== 'number' ||
    !Number.isInteger(body.securePort) ||
    body.securePort < 1 ||
    body.securePort > 65535
  ) {
    throw new ApiError('BAD_RESPONSE', `${url} did not answer with a server id, CA certificate and secure port`);
  }
  return {
    serverId: body.serverId,
    name: typeof body.name === 'string' ? body.name : '',
    caPem: body.caPem,
    caFingerprint: typeof body.caFingerprint === 'string' ? body.caFingerprint : '',
    securePort: body.securePort,
  };
}

interface Candidate {
  url: string;
  serverId: string;
  serverName: string;
  caPem: string;
  caFingerprint: string;
}

async function candidateFromUnsecurePort(host: string, unsecurePort: number): Promise<Candidate> {
  const ca = await fetchCa(host, unsecurePort);
  const fp = caFingerprintOf(ca.caPem, `the CA certificate from ${hostPort(host, unsecurePort)}`);
  if (ca.caFingerprint && normalizeFingerprint(ca.caFingerprint) !== normalizeFingerprint(fp)) {
    // The stated fingerprint is not that of the certificate sent with it: broken or tampered.
    throw new ApiError('BAD_RESPONSE', `the server states fingerprint ${ca.caFingerprint} but its CA certificate has ${fp}`);
  }
  return {
    url: `https://${hostPort(host, ca.securePort)}`,
    serverId: ca.serverId.toLowerCase(),
    serverName: ca.name,
    caPem: ca.caPem,
    caFingerprint: fp,
  };
}

async function candidateFromCaFile(ctx: Context, host: string, file: string, securePort: number): Promise<Candidate> {
  let caPem: string;
  try {
    caPem = await fsp.readFile(file, 'utf8');
  } catch (err) {
    return fail(`cannot read CA file ${file}: ${(err as Error).message}`);
  }
  const fp = caFingerprintOf(caPem, file);
  const url = `https://${hostPort(host, securePort)}`;
  // The chain is checked against the file's CA here; the id in the
  // certificate is checked by the verification that follows.
  const info = await ctx.clientFor({ url, caPem }).info();
  return { url, serverId: info.serverId.toLowerCase(), serverName: info.name, caPem, caFingerprint: fp };
}

async function addServer(ctx: Context, args: (string | string[] | undefined)[], opts: Record<string, unknown>): Promise<void> {
  const host = String(args[0]);
  const unsecurePort = args[1] === undefined ? DEFAULT_UNSECURE_PORT : portArgument(String(args[1]));
  const caFile = opts.ca as string | undefined;
  const expected = opts.fingerprint as string | undefined;
  const name = (opts.name as string | undefined) ?? host;
  if (opts.securePort !== undefined && !caFile) usage('--secure-port only goes with --ca; otherwise the server tells its secure port');
  if (expected !== undefined && normalizeFingerprint(expected).length !== 64) {
    usage(`--fingerprint must be a SHA-256 fingerprint (64 hex digits), got '${expected}'`);
  }

  const cand = caFile
    ? await candidateFromCaFile(ctx, host, caFile, (opts.securePort as number | undefined) ?? DEFAULT_SECURE_PORT)
    : await candidateFromUnsecurePort(host, unsecurePort);

  if (expected !== undefined) {
    if (normalizeFingerprint(expected) !== normalizeFingerprint(cand.caFingerprint)) {
      fail(`fingerprint mismatch: the server's CA has ${cand.caFingerprint}, expected ${expected}; nothing saved`, 1, 'FINGERPRINT_MISMATCH');
    }
  } else if (!caFile && opts.yes !== true) {
    if (!ctx.interactive) {
      throw new CliError(
        `cannot ask to confirm the fingerprint ${cand.caFingerprint} without a terminal; pass --fingerprint FP or --yes`,
        EXIT_USAGE,
      );
    }
    ctx.out.note(`Server ${cand.serverName ? `'${cand.serverName}' ` : ''}${cand.serverId} at ${host}`);
    ctx.out.note(`CA fingerprint (SHA-256): ${cand.caFingerprint}`);
    ctx.out.note('Compare it with the CA fingerprint the server printed when it started.');
    if (!(await confirm(ctx.io, 'Trust this server?'))) fail('not trusted; nothing saved');
  }

  // Talk to the secure port exactly as every later command will: pinned CA and server id.
  const info = await ctx.clientFor({ url: cand.url, caPem: cand.caPem, serverId: cand.serverId }).info();
  if (info.serverId.toLowerCase() !== cand.serverId) {
    fail(`the secure port answers as server ${info.serverId}, not ${cand.serverId}; nothing saved`, 1, 'WRONG_SERVER');
  }

  await ctx.update((config) => {
    const old = config.servers[name];
    // Re-adding the same server (new address, renewed trust) keeps the login and the current project.
    const kept: Partial<ServerEntry> = old && old.serverId === cand.serverId ? { user: old.user, token: old.token, project: old.project } : {};
    setServer(config, name, { url: cand.url, serverId: cand.serverId, caPem: cand.caPem, caFingerprint: cand.caFingerprint, ...kept });
  });

  const serverName = info.name || cand.serverName;
  ctx.out.show(
    { name, serverName, serverId: cand.serverId, url: cand.url, caFingerprint: cand.caFingerprint, version: info.version, current: true },
    () => {
      ctx.out.line(`added server '${name}'${serverName && serverName !== name ? ` (${serverName})` : ''}, now current`);
      ctx.out.fields([
        ['id', cand.serverId],
        ['url', cand.url],
        ['fingerprint', cand.caFingerprint],
      ]);
      ctx.out.line("next: cpcc login");
    },
  );
}

async function listServers(ctx: Context): Promise<void> {
  const config = await ctx.config();
  const rows = Object.entries(config.servers).map(([name, e]) => ({
    name,
    current: name === config.current,
    url: e.url,
    serverId: e.serverId,
    caFingerprint: e.caFingerprint,
    user: e.user ?? null,
    loggedIn: e.token !== undefined,
    project: e.project ?? null,
  }));
  ctx.out.list({ current: config.current ?? null, servers: rows }, rows, [
    { header: '', value: (r) => (r.current ? '*' : '') },
    { header: 'name', value: (r) => r.name },
    { header: 'url', value: (r) => r.url },
    { header: 'id', value: (r) => r.serverId },
    { header: 'user', value: (r) => (r.loggedIn ? r.user : ctx.out.c.dim('(logged out)')) },
    { header: 'project', value: (r) => r.project },
  ], "no servers; run 'cpcc add-server HOST'");
}

async function useServerCommand(ctx: Context, args: (string | string[] | undefined)[]): Promise<void> {
  const name = args[0] as string | undefined;
  if (name === undefined) return listServers(ctx);
  await ctx.update((config) => useServer(config, name));
  const entry = (await ctx.config()).servers[name]!;
  ctx.out.show({ current: name, url: entry.url, serverId: entry.serverId }, () => ctx.out.line(`using server '${name}' (${entry.url})`));
}

async function login(ctx: Context, args: (string | string[] | undefined)[], opts: Record<string, unknown>): Promise<void> {
  const user = (args[0] as string | undefined) ?? DEFAULT_USER;
  const { name, entry } = await ctx.server();
  let password: string;
  if (opts.passwordStdin === true) {
    // One trailing newline is the end of the line `echo` or a file gives, not part of the password.
    password = (await readAll(ctx.io.stdin)).replace(/\r?\n$/, '');
  } else if (ctx.interactive) {
    password = await askHidden(ctx.io, `Password for ${user} on ${name}: `);
  } else {
    usage('no terminal to ask for the password; pipe it in with --password-stdin');
  }
  const reply = await ctx.clientFor(entry).login(user, password);
  await ctx.update((config) => {
    patchServer(config, name, { user: reply.user, token: reply.token });
  });
  ctx.out.show({ server: name, user: reply.user, superuser: reply.superuser, expiresAt: reply.expiresAt }, () =>
    ctx.out.line(`logged in to '${name}' as ${reply.user}${reply.superuser ? ' (super user)' : ''}`),
  );
}

async function logout(ctx: Context): Promise<void> {
  const { name, entry } = await ctx.server();
  let serverError: ApiError | undefined;
  if (entry.token) {
    try {
      await ctx.clientFor(entry, true).logout();
    } catch (err) {
      // A token the server no longer knows is as logged out as it gets.
      if (!(err instanceof ApiError)) throw err;
      if (err.code !== 'UNAUTHENTICATED') serverError = err;
    }
  }
  await ctx.update((config) => {
    patchServer(config, name, { token: undefined });
  });
  if (serverError) {
    fail(`forgot the token here, but the server was not told: ${serverError.message}`, 1, serverError.code);
  }
  ctx.out.show({ server: name, loggedOut: true }, () => ctx.out.line(`logged out of '${name}'`));
}

async function serverInfo(ctx: Context): Promise<void> {
  const { name, entry } = await ctx.server();
  const api = ctx.clientFor(entry, true);
  const info = await api.info();
  let who: { user: string; superuser: boolean } | null = null;
  let sessionExpired = false;
  if (entry.token) {
    try {
      who = await api.whoami();
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'UNAUTHENTICATED')) throw err;
      sessionExpired = true;
    }
  }
  const now = Date.now();
  ctx.out.show({ server: name, url: entry.url, ...info, whoami: who, project: entry.project ?? null }, () => {
    ctx.out.fields([
      ['server', `${name}${info.name && info.name !== name ? ` (${info.name})` : ''}`],
      ['url', entry.url],
      ['id', info.serverId],
      ['version', info.version],
      ['fingerprint', info.caFingerprint],
      ['heartbeat', `${info.heartbeatIntervalS}s`],
      ['clock', clockSkew(ctx, info.time - now)],
      [
        'user',
        who
          ? `${who.user}${who.superuser ? ' (super user)' : ''}`
          : ctx.out.c.dim(sessionExpired ? "session expired; run 'cpcc login'" : "not logged in; run 'cpcc login'"),
      ],
      ['project', entry.project ?? ctx.out.c.dim('(none)')],
    ]);
  });
}

// Logs and ages are shown in the server's time; a skewed clock makes them look wrong.
function clockSkew(ctx: Context, skewMs: number): string {
  if (Math.abs(skewMs) < 5000) return 'in step';
  return ctx.out.c.yellow(`server clock is ${duration(Math.abs(skewMs))} ${skewMs > 0 ? 'ahead' : 'behind'}`);
}

function portArgument(value: string): number {
  try {
    return port(value);
  } catch (err) {
    return usage(`PORT ${(err as Error).message}, got '${value}'`);
  }
}

export const serverCommands: CommandSpec[] = [
  {
    name: 'add-server',
    args: ['<host>', '[port]'],
    summary: "trust a server (by its CA fingerprint) and make it current",
    help: `PORT is the server's unsecure port (default ${DEFAULT_UNSECURE_PORT}), where it hands out its CA certificate.`,
    options: [
      { flags: '--name <name>', description: 'what to call it here (default: HOST)' },
      { flags: '-y, --yes', description: 'trust the fingerprint without asking' },
      { flags: '--fingerprint <fp>', description: 'trust only if the CA has this SHA-256 fingerprint' },
      { flags: '--ca <file>', description: "use this CA certificate instead of asking the server's unsecure port" },
      { flags: '--secure-port <port>', description: `the secure port, with --ca (default ${DEFAULT_SECURE_PORT})`, parse: port },
    ],
    run: addServer,
  },
  {
    name: 'use-server',
    args: ['[name]'],
    summary: 'make a configured server current; without NAME, list them',
    run: useServerCommand,
  },
  {
    name: 'login',
    args: ['[user]'],
    summary: `log in (default user ${DEFAULT_USER}); the token is kept in the config folder`,
    options: [{ flags: '--password-stdin', description: 'read the password from stdin instead of asking' }],
    run: login,
  },
  { name: 'logout', summary: 'end the session on the server and forget the token', run: logout },
  { name: 'server-info', summary: 'show the server and who you are on it', run: serverInfo },
];
