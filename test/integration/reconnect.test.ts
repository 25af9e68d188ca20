/**
 * A real `cpc-worker` whose `cpc-server` process is killed and started again
 * on the same ports: once the server answers, the worker's claim does not
 * wait out the back-off it was in, it goes at once.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { adminPasswordOf, cleanup, freePort, loginAdmin, makeClient, parseLogLines, spawnServer, spawnWorker, tempDir, until } from '../helpers/server.js';

after(cleanup);

/** The worker's log lines (JSON, one a line) that say `msg`, with their time and fields. */
function linesOf(stderr: string, msg: string): { at: number; fields: Record<string, string> }[] {
  return parseLogLines(stderr)
    .filter((l) => String(l.msg).startsWith(msg))
    .map((l) => ({ at: Date.parse(String(l.time)), fields: Object.fromEntries(Object.entries(l).map(([k, v]) => [k, String(v)])) }));
}

describe('a worker whose server comes back', () => {
  it('claims at once when the server answers again, cutting a long back-off short', async () => {
    const home = await tempDir('cpc-reconnect-');
    const port = await freePort();
    const unsecurePort = await freePort();
    const srv = await spawnServer(home, { port, unsecurePort, heartbeatIntervalS: 1 });
    const admin = await loginAdmin(srv.info.url, srv.caPem, adminPasswordOf(home));
    await admin.createProject('p');
    // Bound to the admin, so that the worker takes the admin's jobs at any isolation level.
    const { token } = await admin.createWorkerToken('w', undefined, 'cpc-admin');
    const w = spawnWorker({
      url: srv.info.url,
      caFile: join(home, 'identity', 'ca.pem'),
      serverId: srv.info.serverId,
      token,
      name: 'w',
      cores: 1,
      workDir: await tempDir('cpc-reconnect-work-'),
      claimWaitS: 2,
      tokenFile: true,
      args: ['--verbose'],
    });
    await until('the worker to register', () => /registered as/.test(w.stderr()), { timeoutMs: 30_000 });

    assert.equal((await srv.stop('SIGKILL')).signal, 'SIGKILL');
    // Down long enough for the claim's back-off to grow past 15 s: what a worker that waits it out would lose.
    const longWait = await until(
      'the claim to back off for 15 s or more',
      () => linesOf(w.stderr(), 'claim failed; waiting before the next').find((l) => Number(l.fields.waitMs) >= 15_000),
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const backOffEnds = longWait.at + Number(longWait.fields.waitMs);

    const again = await spawnServer(home, { port, unsecurePort, heartbeatIntervalS: 1 });
    const backAt = Date.now();
    const client = makeClient(again.info.url, again.caPem, admin.token!, again.info.serverId);
    const [id] = (await client.submit('p', [{ argv: ['true'] }])).ids as [string];
    const started = await until(
      'the job to start on the worker',
      () => linesOf(w.stderr(), 'job started').find((l) => l.fields.job === id),
      { timeoutMs: 40_000, intervalMs: 50 },
    );
    assert.ok(backAt < backOffEnds, 'the server was back before the back-off would have ended (else the test proves nothing)');
    assert.ok(
      started.at < backOffEnds,
      `the job started ${started.at - backOffEnds} ms after the claim's back-off ended: the worker waited it out although the server answered`,
    );
    // Generous, for a loaded machine: a worker that waits out its back-off takes 8 s or more here.
    assert.ok(started.at - backAt < 5000, `the job started ${started.at - backAt} ms after the server was back`);
  });
});
