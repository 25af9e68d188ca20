import { readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { fail } from '../../core/errors.js';
import { closest } from '../../core/suggest.js';
import { parseDurationS, parseSizeBytes } from '../../core/units.js';
import { launchersSchema } from '../pilots/config.js';

/**
 * Server settings, layered in one direction: defaults → `<home>/config.json`
 * → environment (CPC_*) → options given in code or on the command line.
 * Checked once, with messages that name the setting.
 */

const SECOND = 1;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const MiB = 1024 * 1024;

export const configSchema = z.strictObject({
  /** Shown to users and peers. */
  name: z.string().min(1).max(128),
  /** Address to listen on. */
  host: z.string().min(1).max(255),
  /** Host name others use to reach this server (written into its certificate). */
  publicHost: z.string().min(1).max(255),
  securePort: z.int().min(0).max(65535),
  unsecurePort: z.int().min(0).max(65535),
  /** How often workers heartbeat; Copernicus' default is two minutes. */
  heartbeatIntervalS: z.number().min(0.1).max(DAY),
  /** How long a lease lasts without a heartbeat; default two intervals. */
  leaseS: z.number().min(0.2).max(7 * DAY).optional(),
  /** Finished jobs leave memory for the archive after this long. */
  archiveAfterS: z.number().min(0).max(365 * DAY),
  /** Workers that stopped or were lost stay listed (as gone) this long, then their entry is removed. */
  workerRetentionS: z.number().min(0).max(365 * DAY),
  maxBodyBytes: z.int().min(1024).max(1024 * MiB),
  maxJobsPerSubmit: z.int().min(1).max(1_000_000),
  /** Each of stdout and stderr is kept up to this size per attempt (the end of it). */
  maxLogBytes: z.int().min(1024).max(256 * MiB),
  /** Of the output that arrives while an attempt runs, each stream keeps at least its last this many bytes (at most twice as many); default maxLogBytes. */
  maxLiveLogBytes: z.int().min(1024).max(256 * MiB).optional(),
  tokenTtlS: z.number().min(60).max(365 * DAY),
  /** A client that has not sent all its request headers by then is cut off (HEADERS_TIMEOUT). */
  headersTimeoutS: z.number().min(0.1).max(HOUR),
  /** A client that has not sent its whole request, body included, by then is cut off (REQUEST_TIMEOUT). */
  requestTimeoutS: z.number().min(0.1).max(DAY),
  /** Request headers past this size are refused (HEADERS_TOO_LARGE). */
  maxHeaderBytes: z.int().min(1024).max(1 * MiB),
  /** Workers registered at once with one worker token, unless the token says fewer (TOO_MANY_WORKERS past it). */
  maxWorkersPerToken: z.int().min(1).max(1_000_000),
  /** Long-poll claims open at once for workers of one worker token (TOO_MANY_REQUESTS past it). */
  maxClaimsPerToken: z.int().min(1).max(1_000_000),
  /** Event stream clients subscribed at once (1013 past it). */
  maxEventClients: z.int().min(1).max(1_000_000),
  /** Event stream sockets at once that have not said who they are; the oldest makes room for a new one. */
  maxEventPending: z.int().min(1).max(1_000_000),
  /** An event stream socket that has not said hello by then is closed (4408). */
  eventHelloTimeoutS: z.number().min(0.1).max(MINUTE),
  /** Failed logins for one user name, and from one address, before further tries are delayed. */
  loginFailuresPerUser: z.int().min(1).max(1_000_000),
  loginFailuresPerAddress: z.int().min(1).max(1_000_000),
  /** The longest a user name or address is made to wait after failed logins (the delay doubles up to it). */
  loginMaxDelayS: z.number().min(1).max(DAY),
  /** Passwords are hashed with scrypt at N = 2^scryptLogN (r 8, p 1); a login rehashes a password hashed otherwise. */
  scryptLogN: z.int().min(10).max(20),
  /** The largest file one upload may bring (inputs, outputs, project files). */
  maxFileBytes: z.int().min(1024).max(Number.MAX_SAFE_INTEGER),
  /** Bytes of distinct file content one project may refer to; 0 for no limit. */
  projectQuotaBytes: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  /** Unfinished jobs (waiting, queued, running) in the projects one user owns (QUEUE_FULL past it). */
  maxQueuedJobsPerUser: z.int().min(1).max(100_000_000),
  /** Bytes of the specs of those jobs (QUEUE_FULL past it): what they hold in the server's memory. */
  maxQueuedBytesPerUser: z.int().min(1024).max(Number.MAX_SAFE_INTEGER),
  /** Bytes of one job's command, argv or shell line (ARGV_TOO_LARGE past it). */
  maxArgvBytes: z.int().min(1024).max(64 * MiB),
  /** Bytes of one job's environment, `NAME=value` each (ENV_TOO_LARGE past it). */
  maxEnvBytes: z.int().min(1024).max(64 * MiB),
  /** Files nothing refers to are removed once this old (an upload is referred to only when the submit that names it commits). */
  fileGraceS: z.number().min(60).max(30 * DAY),
  /** A snapshot is written when the journal has grown this much since the last. */
  snapshotAfterBytes: z.int().min(1024).max(16 * 1024 * MiB),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']),
  /**
   * Who may read /metrics: `token` (a bearer token equal to `metricsToken`, or
   * a super user's token), `open` (anyone who reaches the secure port), `off`.
   */
  metrics: z.enum(['token', 'open', 'off']),
  /** The scrapers' bearer token; at least 16 printable characters. */
  metricsToken: z
    .string()
    .min(16)
    .max(512)
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces')
    .optional(),
  /** Batch systems the server submits pilots to when its own workers are not enough (docs/PILOTS.md). */
  launchers: launchersSchema,
});

export type ServerConfig = z.infer<typeof configSchema>;

export const DEFAULTS: ServerConfig = {
  name: hostname(),
  host: '0.0.0.0',
  publicHost: hostname(),
  securePort: 13807,
  unsecurePort: 14807,
  heartbeatIntervalS: 2 * MINUTE,
  archiveAfterS: 1 * HOUR,
  workerRetentionS: 1 * HOUR,
  maxBodyBytes: 64 * MiB,
  maxJobsPerSubmit: 100_000,
  maxLogBytes: 1 * MiB,
  tokenTtlS: 30 * DAY,
  headersTimeoutS: 30,
  requestTimeoutS: 2 * MINUTE,
  maxHeaderBytes: 16 * 1024,
  maxClaimsPerToken: 1000,
  maxWorkersPerToken: 10_000,
  maxEventClients: 1000,
  maxEventPending: 64,
  eventHelloTimeoutS: 5,
  loginFailuresPerUser: 5,
  loginFailuresPerAddress: 20,
  loginMaxDelayS: 15 * MINUTE,
  scryptLogN: 17,
  maxFileBytes: 64 * 1024 * MiB,
  projectQuotaBytes: 64 * 1024 * MiB,
  maxQueuedJobsPerUser: 500_000,
  maxQueuedBytesPerUser: 256 * MiB,
  // Linux starts no process whose arguments and environment pass 2 MiB (a quarter of the usual stack limit).
  maxArgvBytes: 1 * MiB,
  maxEnvBytes: 512 * 1024,
  fileGraceS: 1 * HOUR,
  snapshotAfterBytes: 64 * MiB,
  logLevel: 'info',
  metrics: 'token',
  launchers: [],
};

/**
 * What each setting is, for `cpc-server config` and docs/CONFIG.md: what it
 * does, the environment variable that sets it, and whether a running server
 * takes a new value at once (`config set` hands it over) or at its next start.
 */
export interface SettingInfo {
  doc: string;
  env?: string;
  live: boolean;
}

export const SETTINGS: Record<keyof ServerConfig, SettingInfo> = {
  name: { doc: 'shown to users and peers', env: 'CPC_NAME', live: false },
  host: { doc: 'address to listen on (0.0.0.0: every address)', env: 'CPC_HOST', live: false },
  publicHost: { doc: 'host name or IP address others use to reach this server (written into its certificate)', env: 'CPC_PUBLIC_HOST', live: false },
  securePort: { doc: 'the HTTPS port (users, workers, peers)', env: 'CPC_SECURE_PORT', live: false },
  unsecurePort: { doc: 'the HTTP port that hands out the CA certificate and takes connection requests', env: 'CPC_UNSECURE_PORT', live: false },
  heartbeatIntervalS: { doc: 'how often workers heartbeat', env: 'CPC_HEARTBEAT_INTERVAL', live: false },
  leaseS: { doc: 'how long a lease lasts without a heartbeat (default two heartbeat intervals)', env: 'CPC_LEASE_S', live: false },
  archiveAfterS: { doc: 'finished jobs leave memory for the archive after this long', env: 'CPC_ARCHIVE_AFTER_S', live: true },
  workerRetentionS: { doc: 'workers that stopped or were lost stay listed (as gone) this long, then are removed', env: 'CPC_WORKER_RETENTION_S', live: true },
  maxBodyBytes: { doc: 'the largest request body', env: 'CPC_MAX_BODY_BYTES', live: false },
  maxJobsPerSubmit: { doc: 'jobs one submit request may hold (cpcc sends bigger files in pieces)', env: 'CPC_MAX_JOBS_PER_SUBMIT', live: false },
  maxLogBytes: { doc: 'each of stdout and stderr is kept up to this size per attempt (its end)', env: 'CPC_MAX_LOG_BYTES', live: false },
  maxLiveLogBytes: { doc: 'of output arriving while an attempt runs, each stream keeps at least its last this many bytes (default maxLogBytes)', env: 'CPC_MAX_LIVE_LOG_BYTES', live: false },
  tokenTtlS: { doc: 'how long a login lasts', env: 'CPC_TOKEN_TTL_S', live: false },
  headersTimeoutS: { doc: 'a client that has not sent its request headers by then is cut off', env: 'CPC_HEADERS_TIMEOUT_S', live: false },
  requestTimeoutS: { doc: 'a client that has not sent its whole request by then is cut off', env: 'CPC_REQUEST_TIMEOUT_S', live: false },
  maxHeaderBytes: { doc: 'request headers past this size are refused', env: 'CPC_MAX_HEADER_BYTES', live: false },
  maxWorkersPerToken: { doc: 'workers registered at once with one worker token, unless the token says fewer', env: 'CPC_MAX_WORKERS_PER_TOKEN', live: true },
  maxClaimsPerToken: { doc: 'long-poll claims open at once for the workers of one worker token', env: 'CPC_MAX_CLAIMS_PER_TOKEN', live: true },
  maxEventClients: { doc: 'event stream clients subscribed at once', env: 'CPC_MAX_EVENT_CLIENTS', live: false },
  maxEventPending: { doc: 'event stream sockets at once that have not said who they are', env: 'CPC_MAX_EVENT_PENDING', live: false },
  eventHelloTimeoutS: { doc: 'an event stream socket that has not said hello by then is closed', env: 'CPC_EVENT_HELLO_TIMEOUT_S', live: false },
  loginFailuresPerUser: { doc: 'failed logins for one user name before further tries are delayed', env: 'CPC_LOGIN_FAILURES_PER_USER', live: false },
  loginFailuresPerAddress: { doc: 'failed logins from one address before further tries are delayed', env: 'CPC_LOGIN_FAILURES_PER_ADDRESS', live: false },
  loginMaxDelayS: { doc: 'the longest a user name or address is made to wait after failed logins', env: 'CPC_LOGIN_MAX_DELAY_S', live: false },
  scryptLogN: { doc: 'passwords are hashed with scrypt at N = 2^scryptLogN; a login rehashes a password hashed otherwise', env: 'CPC_SCRYPT_LOG_N', live: false },
  maxFileBytes: { doc: 'the largest file one upload may bring', env: 'CPC_MAX_FILE_BYTES', live: true },
  projectQuotaBytes: { doc: 'bytes of distinct file content one project may refer to; 0 for no limit', env: 'CPC_PROJECT_QUOTA_BYTES', live: true },
  maxQueuedJobsPerUser: { doc: 'unfinished jobs in the projects one user owns', env: 'CPC_MAX_QUEUED_JOBS_PER_USER', live: true },
  maxQueuedBytesPerUser: { doc: 'bytes of the specs of those jobs', env: 'CPC_MAX_QUEUED_BYTES_PER_USER', live: true },
  maxArgvBytes: { doc: "bytes of one job's command, argv or shell line", env: 'CPC_MAX_ARGV_BYTES', live: false },
  maxEnvBytes: { doc: "bytes of one job's environment", env: 'CPC_MAX_ENV_BYTES', live: false },
  fileGraceS: { doc: 'files nothing refers to are removed once this old', env: 'CPC_FILE_GRACE_S', live: true },
  snapshotAfterBytes: { doc: 'a snapshot is written when the journal has grown this much since the last', env: 'CPC_SNAPSHOT_AFTER_BYTES', live: false },
  logLevel: { doc: 'trace, debug, info, warn or error', env: 'CPC_LOG_LEVEL', live: true },
  metrics: { doc: 'who may read /metrics: token (metricsToken or a super user), open, off', env: 'CPC_METRICS', live: true },
  metricsToken: { doc: "the scrapers' bearer token; at least 16 printable characters", env: 'CPC_METRICS_TOKEN', live: true },
  launchers: { doc: 'batch systems pilots are submitted to (docs/PILOTS.md); a JSON list', live: false },
};

const ENV: Record<string, keyof ServerConfig> = Object.fromEntries(
  Object.entries(SETTINGS).flatMap(([key, info]) => (info.env ? [[info.env, key]] : [])),
) as Record<string, keyof ServerConfig>;

export const SETTING_NAMES = Object.keys(SETTINGS) as (keyof ServerConfig)[];

/** Where the value in force came from. */
export type SettingSource = 'default' | 'config file' | `environment ${string}` | 'command line' | 'config set';

/** The setting `name` stands for, or an error that suggests the one meant (`logLevl` → logLevel). */
export function settingNamed(name: string, what = 'unknown setting'): keyof ServerConfig {
  if ((SETTING_NAMES as string[]).includes(name)) return name as keyof ServerConfig;
  const guess = closest(name, SETTING_NAMES);
  throw fail('INVALID_FIELD', `${what} '${name}'${guess ? ` (did you mean ${guess}?)` : ''}`);
}

/**
 * A setting's value as written in a file, the environment or on the command
 * line: durations (`...S`) and sizes (`...Bytes`) may carry units (`2m`,
 * `64M`); other numbers are numbers; launchers are JSON. Anything not
 * understood is passed on as it is, for the schema to refuse by name.
 */
export function settingValue(key: keyof ServerConfig, raw: unknown): unknown {
  if (typeof raw !== 'string') return raw;
  const text = raw.trim();
  if (key === 'launchers') {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return raw;
    }
  }
  const numeric = typeof DEFAULTS[key] === 'number' || key === 'leaseS' || key === 'maxLiveLogBytes';
  if (!numeric) return raw;
  if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (key.endsWith('Bytes')) return parseSizeBytes(text) ?? raw;
  if (key.endsWith('S')) return parseDurationS(text) ?? raw;
  return raw;
}

