/**
 * The event stream (/api/v1/events) against real servers: a client that
 * drops and resumes gets exactly the events it missed, also across a server
 * restart; a cursor the server cannot serve gets `reset`; users see only
 * projects they may see; the endpoint refuses what it should.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { EventStream } from '../../src/client/api/events.js';
import { ApiClient } from '../../src/client/api/client.js';
import type { StreamEvent, StreamMessage } from '../../src/core/wire.js';
import { EventHub } from '../../src/server/events/hub.js';
import { cleanup, makeClient, resultOf, startTestServer, tempDir, until, type TestServer } from '../helpers/server.js';

after(cleanup);

/** A stream that records everything it receives. */
function record(ts: TestServer, token: string, opts: { cursor?: number; project?: string; tokenInProtocol?: boolean; reconnect?: boolean } = {}) {
  const messages: StreamMessage[] = [];
  const stream = new EventStream({
    url: ts.server.url,
    caPem: ts.server.caPem,
    serverId: ts.server.serverId,
    token,
    minBackoffMs: 20,
    maxBackoffMs: 100,
    ...opts,
  });
  stream.on('message', (m) => messages.push(m));
  stream.start();
  const events = () => messages.filter((m): m is StreamEvent => m.type === 'event');
  return { stream, messages, events };
}

/** Submits jobs and runs them to the end with a simulated worker: dozens of events. */
async function activity(ts: TestServer, client: ApiClient, project: string, n: number, worker: Awaited<ReturnType<TestServer['worker']>>) {
  const { ids } = await client.submit(project, Array.from({ length: n }, (_, i) => ({ argv: ['echo', String(i)], name: `j${i}` })));
  for (;;) {
    const { jobs } = await worker.client.claim(worker.workerId, { waitS: 0, max: 3 });
    if (jobs.length === 0) break;
    for (const j of jobs) await worker.client.result(worker.workerId, resultOf(j.id, j.attempt, { stdout: `out ${j.id}\n`, exitCode: 0 }));
  }
  return ids;
}

