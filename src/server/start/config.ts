import { readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { fail } from '../../core/errors.js';
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

const ENV: Record<string, keyof ServerConfig> = {
  CPC_NAME: 'name',
  CPC_HOST: 'host',
  CPC_PUBLIC_HOST: 'publicHost',
  CPC_SECURE_PORT: 'securePort',
  CPC_UNSECURE_PORT: 'unsecurePort',
  CPC_HEARTBEAT_INTERVAL: 'heartbeatIntervalS',
  CPC_LOG_LEVEL: 'logLevel',
  CPC_METRICS: 'metrics',
  CPC_METRICS_TOKEN: 'metricsToken',
  CPC_SCRYPT_LOG_N: 'scryptLogN',
};

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
    out[key] = typeof DEFAULTS[key] === 'number' ? Number(v) : v;
  }
  return out as Partial<ServerConfig>;
}

/** The settings in force, or an INVALID_FIELD error naming the bad setting. */
export function resolveConfig(home: string, overrides: Partial<ServerConfig> = {}, env = process.env): ServerConfig {
  const merged = { ...DEFAULTS, ...readConfigFile(home), ...fromEnv(env), ...stripUndefined(overrides) };
  const r = configSchema.safeParse(merged);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw fail('INVALID_FIELD', `setting '${issue.path.join('.')}': ${issue.message}`);
  }
  return r.data;
}

export function leaseSeconds(c: ServerConfig): number {
  return c.leaseS ?? c.heartbeatIntervalS * 2;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
