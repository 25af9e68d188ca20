import type { IncomingMessage } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { serverIdentityChecker } from './certificates.js';
import type { ServerIdentity } from './identity.js';
import type { Peer, TrustStore } from './trust-store.js';
import { MAX_FRAME_BYTES, PeerLink, type CallHandler, type FrameCounts, type Hello, type Shape } from './link.js';

/**
 * Keeps one link to every trusted peer. Each side dials the peers it has no
 * link to, with capped exponential backoff and jitter, and accepts links
 * dialled by peers; a peer we cannot reach simply keeps failing to dial while
 * its own dial succeeds. When both sides dial at once, both keep the link
 * dialled by the smaller server id, so they settle on the same one.
 */

export const LINK_PATH = '/api/v1/peer/link';

/** The trusted peers: the trust store, seen as the links need it. */
export type PeerDirectory = Pick<TrustStore, 'peers' | 'peer' | 'updateAddress'>;

export interface LinkManagerOptions {
  identity: ServerIdentity;
  directory: PeerDirectory;
  /** The trusted peer a TLS socket's client certificate proves, or null. */
  peerOf: (socket: TLSSocket) => Peer | null;
  /** This server's hello (ports and queued shapes as of now). */
  hello: () => Omit<Hello, 't'>;
  handle: CallHandler;
  /** A peer's announced work changed, or a link came up. */
  onWork: (peerId: string) => void;
  /** A link came up (for delivering what waited for it). */
  onUp?: (peerId: string) => void;
  log: (level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  pingMs?: number;
}

export type LinkState = 'up' | 'connecting' | 'down';

interface Dialing {
  failures: number;
  timer: NodeJS.Timeout | null;
  socket: WebSocket | null;
}

export class LinkManager {
  /** Frames over every link this server has had, since it started. */
  readonly frames: FrameCounts = { sent: 0, received: 0 };
  private readonly links = new Map<string, PeerLink>();
  private readonly dialing = new Map<string, Dialing>();
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  private closed = false;
  private readonly selfId: string;

  constructor(private readonly opts: LinkManagerOptions) {
    this.selfId = opts.identity.serverId;
  }

