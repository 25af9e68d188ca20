import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { z } from 'zod';
import { CpcError } from '../../core/errors.js';
import { EVENTS_PROTOCOL, EVENTS_TOKEN_PROTOCOL, type StreamError } from '../../core/wire.js';
import type { Identity } from '../accounts/accounts.js';
import type { Logger } from '../../common/logger.js';
import { mayView, type EventHub } from './hub.js';

/**
 * The event stream's websocket endpoint on the secure port.
 *
 * Browsers cannot put headers on a websocket, and URLs end up in logs, so
 * the token comes in the first message (`hello`) or as a subprotocol
 * `cpc.token.<token>` offered next to `cpc.events.v1`; the server only ever
 * answers with `cpc.events.v1`, so the token is not echoed. The token is
 * checked again every `recheckMs`: a logged-out or expired session is cut.
 *
 * A socket that has not said who it is yet sits in a small pool of its own
 * (`maxPending`) for at most `helloTimeoutMs`; when the pool is full the
 * oldest such socket makes room for the new one. Sockets that never say
 * hello therefore cannot take the places of users (`maxClients`, counted
 * once a hello is accepted): a real client says hello one round trip after
 * it opens, far sooner than a pool's worth of strangers can push it out.
 *
 * Close codes: 4400 bad hello, 4401 not authenticated, 4403 not a user,
 * 4404 no such project, 4408 no hello in time, 4409 too slow (resume with
 * the cursor), 1013 too many clients (or pushed out of the waiting pool),
 * 1001 server stopping.
 */

const helloSchema = z.strictObject({
  type: z.literal('hello'),
  token: z.string().min(1).max(512).optional(),
  cursor: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  project: z.string().min(1).max(128).optional(),
});

export interface EventSocketOptions {
  hub: EventHub;
  /** The identity a token stands for; throws a CpcError (UNAUTHENTICATED) otherwise. */
  authenticate: (token: string) => Identity;
  /** Owner and members of a project, or undefined when there is none. */
  project: (name: string) => { owner: string; members: string[] } | undefined;
  log: Logger;
  helloTimeoutMs?: number;
  pingMs?: number;
  recheckMs?: number;
  /** Subscribed clients at once. */
  maxClients?: number;
  /** Sockets at once that have not said hello yet. */
  maxPending?: number;
  /** A client with this much unsent data is cut off; it resumes with its cursor. */
  maxBufferedBytes?: number;
}

export class EventSocket {
  private readonly wss: WebSocketServer;
  private readonly sockets = new Set<WebSocket>();
  /** Sockets without an accepted hello, oldest first. */
  private readonly pending = new Set<WebSocket>();
  private subscribed = 0;
  private closed = false;

