/**
 * `why` on a server whose work peers borrow: a job no worker anywhere is big
 * enough for is explained with the room the peers' workers offered when they
 * last asked for work, beside the server's own workers.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { linkedSites, SimWorker, stopSite, until, type Site } from '../helpers/federation.js';

describe('why a job waits, with peers', () => {
  let home: Site;
  let peer: Site;
  let lender: SimWorker | undefined;

  before(async () => {
    [home, peer] = await linkedSites('why-home', 'why-peer');
  });

  after(async () => {
    await lender?.close();
    await Promise.all([home, peer].filter(Boolean).map((s) => stopSite(s)));
  });

  it("counts a peer worker's offer as room offered, and names the largest", async () => {
    await home.admin.createProject('p');
    const { ids } = await home.admin.submit('p', [
      { argv: ['true'], cores: 1, memoryMb: 10 },
      { argv: ['true'], cores: 64, memoryMb: 10 },
    ]);
    const [small, big] = ids as [string, string];
    // Home has no worker of its own: before any peer asks, nothing offers room.
    assert.equal((await home.admin.why(big)).reasons[0]!.kind, 'no-workers');

    lender = await new SimWorker(peer, 'lender').register(6, 3000);
    const borrowed = await until('the peer worker borrows the small job', async () => {
      const { jobs } = await lender!.claim(1);
      return jobs.find((j) => j.id === small);
    }, { timeoutMs: 60_000 });
    assert.equal(borrowed.id, small);

    const why = await home.admin.why(big);
    const fit = why.reasons.find((r) => r.kind === 'no-worker-fits');
    assert.ok(fit && fit.kind === 'no-worker-fits', JSON.stringify(why));
    assert.deepEqual({ workers: fit.workers, peers: fit.peers, largest: fit.largest }, { workers: 0, peers: 1, largest: { cores: 6, memoryMb: 3000 } });
    assert.match(why.summary, /asks 64 cores, 10 MB; the largest offered is 6 cores, 3000 MB \(0 workers, 1 peer offer\)/);
  });
});