describe('event stream', () => {
  let ts: TestServer;
  let alice: ApiClient;
  let bob: ApiClient;
  let worker: Awaited<ReturnType<TestServer['worker']>>;

  before(async () => {
    ts = await startTestServer();
    await ts.server.ctx.accounts.addUser('alice', 'alice-password', false);
    await ts.server.ctx.accounts.addUser('bob', 'bob-password', false);
    alice = makeClient(ts.server.url, ts.server.caPem);
    alice.token = (await alice.login('alice', 'alice-password')).token;
    bob = makeClient(ts.server.url, ts.server.caPem);
    bob.token = (await bob.login('bob', 'bob-password')).token;
    await alice.createProject('alpha');
    await bob.createProject('beta');
    worker = await ts.worker({ name: 'w1', cores: 8 });
  });

  it('a client that drops and resumes with its cursor misses no event and gets none twice', async () => {
    const reference = record(ts, ts.admin.token!);
    const resumer = record(ts, ts.admin.token!, { reconnect: false });
    await reference.stream.opened();
    const ready = await resumer.stream.opened();
    assert.equal(ready.type, 'ready');

    await activity(ts, ts.admin, 'beta', 3, worker);
    await until('the resumer to see the first round', () => resumer.events().some((e) => e.kind === 'attempt-finished'));
    const cursor = resumer.stream.cursor!;
    resumer.stream.close();

    // Everything from here on happens while the client is away.
    const missedIds = await activity(ts, ts.admin, 'beta', 5, worker);
    await ts.admin.cancel([(await ts.admin.submit('beta', [{ argv: ['sleep', '1'] }])).ids[0]!]);
    const end = ts.server.ctx.store.seq;
    await until('the reference to see everything', () => reference.stream.cursor! >= end);

    const again = record(ts, ts.admin.token!, { cursor });
    const back = await again.stream.opened();
    assert.deepEqual([back.type, (back as { resumed?: boolean }).resumed, back.seq], ['ready', true, cursor]);
    await until('the resumed client to catch up', () => again.stream.cursor! >= end);

    const seen = [...resumer.events(), ...again.events()].filter((e) => e.seq <= end);
    const expected = reference.events().filter((e) => e.seq > ready.seq && e.seq <= end);
    assert.ok(expected.length >= 12, `enough happened to be worth comparing (${expected.length} events)`);
    assert.deepEqual(
      seen.map((e) => e.seq),
      expected.map((e) => e.seq),
      'the same events, in order, none twice',
    );
    assert.deepEqual(seen, expected, 'with the same content');
    const replayed = again.events().filter((e) => e.seq <= end);
    for (const id of missedIds) {
      assert.ok(replayed.some((e) => e.jobs?.some((j) => j.id === id && j.state === 'done')), `the missed finish of ${id} was replayed`);
    }
    for (const s of [reference, again]) s.stream.close();
  });

  it('reconnects by itself after the connection is cut and carries on from where it was', async () => {
    const reference = record(ts, ts.admin.token!);
    const s = record(ts, ts.admin.token!);
    await Promise.all([reference.stream.opened(), s.stream.opened()]);
    const start = s.stream.cursor!;
    let drops = 0;
    s.stream.on('down', () => drops++);
    for (const n of [4, 2]) {
      s.stream.drop();
      await activity(ts, ts.admin, 'beta', n, worker);
      const mark = ts.server.ctx.store.seq;
      await until('the stream to be back and caught up', () => s.stream.connected && s.stream.cursor! >= mark);
    }
    const end = ts.server.ctx.store.seq;
    await until('both to catch up', () => s.stream.cursor! >= end && reference.stream.cursor! >= end);
    assert.equal(drops, 2);
    const seqs = (r: typeof s) => r.events().filter((e) => e.seq > start && e.seq <= end).map((e) => e.seq);
    assert.deepEqual(seqs(s), seqs(reference));
    assert.equal(new Set(seqs(s)).size, seqs(s).length, 'no event twice');
    for (const r of [reference, s]) r.stream.close();
  });

  it('a user never receives events of a project they cannot see', async () => {
    const bobs = record(ts, bob.token!);
    const alices = record(ts, alice.token!, { tokenInProtocol: true });
    await Promise.all([bobs.stream.opened(), alices.stream.opened()]);

    const alphaIds = await activity(ts, alice, 'alpha', 3, worker);
    const betaIds = await activity(ts, bob, 'beta', 2, worker);
    const end = ts.server.ctx.store.seq;
    await until('both to be told the latest position', () => bobs.stream.cursor! >= end && alices.stream.cursor! >= end, { timeoutMs: 15_000 });

    const bobText = JSON.stringify(bobs.messages);
    assert.doesNotMatch(bobText, /alpha/, "bob's stream never names alice's project");
    for (const id of alphaIds) assert.ok(!bobText.includes(id), `bob never hears of job ${id}`);
    for (const id of betaIds) assert.ok(bobText.includes(id), `bob hears of his own job ${id}`);
    const aliceText = JSON.stringify(alices.messages);
    assert.doesNotMatch(aliceText, /"beta"/);
    for (const id of betaIds) assert.ok(!aliceText.includes(id));
    for (const id of alphaIds) assert.ok(aliceText.includes(id));
    assert.ok(bobs.events().every((e) => (e.jobs ?? []).every((j) => j.project === 'beta')));

    // Membership changes what bob sees from then on, and only from then on.
    await ts.server.ctx.store.commit({ t: 'members-changed', at: Date.now(), project: 'alpha', members: ['bob'] });
    const shared = await activity(ts, alice, 'alpha', 1, worker);
    await until('bob to see alpha once he is a member', () => bobs.events().some((e) => e.jobs?.some((j) => j.id === shared[0] && j.state === 'done')));
    await ts.server.ctx.store.commit({ t: 'members-changed', at: Date.now(), project: 'alpha', members: [] });
    const after = await activity(ts, alice, 'alpha', 1, worker);
    const mark = ts.server.ctx.store.seq;
    await until('bob to be past the last change', () => bobs.stream.cursor! >= mark, { timeoutMs: 15_000 });
    assert.ok(!JSON.stringify(bobs.messages).includes(after[0]!), 'bob hears nothing of alpha after he left it');

    // A filtered stream of a project one may not see is refused as if it did not exist.
    const nosy = record(ts, bob.token!, { project: 'alpha' });
    await assert.rejects(nosy.stream.opened(), (e: { code?: string }) => e.code === 'PROJECT_NOT_FOUND');
    for (const r of [bobs, alices]) r.stream.close();
  });

  it('a project filter keeps only that project', async () => {
    const s = record(ts, ts.admin.token!, { project: 'alpha' });
    await s.stream.opened();
    await activity(ts, bob, 'beta', 1, worker);
    const ids = await activity(ts, alice, 'alpha', 1, worker);
    await until('the alpha job to be seen', () => s.events().some((e) => e.jobs?.some((j) => j.id === ids[0] && j.state === 'done')));
    for (const e of s.events()) {
      for (const j of e.jobs ?? []) assert.equal(j.project, 'alpha');
      for (const p of e.projects ?? []) assert.equal(p.name, 'alpha');
    }
    s.stream.close();
  });

  it('lists at most 1000 job changes of one event and counts the rest', async () => {
    const s = record(ts, bob.token!);
    await s.stream.opened();
    const { ids } = await bob.submit('beta', Array.from({ length: 1500 }, () => ({ argv: ['true'] })));
    const ev = await until('the submit event', () => s.events().find((e) => e.kind === 'jobs-submitted' && e.jobs?.some((j) => j.id === ids[0])));
    assert.equal(ev.jobs!.length, 1000);
    assert.ok(ev.jobs!.every((j) => j.from === null && j.state === 'queued'));
    assert.deepEqual(ev.omitted, [{ project: 'beta', jobs: 500 }]);
    assert.equal(ev.projects?.find((p) => p.name === 'beta')?.counts.queued, (await bob.project('beta')).counts.queued);
    await bob.cancel(ids);
    s.stream.close();
  });

  it('refuses bad tokens, worker tokens, bad hellos and other origins', async () => {
    const bad = record(ts, 'cpc_0000000000000000_' + 'A'.repeat(43));
    await assert.rejects(bad.stream.opened(), (e: { code?: string }) => e.code === 'UNAUTHENTICATED');
    const asWorker = record(ts, worker.token);
    await assert.rejects(asWorker.stream.opened(), (e: { code?: string }) => e.code === 'FORBIDDEN');

    const url = ts.server.url.replace(/^https/, 'wss') + '/api/v1/events';
    const closeOf = (ws: WebSocket) => new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    const raw = new WebSocket(url, ['cpc.events.v1'], { ca: ts.server.caPem, rejectUnauthorized: false });
    raw.on('open', () => raw.send('{"type":"hello","token":1}'));
    assert.equal(await closeOf(raw), 4400);

    const foreign = new WebSocket(url, ['cpc.events.v1'], { ca: ts.server.caPem, rejectUnauthorized: false, origin: 'https://evil.example' });
    const refused = await new Promise<number>((resolve) => foreign.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)).on('error', () => {}));
    assert.equal(refused, 403);

    // The subprotocol carrying the token is never echoed back.
    const viaProtocol = new WebSocket(url, ['cpc.events.v1', `cpc.token.${ts.admin.token}`], { ca: ts.server.caPem, rejectUnauthorized: false });
    await new Promise((resolve) => viaProtocol.on('open', resolve));
    assert.equal(viaProtocol.protocol, 'cpc.events.v1');
    viaProtocol.send('{"type":"hello"}');
    const first = await new Promise<StreamMessage>((resolve) => viaProtocol.once('message', (d) => resolve(JSON.parse(d.toString()))));
    assert.equal(first.type, 'ready');
    viaProtocol.close();
  });

  it('answers reset for a cursor outside its window, and exactly the rest inside it', async () => {
    // A second hub on the same store with a window of three events.
    const hub = new EventHub(ts.server.ctx.store, { windowEvents: 3 });
    // Someone listening keeps the hub recording.
    hub.subscribe({ user: 'cpc-admin', superuser: true, send: () => true });
    try {
      const start = hub.position;
      await activity(ts, ts.admin, 'beta', 3, worker);
      await until('the hub to publish', () => hub.position >= ts.server.ctx.store.seq);
      const got = (cursor: number) => {
        const out: StreamMessage[] = [];
        const off = hub.subscribe({ user: 'cpc-admin', superuser: true, send: (j) => (out.push(JSON.parse(j)), true) }, cursor);
        off();
        return out;
      };
      const old = got(start);
      assert.equal(old[0]!.type, 'reset');
      assert.equal((old[0] as { seq: number }).seq, hub.position);
      const ahead = got(hub.position + 5);
      assert.equal(ahead[0]!.type, 'reset');
      const recent = got(hub.oldestCursor);
      assert.equal(recent[0]!.type, 'ready');
      const events = recent.filter((m): m is StreamEvent => m.type === 'event');
      assert.ok(events.length > 0 && events.length <= 3);
      assert.ok(events.every((e) => e.seq > hub.oldestCursor));
    } finally {
      hub.close();
    }
  });

  it('records nothing while nobody listens, and answers reset to a cursor from before', async () => {
    const hub = new EventHub(ts.server.ctx.store, { keepS: 0.2 });
    try {
      const got = (cursor?: number) => {
        const out: StreamMessage[] = [];
        const off = hub.subscribe({ user: 'cpc-admin', superuser: true, send: (j) => (out.push(JSON.parse(j)), true) }, cursor);
        return { out, off };
      };
      // While someone listens, and for keepS after, a client can come back.
      const first = got();
      await activity(ts, ts.admin, 'beta', 1, worker);
      await until('the hub to publish', () => hub.position >= ts.server.ctx.store.seq);
      const cursor = hub.position;
      first.off();
      await activity(ts, ts.admin, 'beta', 1, worker);
      await until('the hub to publish', () => hub.position >= ts.server.ctx.store.seq);
      const back = got(cursor);
      assert.equal(back.out[0]!.type, 'ready');
      assert.ok(back.out.some((m) => m.type === 'event' && m.jobs !== undefined), 'the events while away are served');
      back.off();

      // Past keepS with nobody listening, nothing is recorded.
      const away = hub.position;
      await new Promise((r) => setTimeout(r, 400));
      await activity(ts, ts.admin, 'beta', 1, worker);
      await until('the hub to publish', () => hub.position >= ts.server.ctx.store.seq);
      const stale = got(away);
      assert.equal(stale.out[0]!.type, 'reset');
      assert.equal(stale.out.filter((m) => m.type === 'event').length, 0);
      // A listener records again from the moment it subscribes.
      const { ids } = await ts.admin.submit('beta', [{ argv: ['true'] }]);
      await until('the new job to be seen', () => stale.out.some((m) => m.type === 'event' && m.jobs?.some((j) => j.id === ids[0])));
      stale.off();
      await ts.admin.cancel(ids);
    } finally {
      hub.close();
    }
  });
});

