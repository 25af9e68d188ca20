/**
 * cpcc's configuration: the servers it trusts and, for each, who is logged in
 * and which project is current. One JSON file, `$CPCC_HOME/config.json`
 * (default `~/.cpcc/config.json`). It holds bearer tokens, so the file is 0600
 * and its folder 0700, and it is replaced atomically so that a crash or a
 * second cpcc never leaves half a file behind.
 */
import { promises as fsp } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export const CONFIG_FILE = 'config.json';

export interface ServerEntry {
  /** https://host:securePort */
  url: string;
  serverId: string;
  caPem: string;
  caFingerprint: string;
  user?: string;
  token?: string;
  project?: string;
}

export interface ClientConfig {
  current?: string;
  servers: Record<string, ServerEntry>;
}

export type ConfigErrorCode = 'NO_SERVER' | 'UNKNOWN_SERVER' | 'BAD_CONFIG' | 'NOT_LOGGED_IN' | 'NO_PROJECT';

export class ConfigError extends Error {
  constructor(
    readonly code: ConfigErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function configHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.CPCC_HOME && env.CPCC_HOME.trim() !== '' ? env.CPCC_HOME : join(homedir(), '.cpcc');
}

export function configPath(home: string): string {
  return join(home, CONFIG_FILE);
}

export function emptyConfig(): ClientConfig {
  return { servers: {} };
}

export async function loadConfig(home: string): Promise<ClientConfig> {
  const path = configPath(home);
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyConfig();
    throw new ConfigError('BAD_CONFIG', `cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('BAD_CONFIG', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  return validateConfig(parsed, path);
}

const REQUIRED = ['url', 'serverId', 'caPem', 'caFingerprint'] as const;
const OPTIONAL = ['user', 'token', 'project'] as const;

export function validateConfig(value: unknown, where = CONFIG_FILE): ClientConfig {
  const bad = (field: string, what: string): never => {
    throw new ConfigError('BAD_CONFIG', `${where}: ${field} ${what}`);
  };
  if (!isObject(value)) return bad('(top level)', 'must be an object');
  const servers = value.servers ?? {};
  if (!isObject(servers)) return bad('servers', 'must be an object');
  const out: ClientConfig = { servers: {} };
  for (const [name, entry] of Object.entries(servers)) {
    if (!isObject(entry)) return bad(`servers.${name}`, 'must be an object');
    for (const f of REQUIRED) {
      if (typeof entry[f] !== 'string' || entry[f] === '') bad(`servers.${name}.${f}`, 'must be a non-empty string');
    }
    for (const f of OPTIONAL) {
      if (entry[f] !== undefined && typeof entry[f] !== 'string') bad(`servers.${name}.${f}`, 'must be a string');
    }
    out.servers[name] = pick(entry as unknown as ServerEntry);
  }
  if (value.current !== undefined) {
    if (typeof value.current !== 'string') return bad('current', 'must be a string');
    out.current = value.current;
  }
  return out;
}

/**
 * Writes the whole file: temp file in the same folder (mode 0600 from the
 * start, so the token is never readable by others, not even briefly), fsync,
 * rename over the old one, fsync the folder so the rename itself survives a crash.
 */
// The temp name need only differ between this process's own writes: the pid
// tells processes apart, and 'wx' refuses a name that is taken.
let tmpCount = 0;

export async function saveConfig(home: string, config: ClientConfig): Promise<void> {
  const path = configPath(home);
  const dir = dirname(path);
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  // mkdir leaves an existing folder's mode alone, and a folder made by hand may be too open.
  await fsp.chmod(dir, 0o700);
  const tmp = join(dir, `.${CONFIG_FILE}.${process.pid}.${(tmpCount++).toString(36)}${Date.now().toString(36)}.tmp`);
  const handle = await fsp.open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(config, null, 2)}\n`, 'utf8');
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await fsp.rename(tmp, path);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await syncDir(dir);
}

/**
 * Read, change, write. The file is read again right before the change so that
 * two cpcc runs at once lose as little as possible of each other's work;
 * last writer wins, but never with a torn file.
 */
export async function updateConfig(home: string, change: (config: ClientConfig) => void): Promise<ClientConfig> {
  const config = await loadConfig(home);
  change(config);
  await saveConfig(home, config);
  return config;
}

export interface SelectedServer {
  name: string;
  entry: ServerEntry;
}

/** The server named by `-s`, or the current one. */
export function selectServer(config: ClientConfig, name?: string): SelectedServer {
  const names = Object.keys(config.servers);
  if (name !== undefined) {
    const entry = config.servers[name];
    if (!entry) {
      const known = names.length > 0 ? `; configured: ${names.join(', ')}` : "; run 'cpcc add-server HOST'";
      throw new ConfigError('UNKNOWN_SERVER', `no server named '${name}'${known}`);
    }
    return { name, entry };
  }
  if (config.current && config.servers[config.current]) {
    return { name: config.current, entry: config.servers[config.current]! };
  }
  if (names.length === 0) {
    throw new ConfigError('NO_SERVER', "no server configured; run 'cpcc add-server HOST'");
  }
  throw new ConfigError('NO_SERVER', `no current server; run 'cpcc use-server NAME' (configured: ${names.join(', ')})`);
}

export function setServer(config: ClientConfig, name: string, entry: ServerEntry, makeCurrent = true): void {
  config.servers[name] = pick(entry);
  if (makeCurrent) config.current = name;
}

export function useServer(config: ClientConfig, name: string): void {
  selectServer(config, name);
  config.current = name;
}

/** Changes one server's entry in place; throws if it vanished meanwhile. */
export function patchServer(config: ClientConfig, name: string, patch: Partial<ServerEntry>): ServerEntry {
  const { entry } = selectServer(config, name);
  const next: ServerEntry = { ...entry, ...patch };
  for (const f of OPTIONAL) if (next[f] === undefined) delete next[f];
  config.servers[name] = next;
  return next;
}

function pick(e: ServerEntry): ServerEntry {
  const out: ServerEntry = { url: e.url, serverId: e.serverId, caPem: e.caPem, caFingerprint: e.caFingerprint };
  for (const f of OPTIONAL) if (e[f] !== undefined) out[f] = e[f];
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

async function syncDir(dir: string): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch {
    // Some platforms and file systems cannot fsync a folder; the rename is still atomic there.
  } finally {
    await handle?.close().catch(() => {});
  }
}
