#!/usr/bin/env node
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { closeSync, fstatSync, readFileSync, statSync, promises as fsp } from 'node:fs';
import { availableParallelism, hostname, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { packageVersion } from '../src/common/version.js';
import { parseDurationS, parseSizeMb } from '../src/core/units.js';
import { detectUsageMethod, type UsageMethodName } from '../src/worker/usage.js';
import { detectIsolation, ISOLATION_LEVELS, parseUidRange, type IsolationLevel, type UidRange } from '../src/worker/isolation.js';
import type { LogLevel } from '../src/worker/worker.js';

interface Flags {
  server: string;
  bundle?: string;
  token?: string;
  tokenFile?: string;
  tokenFd?: number;
  isolation?: IsolationLevel;
  usage?: UsageMethodName | 'off';
  jobUids?: UidRange;
  sharedIdentity: boolean;
  ca?: string;
  serverId?: string;
  cores: number;
  memory: number;
  workDir?: string;
  name: string;
  label: string[];
  claimWait: number;
  keepWorkDirs: boolean;
  liveLogs: boolean;
  verbose: boolean;
  idleExit?: number;
  onTerm: 'drain' | 'abandon';
}

function wholeNumber(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
      throw new InvalidArgumentError(`expected a whole number of at least ${min}.`);
    }
    return n;
  };
}

/** Seconds: a bare number (fractions allowed) or a duration with units (90s, 5m, 1h30m). */
function durationValue(value: string): number | null {
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return Number(value);
  return parseDurationS(value);
}

function seconds(value: string): number {
  const n = durationValue(value);
  if (n === null || n > 300) throw new InvalidArgumentError('expected a duration from 0 to 5m (for example 30, 30s, 2m).');
  return n;
}

function idleSeconds(value: string): number {
  const n = durationValue(value);
  if (n === null || n <= 0 || n > 30 * 24 * 3600) throw new InvalidArgumentError('expected a duration above 0, at most 30d (for example 600, 10m, 2h).');
  return n;
}

/** `--memory 16G`: MB, with a unit or without. */
function megabytes(value: string): number {
  const n = parseSizeMb(value);
  if (n === null) throw new InvalidArgumentError('expected a size (for example 4096, 512M, 16G; a bare number is MB).');
  return n;
}

function termMode(value: string): 'drain' | 'abandon' {
  if (value !== 'drain' && value !== 'abandon') throw new InvalidArgumentError("expected 'drain' or 'abandon'.");
  return value;
}

function usageMethod(value: string): UsageMethodName | 'off' {
  if (value === 'cgroup-v1' || value === 'proc' || value === 'off') return value;
  throw new InvalidArgumentError("one of 'cgroup-v1', 'proc', 'off'");
}

