import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, promises as fsp, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer as createNetServer, type Server as NetServer } from 'node:net';
import type { Writable } from 'node:stream';
import { delimiter, join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { CpcError } from '../../core/errors.js';
import { parseDurationS } from '../../core/units.js';
import type { ServerConfig, SettingSource } from './config.js';
import type { SetOutcome } from './live-settings.js';
import { alive, withHomeLock } from './home-lock.js';
import type { RunningServer } from './server.js';

/**
 * cpc-server's commands. Everything here returns an exit code; only the
 * entry point in bin/ exits the process.
 */

interface RuntimeInfo {
  pid: number;
  url: string;
  unsecureUrl: string;
  serverId: string;
}

const RUNTIME_FILE = 'server.json';

/**
 * The settings module (and zod with it), loaded before any command runs;
 * the server, accounts and worker modules are loaded where used. So
 * `cpc-server --help` reads none of them.
 */
let settings: typeof import('./config.js');

export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const program = new Command('cpc-server')
    .description('the cpc project server')
    .option('--home <dir>', 'server home folder (default $CPC_HOME or ~/.cpc)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `cpc-server: ${s.slice(7)}` : s) })
    .hook('preAction', async () => {
      settings = await import('./config.js');
    });

  const home = (): string => program.opts<{ home?: string }>().home ?? settings.defaultHome();

  program
    .command('start')
    .description('start the server (creating identity, CA and cpc-admin on first run)')
    .option('--name <name>', 'the name users and peers see (setting name)')
    .option('--host <addr>', 'address to listen on')
    .option('--public-host <name>', 'host name or IP address others use to reach this server')
    .option('--port <n>', 'secure port', int)
    .option('--unsecure-port <n>', 'unsecure port', int)
    .option('--heartbeat-interval <time>', 'worker heartbeat interval (90s, 2m; a bare number is seconds)', seconds)
    .option('--local-worker', 'also start one worker on this machine')
    .action(async (o: StartOptions) => {
      code = await start(home(), o);
    });

  program
    .command('setup')
    .description('create the identity, CA and cpc-admin without starting')
    .action(async () => {
      const { startServer } = await import('./server.js');
      const server = await startServer({ home: home(), securePort: 0, unsecurePort: 0, host: '127.0.0.1', logLevel: 'warn' });
      await server.close();
      process.stdout.write(`home: ${home()}\nserver id: ${server.serverId}\nCA SHA-256 fingerprint: ${server.caFingerprint}\n`);
      if (server.adminPassword) process.stdout.write(`cpc-admin password: ${server.adminPassword}\n`);
      else process.stdout.write('already set up\n');
    });

  program
    .command('bundle')
    .description('write one connection file for a worker (address, CA certificate, a new worker token): cpc-worker --bundle FILE')
    .option('-o, --output <file>', `where to write it, mode 0600; an existing file is never overwritten (default ${DEFAULT_BUNDLE})`)
    .option('--name <name>', 'name of the new worker token, and of the worker unless it is given --name (default worker)')
    .option('--url <url>', "the server's secure address as workers reach it (default: publicHost and the secure port)")
    .action(async (o: BundleOptions) => {
      code = await bundle(home(), o);
    });

  program
    .command('stop')
    .description('stop the server running on this home folder')
    .action(async () => {
      code = await stopServer(home());
    });

  program
    .command('status')
    .description('is a server running on this home folder?')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const info = runtime(home());
      const running = info !== null && alive(info.pid);
      // Running is not the same as taking changes: a full disk or a failed journal refuses them.
      const refusing = running ? await askRefusing(home()) : undefined;
      if (o.json) process.stdout.write(JSON.stringify({ running, ...(running ? { ...info, refusing } : {}) }) + '\n');
      else if (!running) process.stdout.write('not running\n');
      else {
        process.stdout.write(`running (pid ${info!.pid}) at ${info!.url}, id ${info!.serverId}\n`);
        if (refusing) process.stdout.write(`changes refused: ${refusing.code}: ${refusing.message}\n`);
        else if (refusing === undefined) process.stdout.write('whether it takes changes is unknown: it did not answer on its control socket\n');
      }
      code = running ? 0 : 1;
    });

  const config = program
    .command('config')
    .description('read or change settings: of the server running on the home, else of <home>/config.json (docs/CONFIG.md lists them)');
  config
    .command('get [key]')
    .description('show the settings in force and where each came from (default, config file, environment, command line)')
    .option('--json', 'print JSON: {setting: {value, source, live, env}}')
    .action(async (key: string | undefined, o: { json?: boolean }) => {
      code = await configGet(home(), key, o.json === true);
    });
  config
    .command('set <key> <value>')
    .description('change a setting in <home>/config.json; a running server applies it at once where it can (durations and sizes take units: 2m, 64M)')
    .action(async (key: string, value: string) => {
      code = await configSet(home(), key, value);
    });

  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof CpcError) {
      process.stderr.write(`cpc-server: ${err.message}${err.code === 'INVALID_FIELD' ? '' : ` (${err.code})`}\n`);
      return err.code === 'INVALID_FIELD' ? 2 : 1;
    }
    throw err;
  }
  return code;
}

