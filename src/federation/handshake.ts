/**
 * The connect/trust handshake between two servers, and the signed notices
 * that keep trust current afterwards.
 *
 *   requester A                                   peer B
 *   lookup(host, port) ── GET /ca ─────────────────►  {B's id, name, CA}
 *     the admin of A confirms B's CA fingerprint (or gives it): A pins it
 *   connect(host, port, fp) ── POST /connect-request ─►  stored as a received request
 *     {id, name, host, ports, CA, nonce}              (an admin of B sees its fingerprint)
 *   stored as a sent request ◄── {serverId, name} ──
 *                                                   trust(A): A's CA is trusted now
 *   accepted, nonce used up ◄── POST /connect-accept ─ {B's id, name, host, ports, CA, nonce}
 *   (or, when B cannot reach A through a firewall:)
 *   poll ── POST /connect-status {A, nonce} ───────►  {state: pending} | {state: accepted, accept}
 *
 * All of this is plain HTTP: anyone on the path reads the nonce. So the nonce
 * only ties an answer to a request; what A trusts is decided by its admin:
 * A accepts only an answer carrying the nonce of a request it sent and has
 * not used, from the server the request went to, with exactly the CA pinned
 * for that request. B trusts only what its admin saw: a request is never
 * replaced by one naming another CA or address (that is kept beside it as a
 * conflict), and requests are capped per source address and in total. Both
 * sides then talk only over mTLS on their secure ports, each checking the
 * other's certificate against the CA trusted for its id.
 *
 * Disconnect and address changes are told over the unsecure port too, as
 * notices signed with the sender's server key (signed-notice.ts).
 */
import { randomBytes } from 'node:crypto';
import { CpcError, fail } from '../core/errors.js';
import {
  caReplySchema,
  connectRequestReplySchema,
  okReplySchema,
  statusReplySchema,
  type AcceptAnswer,
  type ConnectRequest,
  type ConnectRequestReply,
  type DisconnectNotice,
  type PeerMovedNotice,
  type StatusReply,
  type StatusRequest,
} from './handshake-schemas.js';
import type { ServerIdentity } from './identity.js';
import { checkPeerCa } from './peer-ca.js';
import { ReplayGuard, disconnectText, movedText, signText, verifyNotice } from './signed-notice.js';
import type { Peer, PeerAddress, ReceivedRequest, SentRequest, TrustStore } from './trust-store.js';
import { UnsecureClient, peerRefusalCode } from './unsecure-client.js';

export const DEFAULT_UNSECURE_PORT = 14807;

const SECOND = 1000;
const DAY = 24 * 3600 * SECOND;

export interface HandshakeLog {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface HandshakeOptions {
  identity: ServerIdentity;
  store: TrustStore;
  /** This server's name, as shown to peers. */
  name: string;
  /** The host name peers should use to reach this server. */
  publicHost: string;
  /** The ports actually bound (known only once listening). */
  ports: () => { securePort: number; unsecurePort: number };
  log: HandshakeLog;
  /** Polling of pending sent requests: first delay, the cap, and how long to keep trying. */
  pollFirstMs?: number;
  pollMaxMs?: number;
  pollForMs?: number;
  /** Limit on each call to a peer's unsecure port. */
  peerTimeoutMs?: number;
}

export interface ConnectOutcome {
  /** The request now waiting for the peer's trust; null when the peer trusted us already. */
  sent: SentRequest | null;
  /** The peer, when the handshake completed at once. */
  peer: Peer | null;
}

export interface TrustOutcome {
  peer: Peer;
  /** Whether the requester heard the answer at once (else it finds out by polling). */
  told: boolean;
}

export interface FingerprintExpectation {
  serverId: string;
  caFingerprint: string;
}

/** A server's CA as this server sees it on that server's unsecure port, for an admin to confirm. */
export interface PeerCa {
  serverId: string;
  name: string;
  caFingerprint: string;
}

/**
 * The source address a request is counted under: IPv4 as it is (also when
 * mapped into IPv6), IPv6 by its /64, since one host commonly holds a whole /64.
 */
export function requestSource(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(':')) return address;
  const [head = '', tail = ''] = address.toLowerCase().split('%')[0]!.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::') ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

export function newNonce(): string {
  return randomBytes(32).toString('base64url');
}

/** Fingerprints are compared as bare hex, whatever separators and case they were written with. */
export function sameFingerprint(a: string, b: string): boolean {
  const norm = (fp: string) => fp.replace(/^sha-?256[:=]?/i, '').replace(/[^0-9a-f]/gi, '').toLowerCase();
  return norm(a) === norm(b);
}

export class Handshake {
  private readonly store: TrustStore;
  private readonly identity: ServerIdentity;
  private readonly log: HandshakeLog;
  private readonly client: UnsecureClient;
  private readonly replay = new ReplayGuard();
  /** The newest address notice applied per peer, so an older one captured on the way cannot undo it. */
  private readonly lastMovedAt = new Map<string, number>();
  /** Poll timers of pending sent requests, by nonce. */
  private readonly polls = new Map<string, NodeJS.Timeout>();
  private readonly pollFirstMs: number;
  private readonly pollMaxMs: number;
  private readonly pollForMs: number;
  private closed = false;

