/**
 * The delaying relay the WAN scenario and the `wan` benchmark stand on: it
 * keeps the order of what it carries, never delivers early, charges a round
 * trip for opening a connection, and passes a half-close on after the data
 * ahead of it. An echo server on loopback behind a relay on another loopback
 * address; no namespaces, so this runs without root. Only lower bounds on
 * time are asserted: a delay can come late on a loaded machine, never early.
 */
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { until } from '../helpers/server.js';
import { DelayRelay } from './delay-relay.js';

const ONE_WAY_MS = 15;
const JITTER_MS = 10;
/** How early a timer may fire in the relay's reckoning (it flushes what is due within half a millisecond). */
const SLOP_MS = 1;

describe('the delaying relay', () => {
  let echo: Server;
  let relay: DelayRelay;
  let port: number;

  before(async () => {
    echo = createServer({ allowHalfOpen: true }, (s) => {
      s.on('data', (d) => s.write(d));
      s.on('end', () => s.end());
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    port = (echo.address() as { port: number }).port;
    relay = new DelayRelay({ listenHost: '127.0.0.7', targetHost: '127.0.0.1', ports: [port], oneWayMs: ONE_WAY_MS, jitterMs: JITTER_MS });
    await relay.listen();
  });

  after(async () => {
    await relay?.close();
    echo?.close();
  });

  async function open(): Promise<{ socket: Socket; received: () => string; ended: () => boolean; at: number }> {
    const at = performance.now();
    const socket = connect({ host: '127.0.0.7', port, allowHalfOpen: true });
    socket.setNoDelay(true);
    let received = '';
    let ended = false;
    socket.setEncoding('utf8').on('data', (d: string) => (received += d));
    socket.on('end', () => (ended = true));
    await new Promise((r) => socket.once('connect', r));
    return { socket, received: () => received, ended: () => ended, at };
  }

  it('a new connection’s first answer takes the handshake’s round trip and one more', async () => {
    const c = await open();
    c.socket.write('hello');
    await until('the echo', () => c.received() === 'hello', { timeoutMs: 10_000, intervalMs: 1 });
    const ms = performance.now() - c.at;
    assert.ok(ms >= 4 * ONE_WAY_MS - 2 * JITTER_MS - SLOP_MS, `first answer after ${ms.toFixed(1)} ms`);
    c.socket.destroy();
  });

  it('every round trip takes twice the one-way delay at least, less the jitter', async () => {
    const c = await open();
    c.socket.write('warm');
    await until('the first echo', () => c.received() === 'warm', { timeoutMs: 10_000, intervalMs: 1 });
    for (let i = 0; i < 10; i++) {
      const want = c.received() + `ping${i}`;
      const t0 = performance.now();
      c.socket.write(`ping${i}`);
      await until('the echo', () => c.received() === want, { timeoutMs: 10_000, intervalMs: 1 });
      const ms = performance.now() - t0;
      assert.ok(ms >= 2 * (ONE_WAY_MS - JITTER_MS) - SLOP_MS, `round trip ${i}: ${ms.toFixed(1)} ms`);
    }
    c.socket.destroy();
  });

  it('keeps the order of what it carries, whatever the jitter, and a half-close comes after the data', async () => {
    const c = await open();
    let sent = '';
    for (let i = 0; i < 300; i++) {
      const piece = `<${i}>`;
      sent += piece;
      c.socket.write(piece);
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    c.socket.end();
    await until('the echo server’s end', () => c.ended(), { timeoutMs: 20_000, intervalMs: 5 });
    assert.equal(c.received(), sent);
  });
});
