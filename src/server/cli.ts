import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { CpcError } from '../core/errors.js';
import { writeFileDurable } from '../persistence/durable-file.js';
import { configPath, configSchema, defaultHome, readConfigFile, resolveConfig, type ServerConfig } from './config.js';
import { startServer, type RunningServer } from './server.js';

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

export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const program = new Command('cpc-server')
    .description('the cpc project server')
    .option('--home <dir>', 'server home folder (default $CPC_HOME or ~/.cpc)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `cpc-server: ${s.slice(7)}` : s) });

  const home = (): string => program.opts<{ home?: string }>().home ?? defaultHome();

  program
    .command('start')
    .description('start the server (creating identity, CA and cpc-admin on first run)')
    .option('--host <addr>', 'address to listen on')
    .option('--public-host <name>', 'host name others use to reach this server')
    .option('--port <n>', 'secure port', int)
    .option('--unsecure-port <n>', 'unsecure port', int)
    .option('--heartbeat-interval <s>', 'worker heartbeat interval in seconds', Number)
    .option('--local-worker', 'also start one worker on this machine')
    .action(async (o: { host?: string; publicHost?: string; port?: number; unsecurePort?: number; heartbeatInterval?: number; localWorker?: boolean }) => {
      code = await start(home(), o);
    });

  program
    .command('setup')
    .description('create the identity, CA and cpc-admin without starting')
    .action(async () => {
      const server = await startServer({ home: home(), securePort: 0, unsecurePort: 0, host: '127.0.0.1', logLevel: 'warn' });
      await server.close();
      process.stdout.write(`home: ${home()}\nserver id: ${server.serverId}\nCA SHA-256 fingerprint: ${server.caFingerprint}\n`);
      if (server.adminPassword) process.stdout.write(`cpc-admin password: ${server.adminPassword}\n`);
      else process.stdout.write('already set up\n');
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
    .action((o: { json?: boolean }) => {
      const info = runtime(home());
      const running = info !== null && alive(info.pid);
      if (o.json) process.stdout.write(JSON.stringify({ running, ...(running ? info : {}) }) + '\n');
      else process.stdout.write(running ? `running (pid ${info!.pid}) at ${info!.url}, id ${info!.serverId}\n` : 'not running\n');
      code = running ? 0 : 1;
    });

  const config = program.command('config').description('read or change settings in <home>/config.json');
  config
    .command('get [key]')
    .description('show the settings in force, or one of them')
    .action((key?: string) => {
      const c = resolveConfig(home());
      if (key && !(key in configSchema.shape)) throw new CpcError('INVALID_FIELD', `no setting named '${key}'`);
      process.stdout.write(JSON.stringify(key ? c[key as keyof ServerConfig] : c, null, 2) + '\n');
    });
  config
    .command('set <key> <value>')
    .description('change a setting (takes effect at the next start)')
    .action(async (key: string, value: string) => {
      if (!(key in configSchema.shape)) throw new CpcError('INVALID_FIELD', `no setting named '${key}'`);
      const file = readConfigFile(home());
      const parsed: unknown = /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
      const next = { ...file, [key]: parsed };
      const check = configSchema.partial().safeParse(next);
      if (!check.success) throw new CpcError('INVALID_FIELD', `setting '${key}': ${check.error.issues[0]!.message}`);
      await writeFileDurable(configPath(home()), JSON.stringify(next, null, 2) + '\n', { mode: 0o600 });
      process.stdout.write(`${key} = ${JSON.stringify(parsed)}\n`);
    });

  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof CpcError) {
      process.stderr.write(`cpc-server: ${err.message} (${err.code})\n`);
      return err.code === 'INVALID_FIELD' ? 2 : 1;
    }
    throw err;
  }
  return code;
}

function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CommanderError(2, 'cpc-server.invalidArgument', `'${v}' is not a port number`);
  return n;
}

async function start(
  home: string,
  o: { host?: string; publicHost?: string; port?: number; unsecurePort?: number; heartbeatInterval?: number; localWorker?: boolean },
): Promise<number> {
  const existing = runtime(home);
  if (existing && alive(existing.pid) && existing.pid !== process.pid) {
    process.stderr.write(`cpc-server: a server is already running on ${home} (pid ${existing.pid})\n`);
    return 1;
  }
  const server = await startServer({
    home,
    host: o.host,
    publicHost: o.publicHost,
    securePort: o.port,
    unsecurePort: o.unsecurePort,
    heartbeatIntervalS: o.heartbeatInterval,
  });
  const info: RuntimeInfo = { pid: process.pid, url: server.url, unsecureUrl: server.unsecureUrl, serverId: server.serverId };
  writeFileSync(join(home, RUNTIME_FILE), JSON.stringify(info) + '\n', { mode: 0o600 });

  let worker: ChildProcess | null = null;
  if (o.localWorker) worker = await startLocalWorker(home, server);
  printWelcome(home, server, worker !== null);

  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`cpc-server: ${signal}: stopping\n`);
      worker?.kill('SIGTERM');
      // Give the local worker a moment to report; the server stops either way.
      setTimeout(() => resolve(), worker ? 1000 : 0);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await server.close();
  rmSync(join(home, RUNTIME_FILE), { force: true });
  return 0;
}

async function startLocalWorker(home: string, server: RunningServer): Promise<ChildProcess> {
  const token = await server.createWorkerToken('local-worker');
  const self = fileURLToPath(import.meta.url);
  const ext = self.endsWith('.ts') ? '.ts' : '.js';
  const script = fileURLToPath(new URL(`../../bin/cpc-worker${ext}`, import.meta.url));
  const args = ext === '.ts' ? ['--import', 'tsx', script] : [script];
  const child = spawn(
    process.execPath,
    [...args, '--server', server.url, '--ca', join(home, 'identity', 'ca.pem'), '--server-id', server.serverId, '--name', 'local-worker'],
    { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, CPC_WORKER_TOKEN: token } },
  );
  child.on('exit', (code, signal) => {
    process.stderr.write(`cpc-server: local worker exited (${signal ?? `code ${code}`})\n`);
  });
  return child;
}

function printWelcome(home: string, server: RunningServer, localWorker: boolean): void {
  const lines = [
    '',
    `cpc-server is running (id ${server.serverId})`,
    `  secure port    ${server.url}`,
    `  unsecure port  ${server.unsecureUrl}`,
    `  CA SHA-256     ${server.caFingerprint}`,
    `  dashboard      ${server.url}/   (the browser will ask you to accept the server's own CA)`,
    `  home           ${home}`,
    localWorker ? '  local worker   started' : '',
  ];
  if (server.adminPassword) {
    lines.push(
      '',
      'First start: the administrator account was created.',
      `  user      cpc-admin`,
      `  password  ${server.adminPassword}`,
      `  (also in ${join(home, 'initial-admin-password')}, readable only by you)`,
    );
  }
  lines.push('', 'Log in from another terminal:');
  if (!onPath('cpcc')) lines.push(`  alias cpcc='${process.execPath} ${cpccScript()}'`);
  lines.push(
    `  cpcc add-server localhost ${server.unsecurePort}     # compare the CA fingerprint above, answer y`,
    '  cpcc login cpc-admin',
    '  cpcc start demo && cpcc submit -- echo hello && cpcc wait',
    '',
  );
  process.stdout.write(lines.filter((l, i, all) => l !== '' || all[i - 1] !== '').join('\n') + '\n');
}

function cpccScript(): string {
  const self = fileURLToPath(import.meta.url);
  return fileURLToPath(new URL(`../../bin/cpcc${self.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));
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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
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

