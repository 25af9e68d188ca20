import { EventEmitter } from 'node:events';
import type { PeerCertificate } from 'node:tls';
import { WebSocket } from 'ws';
import {
  EVENTS_PATH,
  EVENTS_PROTOCOL,
  EVENTS_TOKEN_PROTOCOL,
  type StreamEvent,
  type StreamHello,
  type StreamMessage,
  type StreamPeers,
  type StreamReady,
  type StreamReset,
} from '../../core/wire.js';
import { ApiError, serverIdOfPeer } from './client.js';

/**
 * A client of the server's event stream that stays connected: it reconnects
 * with capped exponential backoff and resumes from the last position it saw,
 * so its listeners get every event exactly once, or a `reset` when the server
 * could not resume (then they reload what they show).
 *
 * Like ApiClient, it pins the server's CA and checks the server id in the
 * certificate instead of the host name.
 */

export interface EventStreamOptions {
  /** https://host:port of the secure port. */
  url: string;
  caPem?: string;
  serverId?: string;
  token: string;
  /** Only this project's jobs, leases and counts. */
  project?: string;
  /** Resume from here instead of starting from now. */
  cursor?: number;
  /** Send the token as a websocket subprotocol instead of in the hello. */
  tokenInProtocol?: boolean;
  reconnect?: boolean;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Close codes after which trying again cannot help. */
const FATAL = new Map<number, string>([
  [4400, 'BAD_REQUEST'],
  [4401, 'UNAUTHENTICATED'],
  [4403, 'FORBIDDEN'],
  [4404, 'PROJECT_NOT_FOUND'],
]);

export interface EventStreamEvents {
  message: [StreamMessage];
  event: [StreamEvent];
  ready: [StreamReady];
  reset: [StreamReset];
  peers: [StreamPeers];
  /** The connection went down (and will be tried again unless closed). */
  down: [string];
  /** The server refused the stream for good (bad token, no such project). */
  fatal: [ApiError];
}

export class EventStream extends EventEmitter<EventStreamEvents> {
  /** The position of the last event seen; sent as the cursor when reconnecting. */
  cursor: number | undefined;
  private ws: WebSocket | null = null;
  private closed = false;
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  private lastError: ApiError | null = null;

  constructor(private readonly opts: EventStreamOptions) {
    super();
    this.cursor = opts.cursor;
  }

  get connected(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  start(): this {
    this.connect();
    return this;
  }

  /** Resolves with the first `ready` or `reset`; rejects if the server refuses the stream. */
  opened(timeoutMs = 10_000): Promise<StreamReady | StreamReset> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.off('ready', onReady);
        this.off('reset', onReady);
        this.off('fatal', onFatal);
      };
      const onReady = (m: StreamReady | StreamReset) => {
        done();
        resolve(m);
      };
      const onFatal = (e: ApiError) => {
        done();
        reject(e);
      };
      const timer = setTimeout(() => {
        done();
        reject(this.lastError ?? new ApiError('TIMEOUT', `the event stream at ${this.opts.url} did not open in time`));
      }, timeoutMs);
      this.on('ready', onReady);
      this.on('reset', onReady);
      this.on('fatal', onFatal);
    });
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.ws?.close(1000);
    this.ws = null;
  }

  /** Drops the connection as a network failure would (tests, and a user's "reconnect"). */
  drop(): void {
    this.ws?.terminate();
  }

  private connect(): void {
    if (this.closed) return;
    const url = this.opts.url.replace(/^http/, 'ws').replace(/\/+$/, '') + EVENTS_PATH;
    const serverId = this.opts.serverId?.toLowerCase();
    const protocols = [EVENTS_PROTOCOL];
    if (this.opts.tokenInProtocol) protocols.push(EVENTS_TOKEN_PROTOCOL + this.opts.token);
    const ws = new WebSocket(url, protocols, {
      ca: this.opts.caPem,
      // The certificate names the server id, not a host (see client.ts).
      checkServerIdentity: ((_host: string, cert: PeerCertificate) => {
        if (!serverId) return undefined;
        const got = serverIdOfPeer(cert);
        return got === serverId ? undefined : new ApiError('WRONG_SERVER', `the server's certificate is for server ${got ?? '(none)'}, not ${serverId}`);
      }) as never,
      handshakeTimeout: 10_000,
      maxPayload: 256 * 1024 * 1024,
    });
    this.ws = ws;
    ws.on('open', () => {
      const hello: StreamHello = { type: 'hello' };
      if (!this.opts.tokenInProtocol) hello.token = this.opts.token;
      if (this.cursor !== undefined) hello.cursor = this.cursor;
      if (this.opts.project !== undefined) hello.project = this.opts.project;
      ws.send(JSON.stringify(hello));
    });
    ws.on('message', (data) => {
      let msg: StreamMessage;
      try {
        msg = JSON.parse(data.toString()) as StreamMessage;
      } catch {
        return;
      }
      this.receive(msg);
    });
    ws.on('error', (err) => {
      this.lastError = toError(err, this.opts.url);
    });
    ws.on('close', (code, reason) => {
      if (this.ws !== ws) return;
      this.ws = null;
      const fatal = FATAL.get(code);
      if (fatal) {
        this.closed = true;
        const err = this.lastError?.code === fatal ? this.lastError : new ApiError(fatal, reason.toString() || fatal);
        this.emit('fatal', err);
        return;
      }
      this.emit('down', reason.toString() || this.lastError?.message || `closed (${code})`);
      if (this.closed || this.opts.reconnect === false) return;
      const min = this.opts.minBackoffMs ?? 250;
      const max = this.opts.maxBackoffMs ?? 10_000;
      const base = Math.min(max, min * 2 ** Math.min(this.failures++, 20));
      this.timer = setTimeout(() => {
        this.timer = null;
        this.connect();
      }, base / 2 + Math.random() * (base / 2));
    });
  }

  private receive(msg: StreamMessage): void {
    switch (msg.type) {
      case 'ready':
      case 'reset':
        this.failures = 0;
        this.cursor = msg.seq;
        break;
      case 'event':
      case 'position':
        if (this.cursor === undefined || msg.seq > this.cursor) this.cursor = msg.seq;
        break;
      case 'error':
        this.lastError = new ApiError(msg.code, msg.message);
        break;
      default:
        break;
    }
    this.emit('message', msg);
    if (msg.type === 'event') this.emit('event', msg);
    else if (msg.type === 'ready') this.emit('ready', msg);
    else if (msg.type === 'reset') this.emit('reset', msg);
    else if (msg.type === 'peers') this.emit('peers', msg);
  }
}

function toError(err: unknown, url: string): ApiError {
  if (err instanceof ApiError) return err;
  const e = err as { code?: string; message?: string; cause?: unknown };
  if (e?.cause instanceof ApiError) return e.cause;
  return new ApiError('UNREACHABLE', `cannot reach the event stream at ${url} (${e?.code ?? e?.message ?? String(err)})`);
}
