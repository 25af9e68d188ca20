/**
 * Joining a federation from its membership file (members-file.ts): one
 * `connect-server --file` and one `trust --all --from` per server instead of
 * a connect and a trust per pair. Both are safe to run again: servers
 * connected already are left alone, and a request is trusted only when its CA,
 * host and port are the ones listed.
 */
import { ApiError } from '../api/client.js';
import type { Context } from './context.js';
import { readMembers, showDigest, type Member } from './members-file.js';
import { normalizeFingerprint } from './servers.js';

/** Requests in flight at once: enough to join 1 000 servers in minutes, few enough for a small server. */
const CONCURRENCY = 4;

type ConnectState = 'self' | 'connected' | 'requested' | 'sent' | 'failed';

interface ConnectRow {
  host: string;
  port: number;
  name: string;
  state: ConnectState;
  serverId: string | null;
  error: string | null;
}

async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(lanes);
}

/** `cpcc connect-server --file`: a pinned request to every listed server not connected or asked yet. */
export async function connectMembers(ctx: Context, file: string): Promise<number> {
  const { members, digest } = await readMembers(file);
  const { api } = await ctx.client();
  const own = normalizeFingerprint((await api.info()).caFingerprint);
  const view = await api.peers();
  const connected = new Map(view.connected.map((p) => [normalizeFingerprint(p.caFingerprint), p.serverId]));
  const requested = new Map(view.sent.filter((s) => s.caFingerprint).map((s) => [normalizeFingerprint(s.caFingerprint!), s.peerServerId]));
  const rows: ConnectRow[] = members.map((m) => {
    const row = { host: m.host, port: m.port, name: m.name, serverId: null, error: null };
    if (m.caFingerprint === own) return { ...row, state: 'self' };
    const peer = connected.get(m.caFingerprint);
    if (peer) return { ...row, state: 'connected', serverId: peer };
    const asked = requested.get(m.caFingerprint);
    if (asked) return { ...row, state: 'requested', serverId: asked };
    return { ...row, state: 'sent' };
  });
  const todo = rows.map((row, i) => ({ row, member: members[i]! })).filter((t) => t.row.state === 'sent');
  await eachLimited(todo, CONCURRENCY, async ({ row, member }) => {
    try {
      const reply = await api.connectServer(member.host, member.port, member.caFingerprint);
      row.serverId = reply.connected?.serverId ?? reply.sent?.peerServerId ?? null;
      if (reply.connected) row.state = 'connected';
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      row.state = 'failed';
      row.error = `${err.code}: ${err.message}`;
    }
  });
  const failed = rows.filter((r) => r.state === 'failed').length;
  ctx.out.show({ digest, members: rows }, () => {
    ctx.out.line(`Membership file ${file}: ${members.length} servers, digest ${showDigest(digest)}`);
    ctx.out.table(rows, [
      { header: 'Hostname', value: (r) => r.host },
      { header: 'Port', value: (r) => r.port },
      { header: 'Name', value: (r) => r.name, max: 32 },
      { header: 'Server Id', value: (r) => r.serverId ?? '' },
      { header: 'State', value: (r) => stateText(ctx, r) },
    ]);
    if (rows.some((r) => r.state === 'sent')) ctx.out.line('Their admins accept with: cpcc trust --all --from MEMBERS_FILE');
  });
  return failed > 0 ? 1 : 0;
}

function stateText(ctx: Context, r: ConnectRow): string {
  switch (r.state) {
    case 'self':
      return ctx.out.c.dim('this server');
    case 'connected':
      return ctx.out.c.green('connected');
    case 'requested':
      return 'request waiting (sent before)';
    case 'sent':
      return 'request sent';
    case 'failed':
      return ctx.out.c.red(`not sent: ${r.error}`);
  }
}

type LeftReason = 'not listed' | 'address differs from the file' | 'conflicting requests';

/** Why a waiting request may not be trusted by the file, or null when it may. */
function refusal(r: { caFingerprint: string; host: string; unsecurePort: number; conflicts: unknown[] }, byFp: Map<string, Member>): LeftReason | null {
  const m = byFp.get(normalizeFingerprint(r.caFingerprint));
  if (!m) return 'not listed';
  // The CA proves who will answer on the secure port, the address where it is looked for: both must be the listed ones.
  if (m.host !== r.host || m.port !== r.unsecurePort) return 'address differs from the file';
  if (r.conflicts.length > 0) return 'conflicting requests';
  return null;
}

/** `cpcc trust --all --from`: trusts the waiting requests the membership file vouches for, and says why the rest wait. */
export async function trustMembers(ctx: Context, file: string): Promise<number> {
  const { members, digest } = await readMembers(file);
  const byFp = new Map(members.map((m) => [m.caFingerprint, m]));
  const { api } = await ctx.client();
  const { received } = await api.peers();
  const left = received
    .map((r) => ({ serverId: r.serverId, name: r.name, host: r.host, port: r.unsecurePort, caFingerprint: r.caFingerprint, reason: refusal(r, byFp) }))
    .filter((r) => r.reason !== null);
  const chosen = received.filter((r) => refusal(r, byFp) === null);
  const reply = chosen.length > 0 ? await api.trustAllPeers(chosen.map((r) => ({ serverId: r.serverId, caFingerprint: r.caFingerprint }))) : { trusted: [], skipped: [] };
  ctx.out.show({ digest, trusted: reply.trusted, skipped: reply.skipped, left }, () => {
    ctx.out.line(`Membership file ${file}: ${members.length} servers, digest ${showDigest(digest)}`);
    if (reply.trusted.length === 0) ctx.out.line(ctx.out.c.dim('no server was trusted'));
    else {
      ctx.out.line('Following nodes are now trusted:');
      ctx.out.table(reply.trusted, [
        { header: 'Hostname', value: (p) => p.host },
        { header: 'Port', value: (p) => p.unsecurePort },
        { header: 'Server Id', value: (p) => p.serverId },
        { header: 'Name', value: (p) => p.name, max: 32 },
      ]);
    }
    for (const id of reply.skipped) ctx.out.note(`not trusted: the request of ${id} changed since it was read; run the command again`);
    for (const r of left) ctx.out.note(`left waiting (${r.reason}): '${r.name}' ${r.serverId} at ${r.host} ${r.port}, CA ${r.caFingerprint}`);
  });
  return 0;
}
