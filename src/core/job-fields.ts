/**
 * What each field of a job (a JobInput: one object of a job file, or of a
 * submit request) means, in the words docs/JOB-FILE.md shows. The types and
 * bounds come from the server's schema (scripts/write-job-file-doc.ts joins
 * the two); a test checks that both name the same fields. cpcc uses the names
 * to tell a misspelt field in a job file at once.
 */
import type { JobInput } from './wire.js';

export const JOB_FIELDS: Record<keyof JobInput, string> = {
  key: 'a name for this job within the file, so that other jobs of the file can name it in `after` (or in `inputs` as `job`)',
  name: 'shown in listings and the dashboard',
  argv: 'the command and its arguments, run without a shell; give exactly one of `argv` and `shell`',
  shell: 'a shell line, run with `sh -c`; give exactly one of `argv` and `shell`',
  env: 'environment variables for the job, `{"NAME": "value"}`',
  cores: 'cores the job needs (default 1)',
  memoryMb: 'memory the job needs and may use, in MB; a string with a unit (`"512M"`, `"4G"`) is taken too; an attempt past it ends `oom` (default 0: any, no limit)',
  priority: 'higher runs first among your own jobs (default 0)',
  maxRetries: 'how often a failed attempt (non-zero exit) is tried again (default 0)',
  timeoutS: 'wall-clock limit per attempt in seconds, or a string with a unit (`"90m"`, `"2h"`); an attempt past it ends `timeout`; `wallTimeS` in a job file is another name for it; null for none (default none)',
  killGraceS: 'seconds between SIGTERM and SIGKILL when an attempt is stopped, or a string with a unit (default 10)',
  after: 'jobs that must be done before this one starts: ids of jobs of the project, or keys of jobs of the file',
  inputs: 'files the job finds in its folder: `{"name", "sha256", "size"}` of an upload, `{"name", "job", "output"}` a file another job kept, `{"name", "value"}` a project value',
  retry: 'ask for more after an attempt ends `oom` or `timeout`: `{"oom": {"factor", "maxMemoryMb"}, "timeout": {"factor", "maxWallTimeS"}, "attempts"}`; the next attempt asks for the larger of the request and the measured use, times the factor, up to the maximum (attempts: default 3)',
  outputs: 'files kept after the job: `{"glob"}` (`*`, `?`, `**`), with `"to": "@VALUE"` to store the one match as a project value',
};

export const JOB_FIELD_NAMES = Object.keys(JOB_FIELDS) as (keyof JobInput)[];