  constructor(private readonly opts: HandshakeOptions) {
    this.store = opts.store;
    this.identity = opts.identity;
    this.log = opts.log;
    this.client = new UnsecureClient(opts.peerTimeoutMs);
    this.pollFirstMs = opts.pollFirstMs ?? 2 * SECOND;
    this.pollMaxMs = opts.pollMaxMs ?? 60 * SECOND;
    this.pollForMs = opts.pollForMs ?? 7 * DAY;
  }

  get serverId(): string {
    return this.identity.serverId;
  }

  /** Resumes polling for requests sent before a restart, and tells every peer where this server is now. */
  start(): void {
    for (const sent of this.store.sentRequests()) this.schedulePoll(sent.nonce, this.pollFirstMs);
    void this.announceAddress();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.polls.values()) clearTimeout(timer);
    this.polls.clear();
    await this.client.close();
  }

  // ---- what an admin does ---------------------------------------------------------

  /**
   * The CA the server at host:port shows, its fingerprint computed here. Said
   * over plain HTTP, so it proves nothing by itself: the admin compares the
   * fingerprint with the one that server's admin sees before pinning it.
   */
  async lookup(host: string, port = DEFAULT_UNSECURE_PORT): Promise<PeerCa> {
    const ca = await this.client.get(host, port, '/ca', caReplySchema);
    if (ca.serverId === this.serverId) throw fail('INVALID_STATE', `${host}:${port} is this server itself`);
    const { fingerprint } = checkPeerCa(ca.caPem, ca.serverId);
    return { serverId: ca.serverId, name: ca.name, caFingerprint: fingerprint };
  }

  /**
   * Sends a connection request to the unsecure port of the server at
   * host:port, pinning the CA with fingerprint `caFingerprint`: only an
   * answer with that CA completes it. Nothing is sent when the server there
   * shows another CA.
   */
  async connect(host: string, port: number, caFingerprint: string): Promise<ConnectOutcome> {
    const shown = await this.lookup(host, port);
    if (!sameFingerprint(shown.caFingerprint, caFingerprint)) {
      throw fail('FINGERPRINT_MISMATCH', `${host}:${port} shows CA ${shown.caFingerprint}, not ${caFingerprint}; no request was sent`);
    }
    const pinned = shown.caFingerprint;
    const nonce = newNonce();
    const reply: ConnectRequestReply = await this.client.post(host, port, '/connect-request', this.ownDetails(nonce), connectRequestReplySchema);
    if (reply.serverId !== shown.serverId) {
      throw fail('PEER_BAD_ANSWER', `${host}:${port} showed the CA of server ${shown.serverId} but answers as ${reply.serverId}`);
    }
    if (reply.accept) {
      // The peer trusts us already and answered at once; the nonce is still only in our hands.
      const peer = await this.complete(reply.accept, reply.serverId, nonce, pinned);
      this.log.info('connected to a server that trusted this one already', { serverId: peer.serverId, host, port });
      return { sent: null, peer };
    }
    const sent: SentRequest = { host, port, nonce, peerServerId: reply.serverId, peerName: reply.name, caFingerprint: pinned, sentAt: Date.now() };
    await this.store.addSent(sent);
    this.log.info('connection request sent', { serverId: reply.serverId, host, port, caFingerprint: pinned });
    this.schedulePoll(nonce, this.pollFirstMs);
    return { sent, peer: null };
  }

