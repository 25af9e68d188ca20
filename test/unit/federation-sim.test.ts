/**
 * The simulated federation (bench/federation-sim.ts) keeps what docs/BENCHMARKS.md
 * says of it: every job runs exactly once, no home does worse than alone, and
 * the messages per link stay flat as the federation grows.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_SIM, simulate } from '../../bench/federation-sim.js';

describe('simulated federation', () => {
  it('runs every job once, helps every home, and grows its messages with its links', () => {
    const small = simulate({ ...DEFAULT_SIM, servers: 100, seed: 3 });
    const large = simulate({ ...DEFAULT_SIM, servers: 400, seed: 3 });
    for (const r of [small, large]) {
      assert.equal(r.exactlyOnce, true);
      assert.ok(r.delegated > 0, 'some jobs were borrowed');
      assert.ok(r.speedupMin >= 1, `a home did worse than alone: ${r.speedupMin}`);
      assert.ok(r.messagesPerDelegatedJob >= 4, 'a delegated job costs at least its claim, result and their answers');
    }
    assert.ok(large.links > 3 * small.links);
    // Flat per link: a quadratic cost would have quadrupled it.
    assert.ok(large.messagesPerLink < 2 * small.messagesPerLink, `${small.messagesPerLink} → ${large.messagesPerLink} messages per link`);
  });
});