interface StartOptions {
  name?: string;
  host?: string;
  publicHost?: string;
  port?: number;
  unsecurePort?: number;
  heartbeatInterval?: number;
  localWorker?: boolean;
}

/** `--heartbeat-interval 2m`: seconds, with a unit or without (a bare number may have a fraction). */
function seconds(v: string): number {
  const n = /^\s*\d+(\.\d+)?\s*$/.test(v) ? Number(v) : parseDurationS(v);
  if (n === null || !(n > 0)) throw new CommanderError(2, 'cpc-server.invalidArgument', `'${v}' is not a duration (for example 30s, 2m, 1h; a bare number is seconds)`);
  return n;
}

function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CommanderError(2, 'cpc-server.invalidArgument', `'${v}' is not a port number`);
  return n;
}

async function start(home: string, o: StartOptions): Promise<number> {
  // `cpcc stop-server` takes the same way out as SIGTERM, once that is set up below.
  let stopWanted = false;
  let requestStop: (why: string) => void = () => (stopWanted = true);
  // A first start makes two RSA keys: begun now, they are made on the thread
  // pool while the server's modules load (key-pool.ts).
  if (!existsSync(join(home, 'identity'))) (await import('../../federation/key-pool.js')).warmRsaKeys(2);
  // From before the accounts are read until the server can be asked (home-lock.ts).
  const { startServer } = await import('./server.js');
  const started = await withHomeLock(home, 'cpc-server start', async () => {
    const existing = runtime(home);
    if (existing && alive(existing.pid) && existing.pid !== process.pid) {
      process.stderr.write(`cpc-server: a server is already running on ${home} (pid ${existing.pid})\n`);
      return null;
    }
    const server = await startServer({
      home,
      name: o.name,
      host: o.host,
      publicHost: o.publicHost,
      securePort: o.port,
      unsecurePort: o.unsecurePort,
      heartbeatIntervalS: o.heartbeatInterval,
      onStopRequest: () => requestStop('stop-server'),
    });
    const control = await openControl(home, server);
    const info: RuntimeInfo = { pid: process.pid, url: server.url, unsecureUrl: server.unsecureUrl, serverId: server.serverId };
    writeFileSync(join(home, RUNTIME_FILE), JSON.stringify(info) + '\n', { mode: 0o600 });
    return { server, control };
  });
  if (!started) return 1;
  const { server, control } = started;

  let worker: ChildProcess | null = null;
  let workerLevel: string | null = null;
  if (o.localWorker) ({ child: worker, level: workerLevel } = await startLocalWorker(home, server));
  const { ADMIN_USER } = await import('../accounts/accounts.js');
  printWelcome(home, server, workerLevel, ADMIN_USER);

  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: string) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`cpc-server: ${signal}: stopping\n`);
      worker?.kill('SIGTERM');
      // Give the local worker a moment to report; the server stops either way.
      setTimeout(() => resolve(), worker ? 1000 : 0);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    requestStop = onSignal;
    if (stopWanted) onSignal('stop-server');
  });
  await server.close();
  await new Promise<void>((done) => (control ? control.close(() => done()) : done()));
  rmSync(controlPath(home), { force: true });
  rmSync(join(home, RUNTIME_FILE), { force: true });
  return 0;
}

// ---- settings ---------------------------------------------------------------------

/** The running server on this home, when there is one that answers on its control socket. */
async function runningSettings(home: string): Promise<ControlReply['settings'] | null> {
  const info = runtime(home);
  if (!info || !alive(info.pid)) return null;
  try {
    return (await askControl(home, { op: 'config-get' })).settings ?? null;
  } catch {
    return null;
  }
}