  /**
   * Trusts the server whose connection request is waiting, then tells it so.
   * With `expectFingerprint`, only if its CA is the one the admin was shown.
   */
  async trust(serverId: string, expectFingerprint?: string): Promise<TrustOutcome> {
    const request = this.store.received(serverId);
    if (!request) {
      throw fail(
        'REQUEST_NOT_FOUND',
        this.store.isTrusted(serverId)
          ? `server ${serverId} is trusted already`
          : `no connection request from server ${serverId}; only a server that asked to connect can be trusted`,
      );
    }
    const conflicts = request.conflicts?.length ?? 0;
    if (expectFingerprint === undefined && conflicts > 0) {
      throw fail(
        'CONFLICTING_REQUESTS',
        `${conflicts} other request${conflicts > 1 ? 's' : ''} claim to be server ${serverId} with another CA or address; ` +
          'trust it only with the fingerprint its admin confirms, or decline them all',
      );
    }
    if (expectFingerprint !== undefined && !sameFingerprint(expectFingerprint, request.caFingerprint)) {
      throw fail('FINGERPRINT_MISMATCH', `the request from ${serverId} carries CA ${request.caFingerprint}, not ${expectFingerprint}`);
    }
    // Valid when it came; it may have expired while it waited.
    checkPeerCa(request.caPem, request.serverId);
    const peer = await this.store.trust({
      serverId: request.serverId,
      name: request.name,
      host: request.host,
      unsecurePort: request.unsecurePort,
      securePort: request.securePort,
      caPem: request.caPem,
      caFingerprint: request.caFingerprint,
      requestNonce: request.nonce,
    });
    this.log.info('trusted server', { serverId, name: request.name, caFingerprint: request.caFingerprint });
    const told = await this.tellAccepted(request);
    return { peer, told };
  }

  /**
   * Trusts every waiting request, or, with `expect`, those listed whose CA is
   * still the one shown. Requests in conflict are left for the admin to trust one by one.
   */
  async trustAll(expect?: FingerprintExpectation[]): Promise<{ trusted: TrustOutcome[]; skipped: string[] }> {
    const trusted: TrustOutcome[] = [];
    const skipped: string[] = [];
    const waiting = this.store.receivedRequests().sort((a, b) => a.receivedAt - b.receivedAt);
    for (const request of waiting) {
      if ((request.conflicts?.length ?? 0) > 0) {
        skipped.push(request.serverId);
        continue;
      }
      let fp: string | undefined;
      if (expect) {
        fp = expect.find((e) => e.serverId === request.serverId)?.caFingerprint;
        if (fp === undefined) continue;
      }
      try {
        trusted.push(await this.trust(request.serverId, fp));
      } catch (err) {
        this.log.warn('connection request not trusted', { serverId: request.serverId, err: (err as Error).message });
        skipped.push(request.serverId);
      }
    }
    return { trusted, skipped };
  }

  /**
   * Ends trust in a peer at once and tells it (best effort). For a server that
   * is not trusted, withdraws or declines the requests between us instead.
   */
  async disconnect(serverId: string): Promise<{ removed: 'peer' | 'requests'; told: boolean }> {
    const peer = await this.store.removePeer(serverId);
    if (!peer) {
      const sent = await this.store.removeSent(serverId);
      const received = await this.store.removeReceived(serverId);
      if (sent === 0 && !received) throw fail('PEER_NOT_FOUND', `no trusted server and no connection request with id ${serverId}`);
      for (const [nonce] of this.polls) if (!this.store.sentByNonce(nonce)) this.stopPoll(nonce);
      this.log.info('connection requests withdrawn', { serverId });
      return { removed: 'requests', told: false };
    }
    this.log.info('server no longer trusted', { serverId, name: peer.name });
    const at = Date.now();
    const notice: DisconnectNotice = {
      from: this.serverId,
      to: serverId,
      at,
      certPem: this.identity.certPem,
      signature: signText(disconnectText(this.serverId, serverId, at), this.identity.keyPem),
    };
    let told = false;
    try {
      await this.client.post(peer.host, peer.unsecurePort, '/disconnect', notice, okReplySchema);
      told = true;
    } catch (err) {
      this.log.warn('could not tell a peer it is no longer trusted', { serverId, err: (err as Error).message });
    }
    return { removed: 'peer', told };
  }

  /** Tells every trusted peer this server's current address; resolves with who heard it. */
  async announceAddress(): Promise<Record<string, boolean>> {
    const address = this.ownAddress();
    const at = Date.now();
    const proof = {
      at,
      certPem: this.identity.certPem,
      signature: signText(movedText(this.serverId, address, at), this.identity.keyPem),
    };
    const notice: PeerMovedNotice = { from: this.serverId, ...address, ...proof };
    const heard: Record<string, boolean> = {};
    await Promise.all(
      this.store.peers().map(async (peer) => {
        try {
          await this.client.post(peer.host, peer.unsecurePort, '/peer-moved', notice, okReplySchema);
          heard[peer.serverId] = true;
        } catch (err) {
          // A peer that is down learns the address from the peer link's hello later.
          heard[peer.serverId] = false;
          this.log.debug('could not tell a peer this server\'s address', { serverId: peer.serverId, err: (err as Error).message });
        }
      }),
    );
    return heard;
  }

