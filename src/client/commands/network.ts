/**
 * The server as a node of the network, under the Copernicus names: `ping`
 * (is it there, how far), `version` (cpcc's and the server's), and `network`
 * (this server, its peers, their links).
 */
import type { NetworkPeerView } from '../../core/wire.js';
import { packageVersion } from '../../common/version.js';
import { ApiError } from '../api/client.js';
import { ConfigError } from '../config.js';
import { ago, describeError, EXIT_FAILURE, type Column } from '../output.js';
import type { CommandSpec, Context } from './context.js';
import { nodeColumns } from './federation.js';

async function ping(ctx: Context): Promise<void> {
  const { name, entry } = await ctx.server();
  // /info needs no login, so ping works before `cpcc login` and with an expired session.
  const api = ctx.clientFor(entry);
  const started = performance.now();
  const info = await api.info();
  const ms = Math.round((performance.now() - started) * 10) / 10;
  ctx.out.show({ server: name, url: entry.url, serverId: info.serverId, ms }, () =>
    ctx.out.line(`${name} (${entry.url}) answered in ${ms.toFixed(1)} ms: server ${info.serverId}`),
  );
}

async function version(ctx: Context): Promise<number> {
  const cpcc = packageVersion();
  let server: { name: string; url: string; serverId: string; version: string } | null = null;
  let problem: unknown;
  try {
    const { name, entry } = await ctx.server();
    const info = await ctx.clientFor(entry).info();
    server = { name, url: entry.url, serverId: info.serverId, version: info.version };
  } catch (err) {
    // cpcc's own version is worth printing without any server.
    if (!(err instanceof ApiError || err instanceof ConfigError)) throw err;
    problem = err;
  }
  const noServer = problem instanceof ConfigError && (problem.code === 'NO_SERVER' || problem.code === 'UNKNOWN_SERVER');
  ctx.out.show({ cpcc, server, ...(problem ? { error: describeError(problem).line } : {}) }, () => {
    ctx.out.line(`cpcc ${cpcc}`);
    if (server) ctx.out.line(`server ${server.version} (${server.name}, ${server.serverId})`);
  });
  if (problem && !ctx.out.json) ctx.out.note(`cpcc: ${noServer ? '' : 'server version unknown: '}${describeError(problem).line}`);
  // No server configured is not a failure of `version`; one that cannot be asked is.
  return problem && !noServer ? EXIT_FAILURE : 0;
}

async function network(ctx: Context): Promise<void> {
  const { api } = await ctx.client();
  const view = await api.network();
  const now = Date.now();
  const columns: Column<NetworkPeerView>[] = [
    ...nodeColumns(ctx, false),
    { header: 'Last seen', value: (p) => (p.link === 'up' ? 'now' : p.lastSeen === null ? ctx.out.c.dim('never') : ago(p.lastSeen, now)) },
  ];
  ctx.out.show(view, () => {
    const s = view.server;
    ctx.out.line(ctx.out.c.bold('This server'));
    ctx.out.fields([
      ['id', s.serverId],
      ['name', s.name],
      ['host', s.host],
      ['ports', `${s.unsecurePort} (unsecure), ${s.securePort} (secure)`],
      ['version', s.version],
    ]);
    ctx.out.line();
    if (view.peers.length === 0) {
      ctx.out.line(ctx.out.c.dim("no connected nodes; see 'cpcc connect-server HOST'"));
      return;
    }
    ctx.out.line(ctx.out.c.bold('Connected nodes:'));
    ctx.out.table(view.peers, columns);
  });
}

export const networkCommands: CommandSpec[] = [
  { name: 'ping', summary: 'one round trip to the current server (connection included): its time and the server id', run: ping },
  { name: 'version', summary: "cpcc's version and the current server's", run: version },
  { name: 'network', summary: 'this server and its peers: priorities, link states, when each was last seen (super user)', run: network },
];
