/**
 * Which servers this one trusts, and the connection requests on their way to
 * becoming trust, in one small durable document: `<home>/peers.json`, mode 0600.
 *
 *   sent request      this server asked a peer to trust it; kept until the
 *                     peer's answer carries its nonce (or it is withdrawn)
 *   received request  a peer asked this server to trust it; kept until an
 *                     admin trusts or declines it. A later request in the same
 *                     server's name with another CA or address never replaces
 *                     it: it is recorded beside it as a conflict, for the admin
 *                     to see both
 *   peer              a trusted server: its CA, its address, its place in
 *                     the priority list (lower is asked first)
 *
 * Every change is made to the in-memory document synchronously and then
 * written, so two requests racing for the same nonce cannot both win.
 */
import { X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import type { Low } from 'lowdb';
import { fail } from '../core/errors.js';
import { openDocument } from '../persistence/lowdb-adapter.js';

export interface SentRequest {
  /** Where the request went: what the admin gave to `connect-server`. */
  host: string;
  /** The peer's unsecure port. */
  port: number;
  nonce: string;
  peerServerId: string;
  peerName: string;
  /**
   * The CA the admin confirmed for the peer: the only one an answer may carry.
   * Missing only in requests stored before CAs were pinned; those are never completed.
   */
  caFingerprint?: string;
  sentAt: number;
}

/** Where a received request came from and what it asked for, as far as the admin must tell them apart. */
export interface RequestClaim {
  name: string;
  host: string;
  unsecurePort: number;
  securePort: number;
  caFingerprint: string;
  /** The address the request came from (IPv6 by its /64), or 'unknown' in older files. */
  source: string;
  receivedAt: number;
}

export interface ReceivedRequest extends RequestClaim {
  serverId: string;
  caPem: string;
  nonce: string;
  /** Later requests in this server's name with another CA or address; the request itself is the first one. */
  conflicts?: RequestClaim[];
}

export interface PeerAddress {
  host: string;
  unsecurePort: number;
  securePort: number;
}

export interface Peer extends PeerAddress {
  serverId: string;
  name: string;
  caPem: string;
  caFingerprint: string;
  /** Place in the list, 0 first; always 0..n-1 without gaps. */
  priority: number;
  trustedAt: number;
  /**
   * The nonce of the peer's latest connection request that this server
   * trusted: the key under which it answers the peer's status polls.
   */
  requestNonce?: string;
}

export type TrustChangeKind = 'trusted' | 'removed' | 'moved' | 'priority';

export interface TrustChange {
  kind: TrustChangeKind;
  serverId: string;
}

interface TrustDoc {
  sent: SentRequest[];
  received: ReceivedRequest[];
  peers: Peer[];
}

/** Received requests kept at most; strangers must not be able to fill the disk. */
export const MAX_RECEIVED_REQUESTS = 1000;
/**
 * Received requests and conflicts kept from one source address, far below the
 * total, so that one flooding source cannot keep a genuine server out.
 */
export const MAX_RECEIVED_PER_SOURCE = 16;
/** Conflicting claims kept beside one request; enough to see that someone is at it. */
export const MAX_CONFLICTS = 8;

/** The kind of claim a received request is, for telling a re-sent request from a conflicting one. */
function sameClaim(a: RequestClaim, b: RequestClaim): boolean {
  return a.caFingerprint === b.caFingerprint && a.host === b.host && a.unsecurePort === b.unsecurePort && a.securePort === b.securePort;
}

function claimOf(r: RequestClaim): RequestClaim {
  const { name, host, unsecurePort, securePort, caFingerprint, source, receivedAt } = r;
  return { name, host, unsecurePort, securePort, caFingerprint, source, receivedAt };
}

export class TrustStore {
  private readonly events = new EventEmitter();
  private readonly caCache = new Map<string, X509Certificate>();

  private constructor(private readonly db: Low<TrustDoc>) {
    this.normalisePriorities();
  }

  static async open(home: string): Promise<TrustStore> {
    const db = await openDocument<TrustDoc>(join(home, 'peers.json'), { sent: [], received: [], peers: [] }, { mode: 0o600 });
    db.data.sent ??= [];
    db.data.received ??= [];
    for (const r of db.data.received) r.source ??= 'unknown';
    db.data.peers ??= [];
    return new TrustStore(db);
  }

  on(event: 'change', listener: (e: TrustChange) => void): this {
    this.events.on(event, listener);
    return this;
  }

  off(event: 'change', listener: (e: TrustChange) => void): this {
    this.events.off(event, listener);
    return this;
  }

  // ---- trusted peers -----------------------------------------------------------

  /** Trusted peers, lower priority first. */
  peers(): Peer[] {
    return [...this.db.data.peers].sort((a, b) => a.priority - b.priority);
  }

  peer(serverId: string): Peer | undefined {
    return this.db.data.peers.find((p) => p.serverId === serverId);
  }

  isTrusted(serverId: string): boolean {
    return this.peer(serverId) !== undefined;
  }

  trustedCaPems(): string[] {
    return this.peers().map((p) => p.caPem);
  }

  /** The parsed CA of a trusted peer (parsed once, as peer checks run per connection). */
  caCertificate(serverId: string): X509Certificate | undefined {
    const peer = this.peer(serverId);
    if (!peer) return undefined;
    let cert = this.caCache.get(serverId);
    if (!cert || cert.fingerprint256 !== peer.caFingerprint) {
      cert = new X509Certificate(peer.caPem);
      this.caCache.set(serverId, cert);
    }
    return cert;
  }

  /**
   * Trusts a peer, or refreshes one already trusted with the same CA (its
   * priority stays). The peer's requests in either direction are settled by it.
   * With `nonce`, only if it is that of a request sent to this peer: the
   * nonce is used up by the same write, and a second answer finds it gone.
   */
  async trust(peer: Omit<Peer, 'priority' | 'trustedAt'>, opts: { nonce?: string } = {}, now = Date.now()): Promise<Peer> {
    const data = this.db.data;
    if (opts.nonce !== undefined) {
      const sent = data.sent.find((s) => s.nonce === opts.nonce && s.peerServerId === peer.serverId);
      if (!sent) throw fail('BAD_NONCE', 'this server sent no pending request with that nonce to that server');
      if (sent.caFingerprint !== peer.caFingerprint) {
        throw fail('FINGERPRINT_MISMATCH', `the answer carries CA ${peer.caFingerprint}, not the CA pinned for the request (${sent.caFingerprint ?? 'none'})`);
      }
    }
    const old = this.peer(peer.serverId);
    if (old && old.caFingerprint !== peer.caFingerprint) {
      throw fail('PEER_CA_MISMATCH', `server ${peer.serverId} is trusted with another CA (${old.caFingerprint}); disconnect it first`);
    }
    const record: Peer = old
      ? { ...old, ...peer, priority: old.priority, trustedAt: old.trustedAt }
      : { ...peer, priority: data.peers.length, trustedAt: now };
    data.peers = [...data.peers.filter((p) => p.serverId !== peer.serverId), record];
    data.received = data.received.filter((r) => r.serverId !== peer.serverId);
    data.sent = data.sent.filter((s) => s.peerServerId !== peer.serverId);
    await this.db.write();
    if (!old) this.emit('trusted', peer.serverId);
    else if (old.host !== record.host || old.unsecurePort !== record.unsecurePort || old.securePort !== record.securePort) {
      this.emit('moved', peer.serverId);
    }
    return record;
  }

  /** Forgets a trusted peer at once; the others close ranks. */
  async removePeer(serverId: string): Promise<Peer | undefined> {
    const peer = this.peer(serverId);
    if (!peer) return undefined;
    this.db.data.peers = this.db.data.peers.filter((p) => p.serverId !== serverId);
    this.caCache.delete(serverId);
    const shifted = this.normalisePriorities();
    await this.db.write();
    this.emit('removed', serverId);
    for (const id of shifted) this.emit('priority', id);
    return peer;
  }

  /** Records where a trusted peer can be reached now; true if that changed anything. */
  async updateAddress(serverId: string, address: PeerAddress): Promise<boolean> {
    const peer = this.peer(serverId);
    if (!peer) return false;
    if (peer.host === address.host && peer.unsecurePort === address.unsecurePort && peer.securePort === address.securePort) {
      return false;
    }
    peer.host = address.host;
    peer.unsecurePort = address.unsecurePort;
    peer.securePort = address.securePort;
    await this.db.write();
    this.emit('moved', serverId);
    return true;
  }

  /** Remembers the nonce under which a trusted peer's status polls are answered. */
  async setRequestNonce(serverId: string, nonce: string): Promise<void> {
    const peer = this.peer(serverId);
    if (!peer || peer.requestNonce === nonce) return;
    peer.requestNonce = nonce;
    await this.db.write();
  }

  /**
   * Moves a peer to place `priority` (clamped to the list); the peers in
   * between shift by one so the order stays strict. Returns the new list.
   */
  async setPriority(serverId: string, priority: number): Promise<Peer[]> {
    const ordered = this.peers();
    const index = ordered.findIndex((p) => p.serverId === serverId);
    if (index < 0) throw fail('PEER_NOT_FOUND', `no trusted server ${serverId}`);
    const [moved] = ordered.splice(index, 1);
    ordered.splice(Math.max(0, Math.min(priority, ordered.length)), 0, moved!);
    const changed: string[] = [];
    ordered.forEach((p, i) => {
      if (p.priority !== i) {
        p.priority = i;
        changed.push(p.serverId);
      }
    });
    if (changed.length > 0) {
      await this.db.write();
      for (const id of changed) this.emit('priority', id);
    }
    return this.peers();
  }

  // ---- requests this server sent -------------------------------------------------

  sentRequests(): SentRequest[] {
    return [...this.db.data.sent];
  }

  /** Keeps one request per peer: a newer one replaces the nonce of the older. */
  async addSent(request: SentRequest): Promise<void> {
    this.db.data.sent = [...this.db.data.sent.filter((s) => s.peerServerId !== request.peerServerId), request];
    await this.db.write();
  }

  sentByNonce(nonce: string): SentRequest | undefined {
    return this.db.data.sent.find((s) => s.nonce === nonce);
  }

  async removeSent(peerServerId: string): Promise<number> {
    const before = this.db.data.sent.length;
    this.db.data.sent = this.db.data.sent.filter((s) => s.peerServerId !== peerServerId);
    const removed = before - this.db.data.sent.length;
    if (removed > 0) await this.db.write();
    return removed;
  }

  // ---- requests this server received ------------------------------------------------

  receivedRequests(): ReceivedRequest[] {
    return [...this.db.data.received];
  }

  received(serverId: string): ReceivedRequest | undefined {
    return this.db.data.received.find((r) => r.serverId === serverId);
  }

  /**
   * One request per server. The same request sent again (same CA and address)
   * refreshes the nonce; one with another CA or address is kept beside the
   * first as a conflict, never in its place. Returns what became of it.
   */
  async addReceived(request: ReceivedRequest): Promise<'new' | 'refreshed' | 'conflict'> {
    const data = this.db.data;
    const pending = data.received.find((r) => r.serverId === request.serverId);
    if (pending && sameClaim(pending, request)) {
      pending.nonce = request.nonce;
      pending.name = request.name;
      pending.source = request.source;
      await this.db.write();
      return 'refreshed';
    }
    // Seen already: nothing new for the admin, and nothing to write.
    if (pending?.conflicts?.some((c) => sameClaim(c, request))) return 'conflict';
    const fromSource = data.received.reduce(
      (n, r) => n + (r.source === request.source ? 1 : 0) + (r.conflicts ?? []).filter((c) => c.source === request.source).length,
      0,
    );
    if (fromSource >= MAX_RECEIVED_PER_SOURCE) {
      throw fail('TOO_MANY_REQUESTS', `${MAX_RECEIVED_PER_SOURCE} connection requests from ${request.source} are waiting already; ask the admin to trust or decline some`);
    }
    if (pending) {
      if ((pending.conflicts?.length ?? 0) >= MAX_CONFLICTS) {
        throw fail('TOO_MANY_REQUESTS', `${MAX_CONFLICTS} conflicting requests for server ${request.serverId} are waiting already; ask the admin to decline them`);
      }
      pending.conflicts = [...(pending.conflicts ?? []), claimOf(request)];
      await this.db.write();
      return 'conflict';
    }
    if (data.received.length >= MAX_RECEIVED_REQUESTS) {
      throw fail('TOO_MANY_REQUESTS', `${MAX_RECEIVED_REQUESTS} connection requests are waiting already; ask the admin to trust or decline some`);
    }
    data.received = [...data.received, request];
    await this.db.write();
    return 'new';
  }

  async removeReceived(serverId: string): Promise<ReceivedRequest | undefined> {
    const request = this.received(serverId);
    if (!request) return undefined;
    this.db.data.received = this.db.data.received.filter((r) => r !== request);
    await this.db.write();
    return request;
  }

  // ---- inside ---------------------------------------------------------------------

  /** Renumbers 0..n-1 in the current order (a file edited by hand may have gaps); returns whose changed. */
  private normalisePriorities(): string[] {
    const changed: string[] = [];
    this.peers().forEach((p, i) => {
      if (p.priority !== i) {
        p.priority = i;
        changed.push(p.serverId);
      }
    });
    return changed;
  }

  /**
   * Tells every listener, each on its own: the change is on disk already, so
   * one failing listener must neither hide it from the others nor turn the
   * change into an error for whoever made it.
   */
  private emit(kind: TrustChangeKind, serverId: string): void {
    const change: TrustChange = { kind, serverId };
    for (const listener of this.events.listeners('change') as ((e: TrustChange) => void)[]) {
      try {
        listener(change);
      } catch (err) {
        process.emitWarning(`a trust store listener failed on '${kind}' for ${serverId}: ${(err as Error)?.message ?? String(err)}`);
      }
    }
  }
}
