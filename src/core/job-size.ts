import { fail } from './errors.js';
import type { JobSpec } from './types.js';

/**
 * How big a job is, for the limits a server sets on what one user may leave
 * waiting: the bytes its command line and environment take when the worker
 * starts it, and a measure of what its spec holds in memory.
 *
 * Linux refuses to start a process (E2BIG) whose single argument or
 * `NAME=value` is 128 KiB or more, or whose arguments and environment
 * together pass a quarter of the stack limit (2 MiB with the usual 8 MiB);
 * a job that cannot start is better refused when it is submitted, in words
 * its submitter understands, than failed on a worker.
 */

/** The longest single argument or `NAME=value` Linux passes to a new process (MAX_ARG_STRLEN, its NUL included). */
export const MAX_ARG_BYTES = 128 * 1024 - 1;

export interface JobSizeLimits {
  /** Bytes of the command: argv, or the shell line with `sh -c`, each with its NUL. */
  maxArgvBytes: number;
  /** Bytes of the job's own environment, `NAME=value` and NUL each. */
  maxEnvBytes: number;
}

const utf8 = (s: string): number => Buffer.byteLength(s, 'utf8');

/** The command line's bytes as execve counts them. */
export function argvBytes(spec: Pick<JobSpec, 'argv' | 'shell'>): number {
  const args = spec.argv ?? (spec.shell !== undefined ? ['sh', '-c', spec.shell] : []);
  let n = 0;
  for (const a of args) n += utf8(a) + 1;
  return n;
}

export function envBytes(env: Record<string, string>): number {
  let n = 0;
  for (const k in env) n += utf8(k) + utf8(env[k]!) + 2;
  return n;
}

/**
 * Refuses a job whose command or environment could not be passed to a new
 * process, or is over the server's limits: ARGV_TOO_LARGE, ENV_TOO_LARGE.
 * `where` names the job in the user's words ("job 3", "job 'prep'").
 */
export function checkJobSize(spec: Pick<JobSpec, 'argv' | 'shell' | 'env'>, limits: JobSizeLimits, where: string): void {
  const args = spec.argv ?? (spec.shell !== undefined ? [spec.shell] : []);
  for (let i = 0; i < args.length; i++) {
    const n = utf8(args[i]!);
    if (n > MAX_ARG_BYTES) {
      const what = spec.argv ? `argument ${i + 1}` : 'the shell line';
      throw fail('ARGV_TOO_LARGE', `${where}: ${what} is ${n} bytes; a process takes at most ${MAX_ARG_BYTES} bytes in one argument`);
    }
  }
  const a = argvBytes(spec);
  if (a > limits.maxArgvBytes) {
    throw fail('ARGV_TOO_LARGE', `${where}: the command is ${a} bytes; this server takes at most ${limits.maxArgvBytes} (maxArgvBytes)`);
  }
  for (const k in spec.env) {
    const n = utf8(k) + utf8(spec.env[k]!) + 1;
    if (n > MAX_ARG_BYTES) throw fail('ENV_TOO_LARGE', `${where}: environment variable ${k} is ${n} bytes; a process takes at most ${MAX_ARG_BYTES} bytes in one`);
  }
  const e = envBytes(spec.env);
  if (e > limits.maxEnvBytes) {
    throw fail('ENV_TOO_LARGE', `${where}: the environment is ${e} bytes; this server takes at most ${limits.maxEnvBytes} (maxEnvBytes)`);
  }
}

/**
 * A measure of the memory a job's spec holds: the lengths of its strings
 * and a little for each field. Cheap, and the same for the same spec, so a
 * count kept by adding and taking it away never drifts.
 */
export function specBytes(spec: JobSpec): number {
  let n = 64 + (spec.name?.length ?? 0) + (spec.shell?.length ?? 0);
  for (const a of spec.argv ?? []) n += a.length + 8;
  for (const k in spec.env) n += k.length + spec.env[k]!.length + 16;
  for (const d of spec.after) n += d.length + 8;
  for (const i of spec.inputs ?? []) n += 32 + i.name.length + ('sha256' in i ? 72 : 'job' in i ? i.job.length + i.output.length : i.value.length);
  for (const o of spec.outputs ?? []) n += 16 + o.glob.length + (o.to?.length ?? 0);
  return n;
}