  // ---- what peers ask on the unsecure port ---------------------------------------------

  /** POST /connect-request: a server asks to be trusted; `source` is the address it came from. */
  async onConnectRequest(req: ConnectRequest, source = 'unknown'): Promise<ConnectRequestReply> {
    if (req.serverId === this.serverId) throw fail('INVALID_STATE', 'that request carries the id of this server itself');
    const { fingerprint } = checkPeerCa(req.caPem, req.serverId);
    const me = { serverId: this.serverId, name: this.opts.name };
    const trusted = this.store.peer(req.serverId);
    if (trusted) {
      if (!sameFingerprint(trusted.caFingerprint, fingerprint)) {
        throw fail('PEER_CA_MISMATCH', `server ${req.serverId} is trusted here with another CA; its admin must disconnect it first`);
      }
      // Asking again proves nothing new about the CA, so the answer can go at once.
      // The address is not taken from it: anyone can send a trusted peer's
      // public CA; addresses change only by signed notices and the peer link.
      await this.store.setRequestNonce(req.serverId, req.nonce);
      this.log.info('connection request from a server trusted already', { serverId: req.serverId });
      return { ...me, accept: this.ownDetails(req.nonce) };
    }
    const request: ReceivedRequest = {
      serverId: req.serverId,
      name: req.name,
      host: req.host,
      unsecurePort: req.unsecurePort,
      securePort: req.securePort,
      caPem: req.caPem,
      caFingerprint: fingerprint,
      nonce: req.nonce,
      source,
      receivedAt: Date.now(),
    };
    const fate = await this.store.addReceived(request);
    if (fate === 'conflict') {
      this.log.warn('connection request conflicts with the one waiting; kept both for the admin', {
        serverId: req.serverId,
        host: req.host,
        caFingerprint: fingerprint,
        source,
      });
    } else {
      this.log.info('connection request received', { serverId: req.serverId, name: req.name, host: req.host, caFingerprint: fingerprint, source });
    }
    return me;
  }

  /** POST /connect-accept: the answer to a request this server sent. */
  async onAccept(answer: AcceptAnswer): Promise<Peer> {
    const sent = this.store.sentByNonce(answer.nonce);
    if (!sent) throw fail('BAD_NONCE', 'this server sent no pending request with that nonce');
    const peer = await this.complete(answer, sent.peerServerId, answer.nonce, sent.caFingerprint, true);
    this.log.info('connection request accepted', { serverId: peer.serverId, name: peer.name, caFingerprint: peer.caFingerprint });
    return peer;
  }

  /** POST /connect-status: a requester asks whether its request was trusted yet. */
  onStatus(req: StatusRequest): StatusReply {
    const peer = this.store.peer(req.serverId);
    if (peer && peer.requestNonce === req.nonce) return { state: 'accepted', accept: this.ownDetails(req.nonce) };
    const request = this.store.received(req.serverId);
    if (request && request.nonce === req.nonce) return { state: 'pending' };
    throw fail('REQUEST_NOT_FOUND', 'no connection request with that server id and nonce');
  }

  /** POST /disconnect: a peer no longer trusts this server, so this server drops it too. */
  async onDisconnect(notice: DisconnectNotice): Promise<void> {
    if (notice.to !== this.serverId) throw fail('INVALID_FIELD', `the notice is for server ${notice.to}, not this one`);
    verifyNotice(this.store, notice.from, disconnectText(notice.from, notice.to, notice.at), notice);
    if (!this.replay.use(notice.signature, Date.now())) throw fail('BAD_SIGNATURE', 'that notice was used already');
    await this.store.removePeer(notice.from);
    this.log.info('a peer ended trust; dropped it', { serverId: notice.from });
  }

  /** POST /peer-moved: a peer tells its current address; true if that changed it. */
  async onPeerMoved(notice: PeerMovedNotice): Promise<boolean> {
    const address: PeerAddress = { host: notice.host, unsecurePort: notice.unsecurePort, securePort: notice.securePort };
    verifyNotice(this.store, notice.from, movedText(notice.from, address, notice.at), notice);
    if (!this.replay.use(notice.signature, Date.now())) throw fail('BAD_SIGNATURE', 'that notice was used already');
    if ((this.lastMovedAt.get(notice.from) ?? -Infinity) >= notice.at) return false;
    this.lastMovedAt.set(notice.from, notice.at);
    const changed = await this.store.updateAddress(notice.from, address);
    if (changed) this.log.info('a peer moved', { serverId: notice.from, ...address });
    return changed;
  }

