/**
 * What every cpcc command is handed: the global options, the output helper,
 * the config, and API clients for the chosen server. Commands are described as
 * data (`CommandSpec`) so one table feeds commander and the help text.
 */
import { ApiClient } from '../api/client.js';
import {
  ConfigError,
  loadConfig,
  selectServer,
  updateConfig,
  type ClientConfig,
  type SelectedServer,
  type ServerEntry,
} from '../config.js';
import { Output, type TextStream } from '../output.js';

export interface GlobalOptions {
  json: boolean;
  color: boolean;
  server?: string;
  project?: string;
}

export interface Io {
  stdout: TextStream;
  stderr: TextStream;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  env: NodeJS.ProcessEnv;
}

export type Argument = string | string[] | undefined;

export interface OptionSpec {
  /** commander flags, e.g. `--cores <n>`. */
  flags: string;
  description: string;
  /** Turns the text into a value; throw InvalidArgumentError to reject it. */
  parse?: (value: string, previous: unknown) => unknown;
  default?: unknown;
}

export interface CommandSpec {
  name: string;
  aliases?: string[];
  /** commander argument syntax: `<id>`, `[port]`, `<ids...>`. */
  args?: string[];
  summary: string;
  /** Shown under the usage line of `cpcc help NAME`. */
  help?: string;
  options?: OptionSpec[];
  commands?: CommandSpec[];
  /** Returns the exit code; nothing means 0. */
  run?: (ctx: Context, args: Argument[], opts: Record<string, unknown>) => Promise<number | void>;
}

/** How long a command waits on one request before saying TIMEOUT. */
const REQUEST_TIMEOUT_MS = 30_000;

/** Every command and the global options, for commands that describe cpcc itself (completion). */
export interface Catalog {
  commands: () => Promise<readonly CommandSpec[]>;
  globalOptions: readonly OptionSpec[];
}

export class Context {
  readonly out: Output;
  /** Set by cli.ts for the command that runs. */
  catalog?: Catalog;
  private configCache?: ClientConfig;
  private readonly clients: ApiClient[] = [];

  constructor(
    readonly io: Io,
    readonly global: GlobalOptions,
    readonly home: string,
  ) {
    this.out = new Output(io.stdout, io.stderr, { json: global.json, color: global.color, env: io.env });
  }

  /** True when questions can be asked and answered. */
  get interactive(): boolean {
    return this.io.stdin.isTTY === true && this.io.stderr.isTTY === true;
  }

  async config(): Promise<ClientConfig> {
    this.configCache ??= await loadConfig(this.home);
    return this.configCache;
  }

  async update(change: (config: ClientConfig) => void): Promise<ClientConfig> {
    this.configCache = await updateConfig(this.home, change);
    return this.configCache;
  }

  async server(): Promise<SelectedServer> {
    return selectServer(await this.config(), this.global.server);
  }

  /** A client for the chosen server; with `auth`, one that is logged in. */
  async client(opts: { auth?: boolean } = {}): Promise<{ api: ApiClient; server: SelectedServer }> {
    const server = await this.server();
    if (opts.auth !== false && !server.entry.token) {
      throw new ConfigError('NOT_LOGGED_IN', `not logged in to '${server.name}'; run 'cpcc login'`);
    }
    return { api: this.clientFor(server.entry, opts.auth !== false), server };
  }

  clientFor(entry: Pick<ServerEntry, 'url' | 'caPem'> & Partial<ServerEntry>, auth = false): ApiClient {
    const api = new ApiClient({
      url: entry.url,
      caPem: entry.caPem,
      serverId: entry.serverId,
      token: auth ? entry.token : undefined,
      timeoutMs: REQUEST_TIMEOUT_MS,
      transport: 'node',
    });
    this.clients.push(api);
    return api;
  }

  /** The project named on the command line, by `-p`, or the server's current one. */
  async project(explicit?: string): Promise<string> {
    if (explicit) return explicit;
    if (this.global.project) return this.global.project;
    const { name, entry } = await this.server();
    if (entry.project) return entry.project;
    throw new ConfigError('NO_PROJECT', `no current project on '${name}'; run 'cpcc use PROJECT' or 'cpcc start PROJECT'`);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.clients.splice(0).map((c) => c.destroy()));
  }
}
