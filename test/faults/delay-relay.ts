/**
 * A TCP relay that delays what it carries, standing in for a wide-area
 * link where the kernel has no netem to do it.
 *
 * It listens on an address of its own, one port per forwarded port, and
 * passes each connection on to the same port of a target address. Every
 * chunk read from either side is written to the other side a one-way delay
 * later (± a uniform jitter), never before the chunk ahead of it in the same
 * direction: order within a connection is kept, as TCP keeps it. Opening a
 * connection costs a round trip as a TCP handshake would: what the caller
 * sends before then counts as sent once the handshake would have completed.
 *
 * How the fault suite uses it: a server starts with `--public-host` set to
 * its relay's address. Peers learn a server's host from the handshake and
 * from the link's hello, so every byte another server sends it (the
 * handshake, the link websocket, files fetched from its secure port)
 * crosses its relay, and every byte it sends another server crosses that
 * server's relay. Each connection between two servers crosses exactly one
 * relay, delayed both ways: the round trip between them is twice the
 * one-way delay. Its own workers and the test reach it directly.
 *
 * What a real path also has and this lacks: a bandwidth limit (the relay
 * forwards as fast as it reads, holding at most HIGH_WATER bytes per
 * direction before it stops reading) and per-packet timing (a chunk is
 * what one read returned). Loss is not the relay's: the suite drops packets
 * with nftables on the links between the relay's host and the other servers
 * (Network.lossBetween), and TCP retransmits.
 *
 * Run by itself it is a process (so that its timers are not held up by a
 * busy server or test in the same event loop):
 *
 *   delay-relay.ts LISTEN_HOST TARGET_HOST ONE_WAY_MS JITTER_MS PORT...
 *
 * It prints `{"ready":true}` once listening on every port, then a line
 * `{"accepted":PORT}` for each connection it takes.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';

/** Bytes held per direction of a connection before the relay stops reading from that side. */
const HIGH_WATER = 4 * 1024 * 1024;

export interface RelayOptions {
  listenHost: string;
  targetHost: string;
  ports: number[];
  oneWayMs: number;
  jitterMs: number;
  onAccept?: (port: number) => void;
}

/**
 * One direction of a connection: chunks are written in order, each at its
 * due time, and an end or a reset follows the last chunk ahead of it.
 */
class DelayedPipe {
  private lastDue = 0;
  private held = 0;
  private readonly queue: { due: number; fn: () => void }[] = [];
  private timer: NodeJS.Timeout | NodeJS.Immediate | null = null;

  constructor(
    from: Socket,
    private readonly to: Socket,
    private readonly delay: () => number,
    private readonly notBefore: number,
  ) {
    from.on('data', (chunk: Buffer) => {
      this.held += chunk.length;
      if (this.held > HIGH_WATER) from.pause();
      this.later(() => {
        this.held -= chunk.length;
        if (!this.to.destroyed) this.to.write(chunk);
        if (this.held <= HIGH_WATER && from.isPaused()) from.resume();
      });
    });
    from.on('end', () => this.later(() => this.to.end()));
  }

  /**
   * Runs `fn` after the delay, and not before what was scheduled ahead of it.
   * One timer per direction, for the head of a FIFO: timers of different
   * lengths set at different moments may fire out of order.
   */
  later(fn: () => void): void {
    const now = performance.now();
    const due = Math.max(this.lastDue, Math.max(now, this.notBefore) + this.delay());
    this.lastDue = due;
    this.queue.push({ due, fn });
    if (!this.timer) this.arm();
  }

  private arm(): void {
    const head = this.queue[0];
    if (!head) return;
    const flush = () => {
      this.timer = null;
      const now = performance.now();
      while (this.queue.length > 0 && this.queue[0]!.due <= now + 0.5) this.queue.shift()!.fn();
      this.arm();
    };
    // A timer waits a millisecond at least: what is due now goes at once, as on a path of no delay.
    const wait = head.due - performance.now();
    this.timer = wait <= 0.5 ? setImmediate(flush) : setTimeout(flush, wait);
  }
}

function relayConnection(client: Socket, opts: RelayOptions, port: number): void {
  const delay = () => Math.max(0, opts.oneWayMs + (Math.random() * 2 - 1) * opts.jitterMs);
  const opened = performance.now();
  client.setNoDelay(true);
  const upstream = connect({ host: opts.targetHost, port, allowHalfOpen: true });
  upstream.setNoDelay(true);
  // The caller's bytes leave, at the earliest, when its handshake would have completed (one round trip).
  const up = new DelayedPipe(client, upstream, delay, opened + 2 * opts.oneWayMs);
  const down = new DelayedPipe(upstream, client, delay, opened);
  // A reset travels as data does: after what was sent ahead of it.
  client.on('error', () => up.later(() => upstream.destroy()));
  upstream.on('error', () => down.later(() => client.destroy()));
  client.on('close', () => up.later(() => upstream.destroy()));
  upstream.on('close', () => down.later(() => client.destroy()));
}

export class DelayRelay {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();

  constructor(private readonly opts: RelayOptions) {}

  async listen(): Promise<void> {
    for (const port of this.opts.ports) {
      const server = createServer({ allowHalfOpen: true }, (client) => {
        this.sockets.add(client);
        client.once('close', () => this.sockets.delete(client));
        this.opts.onAccept?.(port);
        relayConnection(client, this.opts, port);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, this.opts.listenHost, () => resolve());
      });
      this.servers.push(server);
    }
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [listenHost, targetHost, oneWay, jitter, ...ports] = process.argv.slice(2);
  if (!listenHost || !targetHost || ports.length === 0) {
    process.stderr.write('usage: delay-relay LISTEN_HOST TARGET_HOST ONE_WAY_MS JITTER_MS PORT...\n');
    process.exit(2);
  }
  const relay = new DelayRelay({
    listenHost,
    targetHost,
    oneWayMs: Number(oneWay),
    jitterMs: Number(jitter),
    ports: ports.map(Number),
    onAccept: (port) => process.stdout.write(JSON.stringify({ accepted: port }) + '\n'),
  });
  await relay.listen();
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
  process.on('SIGTERM', () => void relay.close().then(() => process.exit(0)));
}