describe('event stream connections', () => {
  it('outlive the HTTP request time limits', async () => {
    const ts = await startTestServer({ headersTimeoutS: 0.5, requestTimeoutS: 0.5 });
    await ts.admin.createProject('slow');
    const s = record(ts, ts.admin.token!);
    await s.stream.opened();
    let drops = 0;
    s.stream.on('down', () => drops++);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const { ids } = await ts.admin.submit('slow', [{ argv: ['true'] }]);
    await until('the job to be seen', () => s.events().some((e) => e.jobs?.some((j) => j.id === ids[0])));
    assert.equal(drops, 0, 'the stream was never cut');
    s.stream.close();
  });
});

describe('event stream across a restart', () => {
  it('resumes from a cursor of the previous run, continuing the journal positions', async () => {
    const home = await tempDir('cpc-events-restart-');
    let ts = await startTestServer({ home });
    await ts.admin.createProject('p');
    const s = record(ts, ts.admin.token!, { reconnect: false });
    await s.stream.opened();
    await ts.admin.submit('p', [{ argv: ['true'] }, { argv: ['true'] }]);
    await until('the stream to see the jobs', () => s.events().some((e) => e.kind === 'jobs-submitted'));
    const cursor = s.stream.cursor!;
    s.stream.close();
    const before = ts.server.ctx.store.seq;
    assert.equal(cursor, before);
    await ts.server.close();

    ts = await startTestServer({ home });
    assert.ok(ts.server.ctx.store.seq >= before, 'positions go on from where they were');
    const again = record(ts, ts.admin.token!, { cursor });
    const back = await again.stream.opened();
    // The restart may have journaled recovery changes; those are served, nothing is lost.
    assert.deepEqual([back.type, (back as { resumed?: boolean }).resumed], ['ready', true]);
    const { ids } = await ts.admin.submit('p', [{ argv: ['true'] }]);
    await until('the new job to be seen', () => again.events().some((e) => e.jobs?.some((j) => j.id === ids[0])));
    assert.ok(again.events().every((e) => e.seq > cursor));

    const stale = record(ts, ts.admin.token!, { cursor: Math.max(0, cursor - 1) });
    assert.equal((await stale.stream.opened()).type, 'reset', 'events before the restart are not kept');
    for (const r of [again, stale]) r.stream.close();
  });
});