  /** Accepts peer links on the secure listener's upgrade requests. */
  attach(server: HttpsServer): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.accept(req, socket, head));
  }

  /** Dials every trusted peer without a link. */
  start(): void {
    for (const peer of this.opts.directory.peers()) this.ensure(peer.serverId);
  }

  link(peerId: string): PeerLink | undefined {
    const l = this.links.get(peerId);
    return l?.open && l.hello ? l : undefined;
  }

  state(peerId: string): LinkState {
    if (this.link(peerId)) return 'up';
    return this.dialing.get(peerId)?.socket ? 'connecting' : 'down';
  }

  shapes(peerId: string): Shape[] {
    return this.link(peerId)?.shapes ?? [];
  }

  upCount(): number {
    let n = 0;
    for (const id of this.links.keys()) if (this.link(id)) n++;
    return n;
  }

  /** Tells every peer what this server has queued now. */
  announce(shapes: Shape[]): void {
    for (const l of this.links.values()) l.send({ t: 'work', shapes });
  }

  /** A peer was trusted, or moved: dial it (again) unless a link is up. */
  ensure(peerId: string): void {
    if (this.closed || this.link(peerId) || this.dialing.get(peerId)?.socket) return;
    const d = this.dialing.get(peerId) ?? { failures: 0, timer: null, socket: null };
    this.dialing.set(peerId, d);
    if (d.timer) clearTimeout(d.timer);
    d.timer = null;
    this.dial(peerId, d);
  }

  /** A peer is no longer trusted: cut its link and stop dialling. */
  drop(peerId: string): void {
    const d = this.dialing.get(peerId);
    if (d?.timer) clearTimeout(d.timer);
    d?.socket?.terminate();
    this.dialing.delete(peerId);
    this.links.get(peerId)?.close('peer no longer trusted', true);
    this.links.delete(peerId);
  }

  close(): void {
    this.closed = true;
    for (const id of [...this.dialing.keys(), ...this.links.keys()]) this.drop(id);
    this.wss.close();
  }

  private dial(peerId: string, d: Dialing): void {
    const peer = this.opts.directory.peer(peerId);
    if (!peer || this.closed) return;
    const host = peer.host.includes(':') ? `[${peer.host}]` : peer.host;
    const ws = new WebSocket(`wss://${host}:${peer.securePort}${LINK_PATH}`, {
      cert: this.opts.identity.certPem,
      key: this.opts.identity.keyPem,
      ca: peer.caPem,
      // ws types this as returning boolean; Node's TLS takes an Error or undefined, as the checker returns.
      checkServerIdentity: serverIdentityChecker(peer.serverId) as never,
      maxPayload: MAX_FRAME_BYTES,
      handshakeTimeout: 5000,
    });
    d.socket = ws;
    const retry = (why: string) => {
      if (d.socket !== ws) return;
      d.socket = null;
      if (this.closed || !this.opts.directory.peer(peerId)) return;
      const cap = this.opts.maxBackoffMs ?? 30_000;
      const base = Math.min(cap, (this.opts.minBackoffMs ?? 250) * 2 ** Math.min(d.failures++, 20));
      const wait = base / 2 + Math.random() * (base / 2);
      this.opts.log('debug', 'peer link dial failed; retrying', { peer: peerId, why, inMs: Math.round(wait) });
      d.timer = setTimeout(() => {
        d.timer = null;
        if (!this.link(peerId)) this.dial(peerId, d);
      }, wait);
      d.timer.unref();
    };
    ws.once('open', () => {
      d.socket = null;
      d.failures = 0;
      this.adopt(new PeerLink(ws, peerId, this.selfId, this.opts.handle, this.opts.pingMs, this.frames));
    });
    ws.once('error', (err) => retry(err.message));
    ws.once('close', () => retry('closed'));
  }

  /** Takes an upgrade request (the server routes those for LINK_PATH here when it serves other websockets too). */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path !== LINK_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const peer = this.opts.peerOf(socket as TLSSocket);
    if (!peer || this.closed) {
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.adopt(new PeerLink(ws, peer.serverId, peer.serverId, this.opts.handle, this.opts.pingMs, this.frames));
    });
  }

  /** Takes a new link, settling duplicates, and greets the peer. */
  private adopt(link: PeerLink): void {
    const peerId = link.peerId;
    const existing = this.links.get(peerId);
    if (existing?.open) {
      const preferred = this.selfId < peerId ? this.selfId : peerId;
      if (existing.dialer === preferred) {
        link.close('duplicate link');
        return;
      }
      existing.close('replaced by the preferred link');
    }
    this.links.set(peerId, link);
    link.on('hello', (hello) => {
      if (hello.serverId !== peerId) return link.close('hello from the wrong server');
      this.opts.log('info', 'peer link up', { peer: peerId, name: hello.name, dialledBy: link.dialer === this.selfId ? 'us' : 'them' });
      // A peer that moved tells us its new address here, even if we could not reach it.
      void this.opts.directory
        .updateAddress(peerId, { host: hello.host, unsecurePort: hello.unsecurePort, securePort: hello.securePort })
        .catch(() => {});
      this.opts.onUp?.(peerId);
      this.opts.onWork(peerId);
    });
    link.on('work', () => this.opts.onWork(peerId));
    link.on('close', () => {
      if (this.links.get(peerId) === link) {
        this.links.delete(peerId);
        this.opts.log('info', 'peer link down', { peer: peerId });
        if (!this.closed && this.opts.directory.peer(peerId)) this.ensure(peerId);
      }
    });
    link.send({ t: 'hello', ...this.opts.hello() });
  }
}
