import { dispatch } from './dispatch.js';
import type { Wan } from './lib.js';
import { wakeup } from './wakeup.js';

/** The round trips the WAN figures are taken at, in ms. */
export const WAN_RTTS = [0, 10, 40, 100];

export interface WanRun {
  rttMs: number;
  wakeP50: number;
  wakeP99: number;
  dispatchJobsPerS: number;
}

/**
 * Delegation across a wide-area path: the delegated wake-up (wakeup.ts: a job
 * submitted at home until the idle worker of the asking server holds it) and
 * the delegated dispatch rate (dispatch.ts), with every byte between the two
 * servers crossing a delaying relay, `rttMs` the round trip and jitter ± a
 * quarter of it (40 ms ± 10 ms). Loss is left to the fault suite
 * (test/faults/wan.test.ts), which drops packets with nftables in network
 * namespaces and needs root.
 */
export async function wan(rttMs: number, samples: number, jobs: number, workers: number, cores: number): Promise<WanRun> {
  const path: Wan = { oneWayMs: rttMs / 2, jitterMs: rttMs / 8 };
  const wake = await wakeup(samples, { delegated: true, wan: path });
  const run = await dispatch(jobs, workers, { delegated: true, wan: path, cores });
  return { rttMs, wakeP50: wake.p50, wakeP99: wake.p99, dispatchJobsPerS: run.jobsPerS };
}
