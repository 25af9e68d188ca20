import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';
import { CpcError, fail, isErrorCode } from '../core/errors.js';
import type { Resources } from '../core/types.js';

/**
 * One websocket between two trusted servers, over mTLS. Whichever side can
 * dial opens it; after that both sides use it the same way, so a server that
 * nobody can reach (behind a firewall or NAT) takes full part by dialling out.
 *
 * Frames are JSON:
 *   hello  {t, serverId, name, host, unsecurePort, securePort, heartbeatIntervalS, leaseS, shapes}
 *   work   {t, shapes}              the resource shapes this server has queued now
 *   req    {t, id, method, params}  a call; answered by exactly one res with the same id
 *   res    {t, id, result} | {t, id, error: {code, message}}
 * Liveness: a ping every `pingMs`; a link that misses two pongs is cut.
 */

export interface Shape {
  resources: Resources;
  count: number;
}

export interface Hello {
  t: 'hello';
  serverId: string;
  name: string;
  host: string;
  unsecurePort: number;
  securePort: number;
  heartbeatIntervalS: number;
  leaseS: number;
  shapes: Shape[];
}

type Frame =
  | Hello
  | { t: 'work'; shapes: Shape[] }
  | { t: 'req'; id: number; method: string; params: unknown }
  | { t: 'res'; id: number; result?: unknown; error?: { code: string; message: string } };

export type CallHandler = (peerId: string, method: string, params: unknown) => Promise<unknown>;

export const MAX_FRAME_BYTES = 32 * 1024 * 1024;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** JSON frames sent and received over links (pings are not frames), for the cost of delegation in /metrics. */
export interface FrameCounts {
  sent: number;
  received: number;
}

export class PeerLink extends EventEmitter<{ hello: [Hello]; work: [Shape[]]; close: [] }> {
  /** What the peer said about itself; set once its hello arrives. */
  hello: Hello | undefined;
  shapes: Shape[] = [];
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private alive = true;
  private readonly pinger: NodeJS.Timeout;

  constructor(
    private readonly ws: WebSocket,
    readonly peerId: string,
    /** The server id of the side that dialled (used to settle duplicate links). */
    readonly dialer: string,
    private readonly handle: CallHandler,
    pingMs = 10_000,
    private readonly counts: FrameCounts = { sent: 0, received: 0 },
  ) {
    super();
    ws.on('message', (data, isBinary) => {
      this.counts.received++;
      if (isBinary) return this.close('binary frame');
      let frame: Frame;
      try {
        frame = JSON.parse(data.toString()) as Frame;
      } catch {
        return this.close('frame is not JSON');
      }
      this.receive(frame);
    });
    ws.on('pong', () => (this.alive = true));
    ws.on('close', () => this.close('closed'));
    ws.on('error', () => this.close('socket error'));
    this.pinger = setInterval(() => {
      if (!this.alive) return this.close('no pong', true);
      this.alive = false;
      ws.ping();
    }, pingMs);
    this.pinger.unref();
  }

  get open(): boolean {
    return !this.closed;
  }

  send(frame: Frame): void {
    if (this.closed) return;
    this.counts.sent++;
    this.ws.send(JSON.stringify(frame));
  }

  /** Calls a method on the peer; rejects with PEER_UNREACHABLE if the link goes or the answer is late. */
  call<T>(method: string, params: unknown, timeoutMs = 10_000): Promise<T> {
    if (this.closed) return Promise.reject(fail('PEER_UNREACHABLE', `the link to ${this.peerId} is down`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(fail('PEER_UNREACHABLE', `${this.peerId} did not answer ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.send({ t: 'req', id, method, params });
    });
  }

  close(why = 'closed', hard = false): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(fail('PEER_UNREACHABLE', `the link to ${this.peerId} went down (${why})`));
    }
    this.pending.clear();
    if (hard) this.ws.terminate();
    else this.ws.close();
    this.emit('close');
  }

  private receive(frame: Frame): void {
    switch (frame?.t) {
      case 'hello':
        this.hello = frame;
        this.shapes = frame.shapes ?? [];
        this.emit('hello', frame);
        return;
      case 'work':
        this.shapes = Array.isArray(frame.shapes) ? frame.shapes : [];
        this.emit('work', this.shapes);
        return;
      case 'req':
        this.handle(this.peerId, frame.method, frame.params).then(
          (result) => this.send({ t: 'res', id: frame.id, result: result ?? null }),
          (err: unknown) => {
            const e = err instanceof CpcError ? err : fail('INTERNAL', 'the peer failed to handle the call');
            this.send({ t: 'res', id: frame.id, error: { code: e.code, message: e.message } });
          },
        );
        return;
      case 'res': {
        const p = this.pending.get(frame.id);
        if (!p) return;
        this.pending.delete(frame.id);
        clearTimeout(p.timer);
        if (frame.error) {
          const code = isErrorCode(frame.error.code) ? frame.error.code : 'INTERNAL';
          p.reject(fail(code, `${this.peerId}: ${frame.error.message}`));
        } else {
          p.resolve(frame.result);
        }
        return;
      }
      default:
        this.close('unknown frame');
    }
  }
}

/** True if any shape fits in `free`. */
export function anyFits(shapes: Shape[], free: Resources): boolean {
  return shapes.some((s) => s.count > 0 && s.resources.cores <= free.cores && s.resources.memoryMb <= free.memoryMb);
}
