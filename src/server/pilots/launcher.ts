/**
 * The launcher plugin interface: how the server puts pilots (cpc-workers
 * started as batch jobs) on a site's batch system, asks after them and
 * takes them back. A launcher knows its batch system and nothing of the
 * server: the pilot manager hands it a finished request and reads back
 * batch ids and states.
 */

/** The batch systems cpc submits pilots to. A kind is listed here only once its launcher is built and tested against the real system. */
export const LAUNCHER_KINDS = ['slurm', 'sge'] as const;
export type LauncherKind = (typeof LAUNCHER_KINDS)[number];

/** What one pilot asks the batch system for, and what it runs. */
export interface PilotRequest {
  /** The batch job's name (shows in squeue and the like). */
  jobName: string;
  cores: number;
  memoryMb: number;
  wallTimeS: number;
  partition?: string;
  account?: string;
  /** Extra directives, one per line, already rendered (e.g. `--qos=long` for Slurm, `-l arch=lx-amd64` for Grid Engine). */
  directives: string[];
  /** Shell lines the batch job runs. */
  commands: string[];
  /** A folder the pilot may write to: the batch script and the batch system's output go here. */
  dir: string;
}

/**
 * Where a batch job is, in the batch system's words (`raw`, e.g. PENDING)
 * and in the manager's:
 *
 *   queued   waiting for a slot
 *   running  started (its worker may not have registered yet)
 *   done     ended by itself
 *   killed   ended by someone: cancelled, preempted, out of time
 *   failed   ended with an error, or the node failed
 */
export type BatchPhase = 'queued' | 'running' | 'done' | 'killed' | 'failed';

export interface BatchStatus {
  phase: BatchPhase;
  raw: string;
  /** The batch system's reason, when it gives one (why a job waits, why it failed). */
  reason?: string;
}

/** Why a launcher call failed, for the log and `cpcc pilots`. */
export type LauncherFailure =
  /** The batch system refused the request (bad partition, account, limits). */
  | 'refused'
  /** The batch system could not be reached or did not answer in time. */
  | 'unreachable'
  /** The batch system's commands are missing here. */
  | 'missing';

export class LauncherError extends Error {
  constructor(
    readonly failure: LauncherFailure,
    message: string,
  ) {
    super(message);
    this.name = 'LauncherError';
  }
}

export interface Launcher {
  readonly kind: LauncherKind;
  /** Submits one pilot; resolves with its batch id. */
  submit(req: PilotRequest): Promise<string>;
  /**
   * The states of the given batch jobs. A job the batch system does not know
   * (any more) is absent from the answer. Rejects when the batch system cannot
   * be asked; the caller then knows nothing new.
   */
  status(batchIds: readonly string[]): Promise<Map<string, BatchStatus>>;
  /** Cancels a batch job; one that has ended already is no error. */
  cancel(batchId: string): Promise<void>;
  /** The file, in the pilot's folder, that the batch system writes the job's output to. */
  outputName(batchId: string): string;
}

// ---- directive templates ---------------------------------------------------------

/** The placeholders a directive template may use, as `{name}`. */
export const TEMPLATE_VARS = ['cores', 'memoryMb', 'memoryGb', 'wallTimeS', 'wallTimeMin', 'partition', 'account', 'launcher', 'pilotId', 'jobName'] as const;
export type TemplateVar = (typeof TEMPLATE_VARS)[number];

const PLACEHOLDER = /\{([A-Za-z]+)\}/g;

/** The placeholders of a template that are not known; empty when it is fine. */
export function unknownPlaceholders(template: string): string[] {
  const known = new Set<string>(TEMPLATE_VARS);
  return [...template.matchAll(PLACEHOLDER)].map((m) => m[1]!).filter((name) => !known.has(name));
}

/** Fills `{name}` placeholders; an unknown one is left as written (config checks catch those first). */
export function renderTemplate(template: string, vars: Partial<Record<TemplateVar, string | number>>): string {
  return template.replace(PLACEHOLDER, (whole, name: string) => {
    const v = vars[name as TemplateVar];
    return v === undefined ? whole : String(v);
  });
}

/** Quotes a word for /bin/sh: single quotes, with embedded ones closed and escaped. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