async function configGet(home: string, key: string | undefined, json: boolean): Promise<number> {
  const running = await runningSettings(home);
  const { config, sources } = running ?? settings.resolveSettings(home);
  const keys = key === undefined ? settings.SETTING_NAMES : [settings.settingNamed(key)];
  const { shownValue } = await import('./config-doc.js');
  if (json) {
    const out = Object.fromEntries(
      keys.map((k) => [k, { value: config[k] ?? null, source: sources[k], live: settings.SETTINGS[k].live, env: settings.SETTINGS[k].env ?? null }]),
    );
    process.stdout.write(JSON.stringify(key === undefined ? out : out[keys[0]!], null, 2) + '\n');
    return 0;
  }
  const rows = keys.map((k) => [k, config[k] === undefined ? '(none)' : shownValue(k, config[k]), sources[k]!] as const);
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.min(40, Math.max(...rows.map((r) => r[1].length)));
  process.stdout.write(
    (running ? `settings of the server running on ${home}\n` : `settings for ${home} (no server runs on it; environment of this shell)\n`) +
      rows.map(([k, v, src]) => `${k.padEnd(w0)}  ${v.padEnd(w1)}  ${src}`).join('\n') +
      '\n',
  );
  return 0;
}

async function configSet(home: string, name: string, value: string): Promise<number> {
  let key: keyof ServerConfig;
  try {
    key = settings.settingNamed(name);
  } catch (err) {
    throw new CpcError('INVALID_FIELD', `config set: ${(err as Error).message}`);
  }
  const file = settings.readConfigFile(home);
  const parsed = settings.settingValue(key, value);
  const next = { ...file, [key]: parsed };
  const check = settings.configSchema.partial().safeParse(next);
  if (!check.success) throw new CpcError('INVALID_FIELD', `config set: ${check.error.issues[0]!.path.join('.') || key}: ${check.error.issues[0]!.message}`);
  // A home that has never been started has no folder yet; made as the server makes it.
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const { writeFileDurable } = await import('../../persistence/durable-file.js');
  await writeFileDurable(settings.configPath(home), JSON.stringify(next, null, 2) + '\n', { mode: 0o600 });
  const shown = `${key} = ${JSON.stringify(parsed)}`;
  const info = runtime(home);
  if (!info || !alive(info.pid)) {
    process.stdout.write(`${shown} (takes effect when the server starts)\n`);
    return 0;
  }
  let reply: ControlReply;
  try {
    reply = await askControl(home, { op: 'config-set', key, value: parsed });
  } catch (err) {
    process.stdout.write(`${shown} (written; the running server did not answer: ${(err as Error).message}; restart it to apply)\n`);
    return 1;
  }
  if (reply.error) throw new CpcError(reply.error.code === 'INVALID_FIELD' ? 'INVALID_FIELD' : 'INTERNAL', `config set: ${reply.error.message}`);
  const outcome = reply.set!;
  const overridden = outcome.was.startsWith('environment') || outcome.was === 'command line';
  if (outcome.applied) {
    process.stdout.write(`${shown} (applied now to the running server)\n`);
    if (overridden) process.stdout.write(`note: at its next start the server takes ${key} from its ${outcome.was} again, which overrides the config file\n`);
  } else {
    process.stdout.write(`${shown} (written; ${key} needs a restart of the server to take effect)\n`);
    if (overridden) process.stdout.write(`note: the server takes ${key} from its ${outcome.was}, which overrides the config file\n`);
  }
  return 0;
}

// ---- the control socket and bundles ---------------------------------------------

/**
 * A door into the running server for cpc-server's own commands on this
 * machine (`bundle`). A worker token must be issued by the running server
 * itself: it reads users.json once at start and rewrites it whole on every
 * change, so a token another process wrote there would be unknown to it and
 * gone at its next write. Its HTTPS API would need a super user's password or
 * token here, and there may be none (the initial password is often changed).
 * This socket asks for neither: it lives in a 0700 folder of the home, and
 * whoever can open it can read the home (its keys, users.json) anyway.
 */
function controlPath(home: string): string {
  return join(home, 'run', 'control.sock');
}

const CONTROL_MAX_BYTES = 4096;
const TOKEN_NAME = /^[\w.@-]{1,64}$/;
const DEFAULT_BUNDLE = 'cpc-worker-bundle.json';