export function defaultHome(): string {
  return process.env.CPC_HOME || join(homedir(), '.cpc');
}

export function configPath(home: string): string {
  return join(home, 'config.json');
}

export function readConfigFile(home: string): Partial<ServerConfig> {
  let text: string;
  try {
    text = readFileSync(configPath(home), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  try {
    return JSON.parse(text) as Partial<ServerConfig>;
  } catch {
    throw fail('INVALID_FIELD', `${configPath(home)} is not valid JSON`);
  }
}

function fromEnv(env: NodeJS.ProcessEnv): Partial<ServerConfig> {
  const out: Record<string, unknown> = {};
  for (const [variable, key] of Object.entries(ENV)) {
    const v = env[variable];
    if (v === undefined || v === '') continue;
    out[key] = settingValue(key, v);
  }
  return out as Partial<ServerConfig>;
}

/** The settings in force, or an INVALID_FIELD error naming the bad setting. */
export function resolveConfig(home: string, overrides: Partial<ServerConfig> = {}, env = process.env): ServerConfig {
  return resolveSettings(home, overrides, env).config;
}

/** The settings in force and where each came from: defaults, then the config file, the environment, the command line. */
export function resolveSettings(
  home: string,
  overrides: Partial<ServerConfig> = {},
  env = process.env,
): { config: ServerConfig; sources: Record<keyof ServerConfig, SettingSource> } {
  const file = readConfigFile(home);
  for (const key of Object.keys(file)) settingNamed(key, `${configPath(home)}: unknown setting`);
  const fromFile = Object.fromEntries(Object.entries(file).map(([k, v]) => [k, settingValue(k as keyof ServerConfig, v)])) as Partial<ServerConfig>;
  const fromEnvironment = fromEnv(env);
  const given = stripUndefined(overrides);
  const merged = { ...DEFAULTS, ...fromFile, ...fromEnvironment, ...given };
  const r = configSchema.safeParse(merged);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw fail('INVALID_FIELD', `setting '${issue.path.join('.')}': ${issue.message}`);
  }
  const sources = {} as Record<keyof ServerConfig, SettingSource>;
  for (const key of SETTING_NAMES) {
    sources[key] =
      key in given ? 'command line' : key in fromEnvironment ? `environment ${SETTINGS[key].env}` : key in fromFile ? 'config file' : 'default';
  }
  return { config: r.data, sources };
}

export function leaseSeconds(c: ServerConfig): number {
  return c.leaseS ?? c.heartbeatIntervalS * 2;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