function isolationLevel(value: string): IsolationLevel {
  if (!(ISOLATION_LEVELS as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${ISOLATION_LEVELS.join(', ')}.`);
  return value as IsolationLevel;
}

function uidRange(value: string): UidRange {
  const r = parseUidRange(value);
  if (typeof r === 'string') throw new InvalidArgumentError(`${r}.`);
  return r;
}

/**
 * A secret file must be the worker's alone: a token others can read is
 * anyone's. Returns the content, or why it cannot be used.
 */
function readPrivate(file: string): { text: string } | string {
  try {
    const st = statSync(file);
    if ((st.mode & 0o077) !== 0) return `${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`;
    return { text: readFileSync(file, 'utf8') };
  } catch (err) {
    return `cannot read ${file}: ${(err as Error).message}`;
  }
}

/** The token from a descriptor the starter passed (a pipe), read to its end once and closed. */
function readTokenFd(fd: number): string {
  try {
    fstatSync(fd);
    return readFileSync(fd, 'utf8').trim();
  } finally {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  }
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The worker's lines in the servers' format: one JSON object a line on stderr (src/common/logger.ts). */
async function makeLogger(verbose: boolean) {
  const { createLogger } = await import('../src/common/logger.js');
  const logger = createLogger(verbose ? 'debug' : 'info', undefined, { name: 'cpc-worker' });
  return (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => logger[level](msg, fields);
}

/** What `cpc-server bundle` writes: everything a worker needs to reach its server. */
interface Bundle {
  url: string;
  serverId: string;
  caPem: string;
  token: string;
  name?: string;
}

/** The bundle in `file`, or why it cannot be used. */
function readBundle(file: string): Bundle | string {
  const read = readPrivate(file);
  if (typeof read === 'string') return read;
  const text = read.text;
  let b: Partial<Record<keyof Bundle, unknown>>;
  try {
    b = JSON.parse(text) as typeof b;
  } catch {
    return `${file} is not JSON; make it with 'cpc-server bundle'`;
  }
  if (b === null || typeof b !== 'object' || Array.isArray(b)) return `${file} does not hold a bundle object`;
  const missing = (['url', 'serverId', 'caPem', 'token'] as const).filter((k) => typeof b[k] !== 'string' || b[k] === '');
  if (missing.length > 0) return `${file} lacks ${missing.join(', ')}; make it again with 'cpc-server bundle'`;
  if (!(b.caPem as string).includes('-----BEGIN CERTIFICATE-----')) return `${file}: caPem holds no PEM certificate`;
  if (b.name !== undefined && typeof b.name !== 'string') return `${file}: name must be a string`;
  return b as Bundle;
}

function usageError(message: string): number {
  process.stderr.write(`cpc-worker: ${message}\n`);
  return 2;
}

async function main(argv: string[]): Promise<number> {
  const program = new Command('cpc-worker')
    .description('Run jobs from a cpc server on this machine.')
    .version(packageVersion())
    .option('--server <url>', 'the server secure URL, https://host:port (or from --bundle)')
    .option('--bundle <file>', 'a connection file from cpc-server bundle: server, CA, server id, token and name; flags override it')
    .option('--token-file <file>', 'read the worker token from this file (mode 0600), once at start')
    .option('--token-fd <n>', 'read the worker token from this open descriptor (a pipe), once at start', wholeNumber(3))
    .option('--token <token>', 'refused: a token on the command line shows in ps and /proc; use --token-file')
    .option('--isolation <level>', 'how jobs are kept apart: user (root: a uid per job), sandbox (bubblewrap), none; default: the strongest that works', isolationLevel)
    .option('--usage <method>', "how jobs' usage is measured and their memory limited: cgroup-v1, proc (sampling /proc), off; default: cgroup-v1 where the worker may create cgroups, else proc", usageMethod)
    .option('--job-uids <first-last>', 'isolation user: the uids jobs run as, one per running job, used by no account', uidRange)
    .option('--shared-identity', "isolation none: run any user's jobs although they can read this worker and each other", false)
    .option('--ca <file>', "the server's CA certificate (PEM)")
    .option('--server-id <id>', "accept only a server whose certificate carries this id")
    .option('--cores <n>', 'cores to offer', wholeNumber(1), availableParallelism())
    .option('--memory <size>', 'memory to offer (16G, 512M; a bare number is MB)', megabytes, Math.floor((totalmem() / (1024 * 1024)) * 0.9))
    .option('--work-dir <dir>', 'where attempt folders are made (default $CPC_WORKER_DIR, else a temp folder)')
    .option('--name <name>', 'name shown in the server worker list', `${hostname()}-${process.pid}`)
    .option('--label <label>', 'a label for this worker (repeatable)', collect, [] as string[])
    .option('--claim-wait <time>', 'how long the server may hold a claim open (30s, 2m; at most 5m)', seconds, 30)
    .option('--keep-work-dirs', 'keep attempt folders after their result was delivered', false)
    .option('--no-live-logs', "send jobs' output only with their results, not while they run")
    .option('--verbose', 'log claims and heartbeats too', false)
    .option('--idle-exit <time>', 'stop after running nothing for this long (10m, 1h; batch pilots)', idleSeconds)
    .option(
      '--on-term <mode>',
      "on the first SIGTERM: 'drain' (finish running jobs) or 'abandon' (kill them unreported, so they are re-queued; for pilots a batch system kills)",
      termMode,
      'drain',
    )
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`cpc-worker: ${str.split('\n')[0]!}\n`) });

  try {
    program.parse(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : 2;
    }
    throw err;
  }
  const flags = program.opts<Flags>();
  // The worker itself (its HTTP client, pino) is loaded once the flags are read: `--help` needs none of it.
  const [log, { ApiClient }, { Worker }] = await Promise.all([
    makeLogger(flags.verbose),
    import('../src/client/api/client.js'),
    import('../src/worker/worker.js'),
  ]);

  // Whatever happens next, no job may inherit the token from the environment.
  const envToken = process.env.CPC_WORKER_TOKEN;
  delete process.env.CPC_WORKER_TOKEN;
  if (flags.token !== undefined) return usageError('--token puts the token where every process of this machine can read it (ps, /proc); use --token-file FILE (mode 0600)');

  const isolation = detectIsolation({ want: flags.isolation, uids: flags.jobUids });
  if (typeof isolation === 'string') return usageError(`--isolation: ${isolation}`);

  const usage = flags.usage === 'off' ? null : detectUsageMethod(flags.usage);
  if (typeof usage === 'string') return usageError(`--usage: ${usage}`);

  let bundle: Bundle | undefined;
  if (flags.bundle !== undefined) {
    const read = readBundle(flags.bundle);
    if (typeof read === 'string') return usageError(`--bundle: ${read}`);
    bundle = read;
    flags.server ??= bundle.url;
    flags.serverId ??= bundle.serverId;
    flags.token = bundle.token;
    // One bundle may serve many machines; the host tells their workers apart.
    if (bundle.name && program.getOptionValueSource('name') === 'default') flags.name = `${bundle.name}@${hostname()}`;
  }
  if (!flags.server) return usageError('give the server: --server URL, or --bundle FILE (made by cpc-server bundle)');

  let token: string | undefined;
  if (flags.tokenFile !== undefined) {
    const read = readPrivate(flags.tokenFile);
    if (typeof read === 'string') return usageError(`--token-file: ${read}`);
    token = read.text.trim();
  } else if (flags.tokenFd !== undefined) {
    try {
      token = readTokenFd(flags.tokenFd);
    } catch (err) {
      return usageError(`--token-fd: cannot read descriptor ${flags.tokenFd}: ${(err as Error).message}`);
    }
  } else if (envToken !== undefined) {
    // The variable is gone from this process's environment, but the kernel
    // keeps the one it started with in /proc/<pid>/environ, which jobs of
    // this worker's own user can read.
    if (isolation.level === 'none') {
      return usageError('CPC_WORKER_TOKEN stays readable in /proc of this worker to its jobs at isolation none; use --token-file FILE (mode 0600)');
    }
    token = envToken;
  } else {
    token = flags.token;
  }
  if (!token) return usageError('a worker token is needed: --token-file FILE (mode 0600), --bundle FILE, or CPC_WORKER_TOKEN');
  let url: URL;
  try {
    url = new URL(flags.server);
  } catch {
    return usageError(`--server: not a URL: ${flags.server}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return usageError(`--server: expected an https:// URL, not ${flags.server}`);
  let caPem: string | undefined;
  if (flags.ca) {
    try {
      caPem = readFileSync(flags.ca, 'utf8');
    } catch (err) {
      return usageError(`--ca: cannot read ${flags.ca}: ${(err as Error).message}`);
    }
    if (!caPem.includes('-----BEGIN CERTIFICATE-----')) return usageError(`--ca: ${flags.ca} holds no PEM certificate`);
  } else if (bundle) {
    caPem = bundle.caPem;
  } else if (url.protocol === 'https:') {
    log('warn', "no --ca given: the server's certificate must be trusted by the system");
  }

  const ownDir = !flags.workDir && !process.env.CPC_WORKER_DIR;
  const workDir = flags.workDir ?? process.env.CPC_WORKER_DIR ?? join(tmpdir(), `cpc-worker-${process.pid}`);

  const client = new ApiClient({ url: flags.server, caPem, serverId: flags.serverId, token });
  const worker = new Worker({
    client,
    name: flags.name,
    cores: flags.cores,
    memoryMb: flags.memory,
    workDir,
    labels: flags.label,
    isolation,
    usage,
    sharedIdentity: flags.sharedIdentity,
    claimWaitS: flags.claimWait,
    keepWorkDirs: flags.keepWorkDirs,
    liveLogs: flags.liveLogs,
    log,
    idleExitS: flags.idleExit,
    signalSettleMs: flags.onTerm === 'abandon' ? 1000 : undefined,
    exitSettleMs: flags.onTerm === 'abandon' ? 250 : undefined,
  });

  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals === 1 && !(sig === 'SIGTERM' && flags.onTerm === 'abandon')) {
      log('info', `${sig}: finishing running jobs; send it again to kill them and stop now`);
      void worker.stop({ drain: true });
    } else {
      log('warn', `${sig}: killing running jobs and stopping now`);
      void worker.stop({ drain: false });
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  log('info', 'starting', { server: flags.server, name: flags.name, workDir, isolation: isolation.level, why: isolation.why });
  log('info', usage ? `measuring usage by ${usage.name}: ${usage.why}` : 'not measuring usage (--usage off): memory limits are not enforced', { usage: usage?.name ?? 'off' });
  if (isolation.level === 'none') {
    log(
      'warn',
      flags.sharedIdentity
        ? "ISOLATION NONE, SHARED: jobs of every user run as this worker's own user; they can read its files and each other's folders, and signal each other"
        : "ISOLATION NONE: jobs run as this worker's own user and can read what it can; it takes only the jobs of the user its token is bound to",
    );
  }
  let code = 0;
  try {
    await worker.start();
    await worker.wait();
    log('info', 'stopped');
  } catch (err) {
    log('error', `cannot go on: ${(err as Error).message}`);
    code = 1;
  }
  await client.destroy().catch(() => {});
  if (ownDir && !flags.keepWorkDirs) await fsp.rm(workDir, { recursive: true, force: true }).catch(() => {});
  return code;
}

main(process.argv).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`cpc-worker: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