interface ControlReply {
  id?: string;
  token?: string;
  /** config-get: the settings in force and their sources. */
  settings?: { config: ServerConfig; sources: Record<string, SettingSource> };
  /** config-set: what the server did with the value. */
  set?: SetOutcome;
  /** For `health`: why changes are refused, or null while they are taken. */
  refusing?: { code: string; message: string } | null;
  error?: { code: string; message: string };
}

async function openControl(home: string, server: RunningServer): Promise<NetServer | null> {
  const path = controlPath(home);
  mkdirSync(join(home, 'run'), { recursive: true, mode: 0o700 });
  chmodSync(join(home, 'run'), 0o700);
  // A socket file left by a server that did not stop cleanly; the pid check in start() says none runs.
  rmSync(path, { force: true });
  const srv = createNetServer((socket) => {
    let text = '';
    const answer = (reply: ControlReply) => socket.end(JSON.stringify(reply) + '\n');
    socket.setEncoding('utf8');
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('error', () => {});
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.length > CONTROL_MAX_BYTES) return answer({ error: { code: 'BODY_TOO_LARGE', message: 'request too large' } });
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      let req: { op?: unknown; name?: unknown; key?: unknown; value?: unknown };
      try {
        req = JSON.parse(text.slice(0, nl)) as typeof req;
      } catch {
        return answer({ error: { code: 'INVALID_JSON', message: 'request is not JSON' } });
      }
      if (req.op === 'config-get') return answer({ settings: { config: server.config, sources: server.settingSources } });
      if (req.op === 'config-set' && typeof req.key === 'string') {
        return import('./live-settings.js').then(
          ({ applySetting }) => answer({ set: applySetting(server, req.key as string, req.value) }),
          (err: unknown) => answer({ error: { code: 'INTERNAL', message: (err as Error).message } }),
        ).catch((err: unknown) => answer({ error: { code: err instanceof CpcError ? err.code : 'INTERNAL', message: (err as Error).message } }));
      }
      if (req.op === 'health') return answer({ refusing: server.ctx.store.refusing });
      if (req.op !== 'worker-token' || typeof req.name !== 'string' || !TOKEN_NAME.test(req.name)) {
        return answer({ error: { code: 'BAD_REQUEST', message: 'expected {"op":"worker-token","name":NAME} or {"op":"health"}' } });
      }
      server.ctx.accounts.issue('worker', req.name, null).then(
        ({ token, record }) => {
          server.ctx.log.info('worker token issued for a bundle', { tokenId: record.id, name: req.name });
          answer({ id: record.id, token });
        },
        (err: unknown) => answer({ error: { code: err instanceof CpcError ? err.code : 'INTERNAL', message: 'could not issue a token' } }),
      );
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(path, () => resolve());
    });
  } catch (err) {
    process.stderr.write(`cpc-server: no control socket at ${path} (${(err as Error).message}); 'cpc-server bundle' cannot reach this server\n`);
    return null;
  }
  chmodSync(path, 0o600);
  return srv;
}

function askControl(home: string, request: object): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(controlPath(home));
    let text = '';
    socket.setEncoding('utf8');
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer in time')));
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      try {
        resolve(JSON.parse(text) as ControlReply);
      } catch {
        reject(new Error('a garbled answer'));
      }
    });
    socket.write(JSON.stringify(request) + '\n');
  });
}

/** Why the server running on `home` refuses changes (null: it takes them); undefined when it does not say. */
async function askRefusing(home: string): Promise<{ code: string; message: string } | null | undefined> {
  try {
    const reply = await askControl(home, { op: 'health' });
    return reply.refusing;
  } catch {
    return undefined;
  }
}

interface BundleOptions {
  output?: string;
  name?: string;
  url?: string;
}

/** What `cpc-worker --bundle FILE` reads. */
export interface WorkerBundle {
  url: string;
  serverId: string;
  caPem: string;
  token: string;
  name: string;
}

