/**
 * What the pilot conformance suite (test/integration/pilots.test.ts) needs
 * of a batch system: a real one started for the run, the launcher settings
 * that point at it, and the few things each says in its own words. A new
 * launcher is tested by writing one of these next to its cluster helper and
 * adding it to the suite's list.
 */

export interface BatchJob {
  id: string;
  name: string;
  state: string;
}

export interface BatchCluster {
  /** Launcher settings that submit to this cluster (kind, partition or queue, env, …). */
  launcher: Record<string, unknown>;
  /** The batch jobs the batch system lists as queued or running, in its words. */
  liveJobs(): Promise<BatchJob[]>;
  /** Ends a batch job as a site's admin or the batch system itself would (scancel, qdel). */
  kill(batchId: string): Promise<void>;
  stop(): Promise<void>;
}

export interface BatchDriver {
  /** The launcher kind, as in the settings. */
  kind: string;
  title: string;
  /** Set to 1 (as .ci/run does) to fail instead of skipping where the batch system cannot be started. */
  requireVar: string;
  start(): Promise<{ cluster: BatchCluster; skip?: undefined } | { cluster?: undefined; skip: string }>;
  /** The pilot's batch state once its worker exited by itself. */
  completedState: string;
  /** The pilot's batch state once the batch system killed it (as it was seen: being deleted, or ended). */
  killedState: RegExp;
  /** A directive that keeps a job waiting in the queue (held). */
  holdDirective: string;
  /** What the batch system says when asked for a partition or queue it does not have. */
  unknownQueueError: RegExp;
  /** The file the batch system writes a pilot's output to. */
  outputName(batchId: string): string;
}
