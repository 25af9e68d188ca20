/**
 * The event stream under a crowd of sockets that never say who they are:
 * silent websockets, many more than the stream takes clients, do not keep a
 * user out, and each of them is closed once its time to say hello is up.
 * The server's pools are made small (50 clients, 10 waiting for a hello) so
 * that a crowd four times the client pool opens well within the hello time; with the
 * defaults (1000 and 64) it is the same contest at a larger size.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { EventStream } from '../../src/client/api/events.js';
import type { StreamEvent, StreamMessage } from '../../src/core/wire.js';
import { cleanup, startTestServer, until, type TestServer } from '../helpers/server.js';

after(cleanup);

/** Opens `size` websockets that never say a word. */
function crowd(url: string, caPem: string, size: number) {
  const open = new Set<WebSocket>();
  const codes = new Map<number, number>();
  let opened = 0;
  const add = (): void => {
    const ws = new WebSocket(url, ['cpc.events.v1'], { ca: caPem, rejectUnauthorized: false });
    open.add(ws);
    ws.on('error', () => {});
    let wasOpen = false;
    ws.on('open', () => ((wasOpen = true), opened++));
    ws.on('close', (code) => {
      open.delete(ws);
      // One the listener could not take in time (1006) never counted as a client.
      if (wasOpen) codes.set(code, (codes.get(code) ?? 0) + 1);
    });
  };
  for (let i = 0; i < size; i++) add();
  return {
    get opened() {
      return opened;
    },
    get open() {
      return open.size;
    },
    codes,
  };
}

describe('event stream against silent sockets', () => {
  let ts: TestServer;

  before(async () => {
    ts = await startTestServer({ maxEventClients: 50, maxEventPending: 10, eventHelloTimeoutS: 5 });
    await ts.admin.createProject('crowd');
  });

  it('lets a user subscribe and get events while four times the client pool of silent sockets are open, and closes the silent ones', async () => {
    const url = ts.server.url.replace(/^https/, 'wss') + '/api/v1/events';
    const silent = crowd(url, ts.server.caPem, 200);
    await until('two hundred silent sockets to have opened', () => silent.opened >= 200, { timeoutMs: 30_000 });
    const messages: StreamMessage[] = [];
    const stream = new EventStream({ url: ts.server.url, caPem: ts.server.caPem, serverId: ts.server.serverId, token: ts.admin.token!, reconnect: false });
    stream.on('message', (m) => messages.push(m));
    stream.start();
    try {
      assert.equal((await stream.opened()).type, 'ready');
      const { ids } = await ts.admin.submit('crowd', [{ argv: ['true'], name: 'seen' }]);
      await until('the user to get the submit event', () =>
        messages.some((m) => m.type === 'event' && (m as StreamEvent).jobs?.some((j) => j.id === ids[0])),
      );
    } finally {
      stream.close();
    }
    await until('every silent socket to be closed', () => silent.open === 0, { timeoutMs: 30_000 });
    const codes = [...silent.codes.keys()];
    assert.ok(codes.every((c) => c === 4408 || c === 1013), `closed with ${codes.join(', ')}`);
    assert.ok((silent.codes.get(4408) ?? 0) > 0, 'the last ones were closed when their time to say hello ran out');
  });
});
