import { z } from 'zod';
import { LAUNCHER_KINDS, TEMPLATE_VARS, unknownPlaceholders } from './launcher.js';

/**
 * The `launchers` setting: each entry is one batch system queue the server
 * may grow onto, with what each pilot asks for and the policy that decides
 * how many to keep. Checked with the rest of the settings at start-up.
 */

const DAY = 24 * 3600;

/** Words Slurm and Grid Engine take as partition, queue, project, account or resource names. */
const batchWord = z.string().min(1).max(128).regex(/^[A-Za-z0-9._,+@-]+$/, 'must be letters, digits and . _ , + @ -');

const directive = z
  .string()
  .min(1)
  .max(512)
  // A newline would end the directive line and put a command into the batch script.
  .regex(/^[^\n\r\0]+$/, 'must be one line')
  .refine((d) => unknownPlaceholders(d).length === 0, {
    message: `may use only the placeholders ${TEMPLATE_VARS.map((v) => `{${v}}`).join(' ')}`,
  });

export const launcherSchema = z.strictObject({
  /** Names the launcher in logs, `cpcc pilots` and pilot names. */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/, 'must be 1-32 letters, digits, _ or -, starting with a letter or digit'),
  /** The batch system; a kind whose launcher is not built is refused here, not at the first submission. */
  kind: z.enum(LAUNCHER_KINDS, {
    error: (iss) =>
      iss.input === undefined ? `is required; supported: ${LAUNCHER_KINDS.join(', ')}` : `${JSON.stringify(iss.input)} is not supported; supported: ${LAUNCHER_KINDS.join(', ')}`,
  }),
  /** The partition (Slurm) or queue (Grid Engine, qsub -q); the batch system's default when left out. */
  partition: batchWord.optional(),
  /** The account (Slurm) or project (Grid Engine, qsub -P) pilots are charged to. */
  account: batchWord.optional(),
  /** Grid Engine: the parallel environment a pilot's cores are slots of (qsub -pe); needed when cores > 1. */
  parallelEnvironment: batchWord.optional(),
  /** Grid Engine: the resource memory is asked as, per slot (qsub -l h_vmem=…, mem_free=…); not asked for when left out. */
  memoryResource: batchWord.optional(),
  /** Pilots queued or running at once, at most. 0 turns the launcher off. */
  maxPilots: z.int().min(0).max(10_000),
  /** What each pilot asks for, and offers to the server as a worker. */
  cores: z.int().min(1).max(4096).default(1),
  memoryMb: z.int().min(1).max(64 * 1024 * 1024).default(1024),
  wallTimeS: z.number().min(60).max(365 * DAY).default(3600),
  /** A pilot's worker stops after running nothing this long, giving its slot back. */
  idleExitS: z.number().min(1).max(30 * DAY).default(300),
  /** Extra batch directives, one line each, e.g. "--qos=normal" or "--constraint={partition}-fast". */
  directives: z.array(directive).max(64).default([]),
  /** How often the batch system is asked about pilots and demand is looked at. */
  pollS: z.number().min(0.2).max(3600).default(10),
  /** A pilot that runs but whose worker has not registered after this long is given up. */
  startTimeoutS: z.number().min(5).max(DAY).default(600),
  /** A pilot still waiting in the batch queue after this long is cancelled. */
  queueTimeoutS: z.number().min(10).max(30 * DAY).default(DAY),
  /** The URL pilots reach this server by; by default https://<publicHost or host>:<secure port>. */
  serverUrl: z.url({ protocol: /^https$/ }).optional(),
  /** Where pilot folders (batch script, token, CA, output) go; must be visible on the batch nodes. Default `<home>/pilots`. */
  stageDir: z.string().min(1).max(4096).optional(),
  /** The command that starts cpc-worker on a batch node; by default this Node.js and the cpc-worker next to this server. */
  workerCommand: z.array(z.string().min(1).max(4096).regex(/^[^\n\r\0]+$/, 'must be one line')).min(1).max(64).optional(),
  /** Folder of the batch system's commands (sbatch, squeue, scancel); by default PATH. */
  binDir: z.string().min(1).max(4096).optional(),
  /** Environment for the batch system's commands, e.g. SLURM_CONF. */
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string().max(4096)).optional(),
});

export type LauncherConfig = z.output<typeof launcherSchema>;

export const launchersSchema = z.array(launcherSchema).max(32).superRefine((list, ctx) => {
  const seen = new Set<string>();
  list.forEach((l, i) => {
    if (seen.has(l.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `launcher name '${l.name}' is used twice` });
    seen.add(l.name);
    if (l.kind !== 'sge') {
      for (const key of ['parallelEnvironment', 'memoryResource'] as const) {
        if (l[key] !== undefined) ctx.addIssue({ code: 'custom', path: [i, key], message: `is a Grid Engine setting; kind "${l.kind}" does not take it` });
      }
    } else if (l.cores > 1 && l.parallelEnvironment === undefined) {
      // Grid Engine gives a job more than one slot only through a parallel environment.
      ctx.addIssue({ code: 'custom', path: [i, 'parallelEnvironment'], message: `is needed for pilots of ${l.cores} cores on Grid Engine (the parallel environment their slots come from)` });
    }
  });
});
