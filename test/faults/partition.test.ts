/**
 * Partitions during delegation, across real network namespaces: a home
 * server with jobs and no worker, and two borrowing servers whose workers
 * run them. The link between home and the borrower running a job is cut by
 * nftables rules in the home's namespace, both ways or one way only, for
 * less than a lease and for several leases; meanwhile the other borrower
 * stands ready to take the job when home gives it up.
 *
 * Checked at the end of each: no acknowledged job is lost, every job ends,
 * no result is taken twice, and the peer link comes back by itself once
 * the network heals.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { until } from '../helpers/server.js';
import { faultsUnavailable, type Network } from './netns.js';
import { borrowingFederation, jobEnded, linkUp, reportedAttempts, type AttemptWatch, type BorrowingFederation, type NsSite } from './sites.js';

const skip = faultsUnavailable();
/** Workers heartbeat every 2 s; leases last 4. */
const HEARTBEAT_S = 2;
const LEASE_MS = 2 * HEARTBEAT_S * 1000;
/** A peer link is pinged every 10 s and cut after two missed pongs; redialling backs off to at most 30 s. */
const LINK_RETURNS_MS = 90_000;

describe('partitions during delegation', { skip: skip ?? false, timeout: 600_000 }, () => {
  let fed: BorrowingFederation;
  let net: Network;
  let home: NsSite;
  let borrowers: NsSite[];
  let jobIds: Set<string>;
  let watch: AttemptWatch;

  before(async () => {
    fed = await borrowingFederation({ heartbeatS: HEARTBEAT_S, cores: 1 });
    ({ net, home, borrowers, jobIds, watch } = fed);
  });

  after(async () => {
    await fed?.close();
  });

  /** Submits one job at home that runs for `seconds`, and waits until a borrower's worker runs it: that borrower comes back. */
  async function runningJob(seconds: number): Promise<{ id: string; on: NsSite }> {
    const { ids } = await home.admin.submit('p', [{ shell: `sleep ${seconds}; echo finished`, name: `sleep-${seconds}` }]);
    const id = ids[0]!;
    jobIds.add(id);
    const via = await until(
      'the job to run on a borrower',
      async () => {
        const job = await home.admin.job(id);
        return job.state === 'running' ? job.attempts.at(-1)!.via : null;
      },
      { timeoutMs: 60_000 },
    );
    return { id, on: borrowers.find((b) => b.serverId === via)! };
  }

  it('a split shorter than a lease changes nothing: the attempt runs on and its result is taken once', async () => {
    const { id, on } = await runningJob(8);
    net.partition('home', on.host);
    await new Promise((r) => setTimeout(r, LEASE_MS / 4));
    net.heal('home');
    const job = await jobEnded(home.admin, id, 120_000);
    assert.equal(job.state, 'done', `the job ends done: ${job.reason}`);
    assert.equal(job.attempts.length, 1, 'no second attempt');
    assert.equal(reportedAttempts(job), 1);
    assert.equal(job.stdoutTail, 'finished\n');
  });

  for (const direction of ['both', 'a->b'] as const) {
    it(`a split of several leases (${direction === 'both' ? 'both ways' : 'home to borrower only'}): the job comes back by the lease rules, ends once, and the link heals by itself`, async () => {
      const { id, on } = await runningJob(10);
      net.partition('home', on.host, direction);
      // Home gives the attempt up when its lease runs out, and the other borrower takes the job.
      await until('home to take the attempt back', async () => (await home.admin.job(id)).attempts[0]?.how === 'lease-expired', { timeoutMs: 60_000 });
      // Several leases: whatever the cut-off borrower kept of attempt 1 cannot reach home.
      await new Promise((r) => setTimeout(r, 3 * LEASE_MS));
      net.heal('home');
      await linkUp(home, on, LINK_RETURNS_MS);
      const job = await jobEnded(home.admin, id, 120_000);
      assert.equal(job.state, 'done', `the job ends done: ${job.reason}`);
      assert.equal(job.attempts[0]!.how, 'lease-expired', 'no result of attempt 1 was taken after its lease expired');
      assert.notEqual(job.attempts.at(-1)!.via, on.serverId, 'the other borrower ran the job');
      assert.equal(reportedAttempts(job), 1, 'exactly one result taken');
      assert.equal(job.attempts.at(-1)!.how, 'exited');
    });
  }

  it('no job had two attempts alive at once', () => {
    watch.scan();
    assert.deepEqual(watch.overlaps, []);
    assert.ok(watch.seen.size >= 3, 'the watch saw the jobs run');
  });
});