  // ---- inside ----------------------------------------------------------------------------

  private ownAddress(): PeerAddress {
    const { securePort, unsecurePort } = this.opts.ports();
    return { host: this.opts.publicHost, unsecurePort, securePort };
  }

  /** What this server says about itself in a request or an answer. */
  private ownDetails(nonce: string): AcceptAnswer {
    return { serverId: this.serverId, name: this.opts.name, ...this.ownAddress(), caPem: this.identity.caCertPem, nonce };
  }

  /**
   * Trusts the answering server if the answer is for `expectedPeer` and
   * carries the CA `pinned` for the request. With `fromStore`, the nonce must
   * be that of a stored sent request, which is used up by the same write that
   * stores the trust.
   */
  private async complete(answer: AcceptAnswer, expectedPeer: string, nonce: string, pinned: string | undefined, fromStore = false): Promise<Peer> {
    if (answer.nonce !== nonce) throw fail('BAD_NONCE', 'the answer carries another nonce than the request');
    if (answer.serverId !== expectedPeer) {
      throw fail('BAD_NONCE', `that nonce was sent to server ${expectedPeer}, but the answer comes from ${answer.serverId}`);
    }
    const { fingerprint } = checkPeerCa(answer.caPem, answer.serverId);
    if (pinned === undefined) {
      throw fail('FINGERPRINT_MISMATCH', `the request to ${expectedPeer} pinned no CA; send it again with cpcc connect-server`);
    }
    if (!sameFingerprint(fingerprint, pinned)) {
      throw fail('FINGERPRINT_MISMATCH', `the answer carries CA ${fingerprint}, not the CA pinned for the request (${pinned})`);
    }
    const peer = await this.store.trust(
      {
        serverId: answer.serverId,
        name: answer.name,
        host: answer.host,
        unsecurePort: answer.unsecurePort,
        securePort: answer.securePort,
        caPem: answer.caPem,
        caFingerprint: fingerprint,
      },
      fromStore ? { nonce } : {},
    );
    this.stopPoll(nonce);
    return peer;
  }

  private async tellAccepted(request: ReceivedRequest): Promise<boolean> {
    try {
      await this.client.post(request.host, request.unsecurePort, '/connect-accept', this.ownDetails(request.nonce), okReplySchema);
      return true;
    } catch (err) {
      // Behind a firewall, the requester learns it by polling /connect-status.
      this.log.info('could not deliver the answer; the requester will ask for it', { serverId: request.serverId, err: (err as Error).message });
      return false;
    }
  }

  private schedulePoll(nonce: string, delayMs: number): void {
    if (this.closed) return;
    this.stopPoll(nonce);
    const timer = setTimeout(() => void this.poll(nonce, delayMs), delayMs);
    timer.unref();
    this.polls.set(nonce, timer);
  }

  private stopPoll(nonce: string): void {
    const timer = this.polls.get(nonce);
    if (timer) clearTimeout(timer);
    this.polls.delete(nonce);
  }

  private async poll(nonce: string, delayMs: number): Promise<void> {
    this.polls.delete(nonce);
    const sent = this.store.sentByNonce(nonce);
    if (!sent || this.closed) return;
    if (Date.now() - sent.sentAt > this.pollForMs) {
      await this.store.removeSent(sent.peerServerId).catch(() => 0);
      this.log.warn('connection request was not trusted in time; given up', { serverId: sent.peerServerId, host: sent.host });
      return;
    }
    try {
      const reply = await this.client.post(sent.host, sent.port, '/connect-status', { serverId: this.serverId, nonce }, statusReplySchema);
      if (reply.state === 'accepted') {
        const peer = await this.complete(reply.accept, sent.peerServerId, nonce, sent.caFingerprint, true);
        this.log.info('connection request accepted (asked for the answer)', { serverId: peer.serverId, name: peer.name });
        return;
      }
    } catch (err) {
      if (this.closed || !this.store.sentByNonce(nonce)) return;
      if (err instanceof CpcError && err.code === 'FINGERPRINT_MISMATCH') {
        // Someone on the path answered in the peer's name; the genuine answer may still come.
        this.log.warn('refused a status answer with another CA than the pinned one', { serverId: sent.peerServerId, err: err.message });
      } else {
        const level = peerRefusalCode(err) === 'REQUEST_NOT_FOUND' ? 'info' : 'debug';
        this.log[level]('connection request status unknown; asking again later', { serverId: sent.peerServerId, err: (err as Error).message });
      }
    }
    if (this.store.sentByNonce(nonce)) this.schedulePoll(nonce, Math.min(this.pollMaxMs, delayMs * 2));
  }
}
