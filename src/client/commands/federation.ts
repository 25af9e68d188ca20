/**
 * Federation: connecting this server to peer servers (connect-server, then
 * trust on the other side), listing requests and connected nodes, the order
 * in which peers are asked for work, and disconnecting. Super user commands.
 * Tables and words follow the Copernicus manual.
 */
import type { PeerView, ReceivedRequestView, SentRequestView, TrustReply } from '../../core/wire.js';
import { CliError, EXIT_USAGE, fail, usage, type Column } from '../output.js';
import type { Argument, CommandSpec, Context } from './context.js';
import { port, serverIdArg } from './parsers.js';
import { confirm } from './prompt.js';
import { DEFAULT_UNSECURE_PORT, normalizeFingerprint } from './servers.js';
import { connectMembers, trustMembers } from './federation-file.js';

function portArgument(value: string): number {
  try {
    return port(value);
  } catch (err) {
    return usage(`PORT ${(err as Error).message}, got '${value}'`);
  }
}

const sentColumns: Column<SentRequestView>[] = [
  { header: 'Hostname', value: (s) => s.host },
  { header: 'Port', value: (s) => s.port },
  { header: 'Server Id', value: (s) => s.peerServerId },
  { header: 'Name', value: (s) => s.peerName, max: 32 },
  { header: 'Pinned CA fingerprint (SHA-256)', value: (s) => s.caFingerprint ?? 'none: cannot complete; connect again' },
];

const receivedColumns: Column<ReceivedRequestView>[] = [
  { header: 'Hostname', value: (r) => r.host },
  { header: 'Port', value: (r) => r.unsecurePort },
  { header: 'Server Id', value: (r) => r.serverId },
  { header: 'Name', value: (r) => r.name, max: 32 },
  { header: 'CA fingerprint (SHA-256)', value: (r) => r.caFingerprint },
];

/** The columns of a table of connected nodes (also `cpcc network`'s). */
export function nodeColumns(ctx: Context, withFingerprint: boolean): Column<PeerView>[] {
  const link = (p: PeerView) =>
    p.link === 'up' ? ctx.out.c.green('up') : p.link === 'connecting' ? ctx.out.c.yellow('connecting') : ctx.out.c.red('down');
  return [
    { header: 'Priority', value: (p) => p.priority, align: 'right' },
    { header: 'Hostname', value: (p) => p.host },
    { header: 'Port', value: (p) => p.unsecurePort },
    { header: 'Secure port', value: (p) => p.securePort },
    { header: 'Server Id', value: (p) => p.serverId },
    { header: 'Name', value: (p) => p.name, max: 32 },
    ...(withFingerprint ? [{ header: 'CA fingerprint (SHA-256)', value: (p: PeerView) => p.caFingerprint }] : []),
    { header: 'Link', value: link },
  ];
}

/**
 * The peer's CA is pinned before anything is sent: the connect request and its
 * answers travel over plain HTTP, so the fingerprint the admin confirms is what
 * stops someone on the path from answering in the peer's name.
 */
