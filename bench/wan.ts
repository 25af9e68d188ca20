import { dispatch } from './dispatch.js';
import type { Wan } from './lib.js';
import { droppedPackets } from './wan-loss.js';
import { wakeup } from './wakeup.js';

/** The round trips the WAN figures are taken at, in ms. */
export const WAN_RTTS = [0, 10, 40, 100];

/** The loss the WAN figures are also taken with, in percent (as root only: wan-loss.ts). */
export const WAN_LOSS_PERCENT = 0.5;

export interface WanRun {
  rttMs: number;
  lossPercent: number;
  /** Packets the lossy path dropped during the run. */
  dropped: number;
  wakeP50: number;
  wakeP99: number;
  dispatchJobsPerS: number;
}

/**
 * Delegation across a wide-area path: the delegated wake-up (wakeup.ts: a job
 * submitted at home until the idle worker of the asking server holds it) and
 * the delegated dispatch rate (dispatch.ts), with every byte between the two
 * servers crossing a delaying relay, `rttMs` the round trip and jitter ± a
 * quarter of it (40 ms ± 10 ms), and with `lossPercent` that share of the
 * packets between them dropped at random (wan-loss.ts: nftables, root).
 */
export async function wan(rttMs: number, samples: number, jobs: number, workers: number, cores: number, lossPercent = 0): Promise<WanRun> {
  const path: Wan = { oneWayMs: rttMs / 2, jitterMs: rttMs / 8, lossPercent };
  const before = droppedPackets();
  const wake = await wakeup(samples, { delegated: true, wan: path });
  const run = await dispatch(jobs, workers, { delegated: true, wan: path, cores });
  return { rttMs, lossPercent, dropped: droppedPackets() - before, wakeP50: wake.p50, wakeP99: wake.p99, dispatchJobsPerS: run.jobsPerS };
}