async function bundle(home: string, o: BundleOptions): Promise<number> {
  const name = o.name ?? 'worker';
  if (!TOKEN_NAME.test(name)) throw new CpcError('INVALID_FIELD', `--name must be 1-64 letters, digits, _ . @ -, got '${name}'`);
  const file = resolvePath(o.output ?? DEFAULT_BUNDLE);
  // Checked before a token is made, so that a refusal leaves no stray token; the write below refuses too.
  if (existsSync(file)) throw new CpcError('INVALID_STATE', `${file} exists; remove it or choose another file with -o`);
  const read = (f: string) => {
    try {
      return readFileSync(join(home, 'identity', f), 'utf8');
    } catch {
      throw new CpcError('INVALID_STATE', `${home} holds no server identity; run 'cpc-server --home ${home} setup' (or start it) first`);
    }
  };
  const serverId = read('server-id').trim();
  const caPem = read('ca.pem');

  // Held until the token is issued: a server cannot start in between (home-lock.ts).
  return withHomeLock(home, 'cpc-server bundle', () => bundleLocked(home, o, name, file, serverId, caPem));
}

async function bundleLocked(home: string, o: BundleOptions, name: string, file: string, serverId: string, caPem: string): Promise<number> {
  const running = runtime(home);
  const live = running !== null && alive(running.pid);
  let url: string;
  if (o.url !== undefined) {
    try {
      url = new URL(o.url).toString().replace(/\/$/, '');
    } catch {
      throw new CpcError('INVALID_FIELD', `--url: not a URL: ${o.url}`);
    }
    if (!url.startsWith('https://')) throw new CpcError('INVALID_FIELD', `--url: expected an https:// URL, not ${o.url}`);
  } else {
    url = bundleUrl(settings.resolveConfig(home), live ? running.url : null);
  }

  let token: string;
  let tokenId: string;
  if (live) {
    let reply: ControlReply;
    try {
      reply = await askControl(home, { op: 'worker-token', name });
    } catch (err) {
      throw new CpcError('INTERNAL', `the server running on ${home} (pid ${running.pid}) did not answer on ${controlPath(home)}: ${(err as Error).message}`);
    }
    if (!reply.token || !reply.id) throw new CpcError('INTERNAL', `the server refused to issue a token: ${reply.error?.message ?? 'no reason given'}`);
    token = reply.token;
    tokenId = reply.id;
  } else {
    // No server runs on this home, and none can start while the lock is
    // held, so the document is ours to change; the next start reads it.
    const config = settings.resolveConfig(home);
    const { Accounts } = await import('../accounts/accounts.js');
    const accounts = await Accounts.open(home, config.tokenTtlS, config.scryptLogN);
    const issued = await accounts.issue('worker', name, null);
    token = issued.token;
    tokenId = issued.record.id;
  }

  const content: WorkerBundle = { url, serverId, caPem, token, name };
  try {
    await fsp.writeFile(file, JSON.stringify(content, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    throw new CpcError('INTERNAL', `cannot write ${file}: ${(err as Error).message}; worker token ${tokenId} was issued, revoke it with 'cpcc worker-token revoke ${tokenId}'`);
  }
  process.stdout.write(
    `wrote ${file} (mode 0600): worker token '${name}' (id ${tokenId}) for server ${serverId} at ${url}\n` +
      `copy it to the worker machine and run: cpc-worker --bundle ${o.output ?? DEFAULT_BUNDLE}\n`,
  );
  return 0;
}

/**
 * Where workers reach the server: a server listening on one address is
 * reachable only there; one listening on every address, by its public name.
 * The certificate is checked by server id, so any working address will do.
 */
function bundleUrl(config: ServerConfig, runningUrl: string | null): string {
  const wildcard = config.host === '0.0.0.0' || config.host === '::';
  let host = wildcard ? config.publicHost : config.host;
  let port = config.securePort;
  if (runningUrl !== null) {
    const u = new URL(runningUrl);
    // The running server names its listening address, or localhost when it listens on all.
    host = u.hostname === 'localhost' ? config.publicHost : u.hostname.replace(/^\[|\]$/g, '');
    port = Number(u.port || 443);
  }
  if (port === 0) throw new CpcError('INVALID_FIELD', 'the secure port is chosen when the server starts (0): start it first, or give --url');
  return `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * The local worker follows the same isolation model as any other: as root,
 * jobs run under uids of their own and cannot enter the home (0700); with
 * bubblewrap they do not see it. With neither, its jobs would run as this
 * very user, so its token is bound to cpc-admin, who may read the home
 * anyway: no other user's job runs there. It gets none of this process's
 * environment, and its token through a pipe, never in its environment.
 */
async function startLocalWorker(home: string, server: RunningServer): Promise<{ child: ChildProcess; level: string }> {
  const [{ detectIsolation }, { inheritedEnv }, { ADMIN_USER }, { logFormat }] = await Promise.all([
    import('../../worker/isolation.js'),
    import('../../worker/runner.js'),
    import('../accounts/accounts.js'),
    import('../../common/logger.js'),
  ]);
  const isolation = detectIsolation();
  const level = typeof isolation === 'string' ? 'none' : isolation.level;
  const token = await server.createWorkerToken('local-worker', level === 'none' ? ADMIN_USER : undefined);
  const self = fileURLToPath(import.meta.url);
  const ext = self.endsWith('.ts') ? '.ts' : '.js';
  const script = fileURLToPath(new URL(`../../../bin/cpc-worker${ext}`, import.meta.url));
  const args = ext === '.ts' ? ['--import', 'tsx', script] : [script];
  const child = spawn(
    process.execPath,
    [
      ...args,
      '--server', server.url,
      '--ca', join(home, 'identity', 'ca.pem'),
      '--server-id', server.serverId,
      '--name', 'local-worker',
      '--isolation', level,
      '--token-fd', '3',
    ],
    // Its log lines go where the server's go, in the same form (pretty or JSON).
    { stdio: ['ignore', 'inherit', 'inherit', 'pipe'], env: { ...inheritedEnv(), CPC_LOG_FORMAT: logFormat() } },
  );
  const pipe = child.stdio[3] as Writable;
  pipe.on('error', () => {});
  pipe.end(token + '\n');
  child.on('exit', (code, signal) => {
    process.stderr.write(`cpc-server: local worker exited (${signal ?? `code ${code}`})\n`);
  });
  return { child, level };
}

function printWelcome(home: string, server: RunningServer, localWorker: string | null, adminUser: string): void {
  // Where clients reach it: the listening address, or the public host when it listens on every address.
  const wildcard = server.config.host === '0.0.0.0' || server.config.host === '::';
  const clientHost = wildcard ? server.config.publicHost : server.config.host;
  const bracketed = clientHost.includes(':') ? `[${clientHost}]` : clientHost;
  const lines = [
    '',
    `cpc-server '${server.config.name}' is running (id ${server.serverId})`,
    `  address        https://${bracketed}:${server.securePort}   (what clients and workers use)`,
    `  secure port    ${server.url}`,
    `  unsecure port  ${server.unsecureUrl}`,
    `  CA SHA-256     ${server.caFingerprint}`,
    `  dashboard      ${server.url}/   (the browser will ask you to accept the server's own CA)`,
    `  home           ${home}`,
    localWorker === null
      ? ''
      : `  local worker   started, isolation ${localWorker}${localWorker === 'none' ? ` (runs only ${adminUser}'s jobs: not root and no bubblewrap)` : ''}`,
  ];
  if (server.adminPassword) {
    lines.push(
      '',
      'First start: the administrator account was created.',
      `  user      cpc-admin`,
      `  password  ${server.adminPassword}`,
      `  (also in ${join(home, 'initial-admin-password')}, readable only by you, until cpc-admin logs in)`,
    );
  }
  lines.push('', 'Log in from another terminal:');
  if (!onPath('cpcc')) lines.push(`  alias cpcc='${process.execPath} ${cpccScript()}'`);
  lines.push(
    `  cpcc add-server ${clientHost} ${server.unsecurePort}     # compare the CA fingerprint above, answer y`,
    '  cpcc login cpc-admin',
    '  cpcc start demo && cpcc submit -- echo hello && cpcc wait',
    '',
  );
  process.stdout.write(lines.filter((l, i, all) => l !== '' || all[i - 1] !== '').join('\n') + '\n');
}

function cpccScript(): string {
  const self = fileURLToPath(import.meta.url);
  return fileURLToPath(new URL(`../../../bin/cpcc${self.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, command)));
}

function runtime(home: string): RuntimeInfo | null {
  const file = join(home, RUNTIME_FILE);
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as RuntimeInfo;
  } catch {
    return null;
  }
}


async function stopServer(home: string): Promise<number> {
  const info = runtime(home);
  if (!info || !alive(info.pid)) {
    process.stderr.write(`cpc-server: no server is running on ${home}\n`);
    return 1;
  }
  process.kill(info.pid, 'SIGTERM');
  for (let i = 0; i < 300 && alive(info.pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (alive(info.pid)) {
    process.stderr.write(`cpc-server: pid ${info.pid} did not stop within 30 s\n`);
    return 1;
  }
  process.stdout.write('stopped\n');
  return 0;
}