async function connectServer(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<number | void> {
  if (opts.file !== undefined) {
    if (args[0] !== undefined || opts.fingerprint !== undefined) usage('--file goes alone: the file gives each host, port and fingerprint');
    return connectMembers(ctx, String(opts.file));
  }
  if (args[0] === undefined) usage('give HOST, or --file with the federation\'s membership file');
  const host = String(args[0]);
  const peerPort = args[1] === undefined ? DEFAULT_UNSECURE_PORT : portArgument(String(args[1]));
  const expected = opts.fingerprint as string | undefined;
  if (expected !== undefined && normalizeFingerprint(expected).length !== 64) {
    usage(`--fingerprint must be a SHA-256 fingerprint (64 hex digits), got '${expected}'`);
  }
  const { api } = await ctx.client();
  let pinned = expected;
  if (pinned === undefined) {
    // Looked up by the server, from where it will connect (an ssh tunnel's localhost is the server's).
    const seen = await api.peerCa(host, peerPort);
    if (opts.yes !== true) {
      if (!ctx.interactive) {
        throw new CliError(
          `cannot ask to confirm the CA fingerprint ${seen.caFingerprint} of ${host} ${peerPort} without a terminal; pass --fingerprint FP or --yes`,
          EXIT_USAGE,
        );
      }
      ctx.out.note(`Server ${seen.name ? `'${seen.name}' ` : ''}${seen.serverId} at ${host} ${peerPort}`);
      ctx.out.note(`CA fingerprint (SHA-256): ${seen.caFingerprint}`);
      ctx.out.note("Compare it with the fingerprint that server's admin sees (cpcc server-info there).");
      if (!(await confirm(ctx.io, 'Send a connection request to this server?'))) fail('no request sent');
    }
    pinned = seen.caFingerprint;
  }
  const reply = await api.connectServer(host, peerPort, pinned);
  ctx.out.show(reply, () => {
    if (reply.connected) {
      ctx.out.line(`Connected to ${host} ${peerPort}: it trusted this server already`);
      ctx.out.table([reply.connected], nodeColumns(ctx, true));
      return;
    }
    ctx.out.line(`Connection request sent to ${host} ${peerPort}`);
    ctx.out.line(`Only an answer with its CA ${reply.sent?.caFingerprint ?? pinned} will be trusted.`);
    ctx.out.line(`Its admin accepts it with: cpcc trust ${reply.serverId}`);
    ctx.out.line(`after checking this server's CA fingerprint: ${reply.caFingerprint}`);
  });
}

async function connectedServers(ctx: Context): Promise<void> {
  const { api } = await ctx.client();
  const view = await api.peers();
  ctx.out.show(view, () => {
    const sections: (() => void)[] = [];
    if (view.sent.length > 0) {
      sections.push(() => {
        ctx.out.line(ctx.out.c.bold('Sent connection requests'));
        ctx.out.table(view.sent, sentColumns);
      });
    }
    if (view.received.length > 0) {
      sections.push(() => {
        ctx.out.line(ctx.out.c.bold('Received connection requests'));
        ctx.out.table(view.received, receivedColumns);
        for (const r of view.received) showConflicts(ctx, r, (line) => ctx.out.line(line));
      });
    }
    if (view.connected.length > 0) {
      sections.push(() => {
        ctx.out.line(ctx.out.c.bold('Connected nodes:'));
        ctx.out.table(view.connected, nodeColumns(ctx, true));
      });
    }
    if (sections.length === 0) {
      ctx.out.line(ctx.out.c.dim("no connection requests and no connected nodes; see 'cpcc connect-server HOST'"));
    }
    sections.forEach((show, i) => {
      if (i > 0) ctx.out.line();
      show();
    });
  });
}

/** Other requests in the same server's name, each with what tells it apart; nothing when there are none. */
function showConflicts(ctx: Context, r: ReceivedRequestView, print: (line: string) => void): void {
  const n = r.conflicts.length;
  if (n === 0) return;
  print(ctx.out.c.red(`! ${n} other request${n > 1 ? 's claim' : ' claims'} to be ${r.serverId}; only the first (above, from ${r.source}) is kept:`));
  for (const c of r.conflicts) {
    print(ctx.out.c.red(`!   '${c.name}' at ${c.host} ${c.unsecurePort} (secure ${c.securePort}) from ${c.source}, CA ${c.caFingerprint}`));
  }
}

/** Shows what is about to be trusted, and asks on a terminal unless told not to. */
async function confirmTrust(ctx: Context, requests: ReceivedRequestView[], opts: Record<string, unknown>): Promise<void> {
  for (const r of requests) {
    ctx.out.note(`Server '${r.name}' ${r.serverId} at ${r.host} ${r.unsecurePort} asks to connect.`);
    ctx.out.note(`  CA fingerprint (SHA-256): ${r.caFingerprint}`);
    showConflicts(ctx, r, (line) => ctx.out.note(line));
  }
  if (opts.fingerprint !== undefined) return;
  if (opts.yes === true) {
    const disputed = requests.length === 1 ? requests[0]! : undefined;
    if (disputed && disputed.conflicts.length > 0) {
      fail(
        `other requests claim to be ${disputed.serverId}: trust it with --fingerprint as its admin confirms it, or decline them all with 'cpcc disconnect ${disputed.serverId}'`,
        1,
        'CONFLICTING_REQUESTS',
      );
    }
    return;
  }
  if (!ctx.interactive) {
    throw new CliError('cannot ask to confirm the fingerprints without a terminal; pass --yes (or --fingerprint FP)', EXIT_USAGE);
  }
  ctx.out.note("Compare with the fingerprint the other server's admin sees (cpcc connect-server prints it).");
  const question = requests.length === 1 ? 'Trust this server?' : `Trust these ${requests.length} servers?`;
  if (!(await confirm(ctx.io, question))) fail('not trusted; nothing changed');
}

/** `disputed`: requests --all left waiting on purpose (said already), not ones that changed. */
function showTrusted(ctx: Context, reply: TrustReply, disputed: string[] = []): void {
  ctx.out.show(reply, () => {
    if (reply.trusted.length === 0) {
      ctx.out.line(ctx.out.c.dim('no server was trusted'));
    } else {
      ctx.out.line('Following nodes are now trusted:');
      ctx.out.table(reply.trusted, [
        { header: 'Hostname', value: (p) => p.host },
        { header: 'Port', value: (p) => p.unsecurePort },
        { header: 'Server Id', value: (p) => p.serverId },
        { header: 'Name', value: (p) => p.name, max: 32 },
      ]);
    }
    for (const p of reply.trusted) {
      if (!p.told) ctx.out.note(`${p.host} ${p.unsecurePort} could not be reached now; server ${p.serverId} will ask for the answer itself`);
    }
    for (const id of reply.skipped) {
      if (!disputed.includes(id)) ctx.out.note(`not trusted: the request of ${id} changed since it was shown; run the command again`);
    }
  });
}

async function trust(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<number | void> {
  const id = args[0] === undefined ? undefined : serverIdArg(String(args[0]));
  const all = opts.all === true;
  const expected = opts.fingerprint as string | undefined;
  if (all === (id !== undefined)) usage('give either SERVER_ID or --all');
  if (all && expected !== undefined) usage('--fingerprint goes with one SERVER_ID, not with --all');
  if (opts.from !== undefined) {
    if (!all) usage('--from goes with --all');
    return trustMembers(ctx, String(opts.from));
  }
  const { api } = await ctx.client();
  const { received } = await api.peers();

  if (all) {
    if (received.length === 0) {
      ctx.out.show({ trusted: [], skipped: [] }, () => ctx.out.line(ctx.out.c.dim('no connection requests are waiting')));
      return;
    }
    // Requests in conflict are for the admin to settle one by one; --all leaves them.
    const clear = received.filter((r) => r.conflicts.length === 0);
    const disputed = received.filter((r) => r.conflicts.length > 0);
    for (const r of disputed) ctx.out.note(`Left waiting (other requests claim to be it; trust it alone): '${r.name}' ${r.serverId}`);
    if (clear.length > 0) await confirmTrust(ctx, clear, opts);
    const reply: TrustReply =
      clear.length > 0
        ? await api.trustAllPeers(clear.map((r) => ({ serverId: r.serverId, caFingerprint: r.caFingerprint })))
        : { trusted: [], skipped: [] };
    const left = disputed.map((r) => r.serverId);
    showTrusted(ctx, { trusted: reply.trusted, skipped: [...reply.skipped, ...left] }, left);
    return;
  }

  const request = received.find((r) => r.serverId === id);
  if (!request) fail(`no connection request from server ${id}; see 'cpcc connected-servers'`, 1, 'REQUEST_NOT_FOUND');
  if (expected !== undefined && normalizeFingerprint(expected) !== normalizeFingerprint(request.caFingerprint)) {
    const later = request.conflicts.some((c) => normalizeFingerprint(c.caFingerprint) === normalizeFingerprint(expected));
    fail(
      `fingerprint mismatch: the request carries CA ${request.caFingerprint}, expected ${expected}` +
        (later ? `; that CA came in a later, conflicting request: decline them all with 'cpcc disconnect ${request.serverId}' and ask its admin to connect again` : '') +
        '; nothing changed',
      1,
      'FINGERPRINT_MISMATCH',
    );
  }
  await confirmTrust(ctx, [request], opts);
  showTrusted(ctx, await api.trustPeer(request.serverId, request.caFingerprint));
}

function showNodes(ctx: Context, nodes: PeerView[]): void {
  ctx.out.list({ nodes }, nodes, nodeColumns(ctx, false), "no connected nodes; see 'cpcc connect-server HOST'");
}

async function listNodes(ctx: Context): Promise<void> {
  const { api } = await ctx.client();
  showNodes(ctx, (await api.peers()).connected);
}

async function nodePriority(ctx: Context, args: Argument[]): Promise<void> {
  const id = serverIdArg(String(args[0]));
  const text = String(args[1]);
  const priority = Number(text);
  if (text.trim() === '' || !Number.isInteger(priority) || priority < 0) usage(`PRIORITY must be a whole number from 0, got '${text}'`);
  const { api } = await ctx.client();
  const { connected } = await api.setPeerPriority(id, priority);
  showNodes(ctx, connected);
}

async function disconnect(ctx: Context, args: Argument[]): Promise<void> {
  const id = serverIdArg(String(args[0]));
  const { api } = await ctx.client();
  const reply = await api.disconnectPeer(id);
  ctx.out.show(reply, () => {
    if (reply.removed === 'requests') {
      ctx.out.line(`Connection requests between this server and ${id} withdrawn`);
    } else {
      ctx.out.line(`Disconnected from server ${id}; it is no longer trusted`);
      if (!reply.told) ctx.out.note('it could not be told now; its connections are refused all the same');
    }
  });
}

export const federationCommands: CommandSpec[] = [
  {
    name: 'connect-server',
    args: ['[host]', '[port]'],
    summary: `send a connection request to another server (PORT: its unsecure port, default ${DEFAULT_UNSECURE_PORT})`,
    help:
      "Shows the other server's CA fingerprint and, on a terminal, asks to confirm it; only an answer with that CA is trusted. " +
      'The other server lists the request; its admin accepts it with cpcc trust SERVER_ID. ' +
      'With --file, sends a request to every server in a federation membership file (lines: HOST [PORT] FINGERPRINT [NAME]) ' +
      'not connected yet, pinning the CA listed for it.',
    options: [
      { flags: '--fingerprint <fp>', description: "pin this SHA-256 fingerprint of the other server's CA (as its admin gave it)" },
      { flags: '-y, --yes', description: 'pin the CA the server shows now, without asking' },
      { flags: '--file <members>', description: 'connect to every server listed in this membership file' },
    ],
    run: connectServer,
  },
  {
    name: 'connected-servers',
    aliases: ['cs'],
    summary: 'sent and received connection requests, and the connected nodes',
    run: connectedServers,
  },
  {
    name: 'trust',
    args: ['[server_id]'],
    summary: 'trust a server that sent a connection request (see connected-servers)',
    help: 'Shows the CA fingerprint of each server first and, on a terminal, asks before trusting.',
    options: [
      { flags: '--all', description: 'trust every waiting connection request not in conflict (lists them and asks)' },
      { flags: '-y, --yes', description: 'do not ask' },
      { flags: '--fingerprint <fp>', description: "trust only if the server's CA has this SHA-256 fingerprint" },
      { flags: '--from <members>', description: 'with --all: trust only requests whose CA, host and port a membership file lists (no question asked)' },
    ],
    run: trust,
  },
  { name: 'list-nodes', summary: 'the connected nodes in priority order (lower is asked for work first)', run: listNodes },
  {
    name: 'node-pri',
    aliases: ['set-pri', 'change-node-priority'],
    args: ['<server_id>', '<priority>'],
    summary: 'move a connected node to a place in the priority list (0 first); the others shift',
    run: nodePriority,
  },
  {
    name: 'disconnect',
    args: ['<server_id>'],
    summary: 'stop trusting a connected node and tell it, or withdraw a connection request',
    run: disconnect,
  },
];