  constructor(private readonly opts: EventSocketOptions) {
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: 64 * 1024,
      // Only the stream's own protocol is ever chosen, never a token.
      handleProtocols: (protocols) => (protocols.has(EVENTS_PROTOCOL) ? EVENTS_PROTOCOL : false),
    });
  }

  /** Subscribed clients. */
  get clients(): number {
    return this.subscribed;
  }

  /** Sockets that have not said hello yet. */
  get waiting(): number {
    return this.pending.size;
  }

  /** Takes an upgrade request for the stream's path. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const refuse = (status: string): void => {
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (this.closed) return refuse('503 Service Unavailable');
    // A page of another site may open a websocket here with the user's
    // browser; it has no token, but there is no reason to let it try.
    const origin = req.headers.origin;
    if (origin !== undefined && !sameOrigin(origin, req.headers.host)) return refuse('403 Forbidden');
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim());
    const protocolToken = offered.find((p) => p.startsWith(EVENTS_TOKEN_PROTOCOL))?.slice(EVENTS_TOKEN_PROTOCOL.length);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, protocolToken || undefined));
  }

  close(): void {
    this.closed = true;
    for (const ws of this.sockets) ws.close(1001, 'server stopping');
    setTimeout(() => {
      for (const ws of this.sockets) ws.terminate();
    }, 1000).unref();
    this.wss.close();
  }

  private accept(ws: WebSocket, protocolToken: string | undefined): void {
    const o = this.opts;
    if (this.pending.size >= (o.maxPending ?? 64)) {
      const oldest = this.pending.values().next().value!;
      this.pending.delete(oldest);
      oldest.close(1013, 'too many connections waiting to say hello');
    }
    this.sockets.add(ws);
    this.pending.add(ws);
    let unsubscribe: (() => void) | null = null;
    let alive = true;
    const timers: NodeJS.Timeout[] = [];
    const stop = (code: number, error?: StreamError) => {
      if (error && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(error));
      ws.close(code, error?.message.slice(0, 120));
    };
    ws.on('close', () => {
      this.sockets.delete(ws);
      this.pending.delete(ws);
      if (unsubscribe) this.subscribed--;
      unsubscribe?.();
      for (const t of timers) clearInterval(t);
    });
    ws.on('error', () => ws.terminate());
    ws.on('pong', () => (alive = true));
    timers.push(
      setTimeout(() => {
        if (!unsubscribe) stop(4408, { type: 'error', code: 'UNAUTHENTICATED', message: 'no hello in time' });
      }, o.helloTimeoutMs ?? 5_000),
      setInterval(() => {
        if (!alive) return ws.terminate();
        alive = false;
        ws.ping();
      }, o.pingMs ?? 30_000),
    );
    for (const t of timers) t.unref();

    ws.once('message', (data: RawData, isBinary: boolean) => {
      // Pushed out of the waiting pool already: its close is on the way.
      if (!this.pending.delete(ws)) return;
      let hello: z.infer<typeof helloSchema>;
      try {
        if (isBinary) throw new Error('binary');
        hello = helloSchema.parse(JSON.parse(rawText(data)));
      } catch {
        return stop(4400, { type: 'error', code: 'BAD_REQUEST', message: 'the first message must be {"type":"hello", token?, cursor?, project?}' });
      }
      const token = hello.token ?? protocolToken;
      if (!token) return stop(4401, { type: 'error', code: 'UNAUTHENTICATED', message: 'this needs a token; log in first' });
      let who: Identity;
      try {
        who = o.authenticate(token);
      } catch (err) {
        return stop(4401, { type: 'error', code: codeOf(err, 'UNAUTHENTICATED'), message: messageOf(err) });
      }
      if (who.kind !== 'user') return stop(4403, { type: 'error', code: 'FORBIDDEN', message: 'worker tokens cannot read the event stream' });
      if (hello.project !== undefined) {
        const audience = o.project(hello.project);
        if (!audience || !mayView(who.user, who.superuser, audience)) {
          return stop(4404, { type: 'error', code: 'PROJECT_NOT_FOUND', message: `no project named '${hello.project}'` });
        }
      }
      if (this.subscribed >= (o.maxClients ?? 1000)) {
        return stop(1013, { type: 'error', code: 'TOO_MANY_REQUESTS', message: 'too many event stream clients; try again later' });
      }
      const maxBuffered = o.maxBufferedBytes ?? 8 * 1024 * 1024;
      unsubscribe = o.hub.subscribe(
        {
          user: who.user,
          superuser: who.superuser,
          project: hello.project,
          send: (json) => {
            if (ws.readyState !== WebSocket.OPEN) return false;
            if (ws.bufferedAmount > maxBuffered) {
              stop(4409, { type: 'error', code: 'TOO_MANY_REQUESTS', message: 'events were not read fast enough; reconnect with your cursor' });
              return false;
            }
            ws.send(json);
            return true;
          },
        },
        hello.cursor,
      );
      this.subscribed++;
      o.log.debug('event stream client joined', { user: who.user, cursor: hello.cursor, project: hello.project });
      // A session that ends (logout, expiry, a removed user) ends its stream.
      const recheck = setInterval(() => {
        try {
          o.authenticate(token);
        } catch (err) {
          stop(4401, { type: 'error', code: codeOf(err, 'UNAUTHENTICATED'), message: messageOf(err) });
        }
      }, o.recheckMs ?? 30_000);
      recheck.unref();
      timers.push(recheck);
      // Nothing more is expected from the client; anything else it sends is ignored.
    });
  }
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false;
  }
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data as ArrayBuffer).toString('utf8');
}

function codeOf(err: unknown, fallback: string): string {
  return err instanceof CpcError ? err.code : fallback;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
