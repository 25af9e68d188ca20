/**
 * Where `cpcc wait` starts: for each server and project, the first job
 * submitted from this cpcc home since the last wait there ended. `cpcc
 * submit` sets the mark when there is none or the last wait has ended;
 * `cpcc wait` (without ids) waits for the jobs from the mark on and, when it
 * ends, notes that it has, so the next submit starts a new batch and an old
 * failure does not fail a later wait. Ids grow with submission, so "from the
 * mark on" is "ids at or after the mark's".
 *
 * The marks live in `$CPCC_HOME/marks.json`, apart from the config, and are
 * replaced atomically (a crash leaves the old file or the new one).
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';

export const MARKS_FILE = 'marks.json';

export interface WaitMark {
  /** The first job of the batch. */
  from: string;
  /** A wait for this batch has ended. */
  waited: boolean;
}

type Marks = Record<string, WaitMark>;

const keyOf = (serverId: string, project: string) => `${serverId}/${project}`;

async function read(home: string): Promise<Marks> {
  try {
    const value = JSON.parse(await fsp.readFile(join(home, MARKS_FILE), 'utf8')) as unknown;
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Marks) : {};
  } catch {
    // A missing or damaged file is no marks: a wait then starts at the oldest unfinished job.
    return {};
  }
}

async function write(home: string, marks: Marks): Promise<void> {
  await fsp.mkdir(home, { recursive: true, mode: 0o700 });
  const tmp = join(home, `.${MARKS_FILE}.${randomBytes(6).toString('hex')}`);
  await fsp.writeFile(tmp, JSON.stringify(marks, null, 2) + '\n', { mode: 0o600 });
  await fsp.rename(tmp, join(home, MARKS_FILE));
}

export async function markOf(home: string, serverId: string, project: string): Promise<WaitMark | undefined> {
  const mark = (await read(home))[keyOf(serverId, project)];
  return mark && typeof mark.from === 'string' ? mark : undefined;
}

/** After a submit: `first` starts a new batch unless one is open (not yet waited for). */
export async function noteSubmitted(home: string, serverId: string, project: string, first: string): Promise<void> {
  const marks = await read(home);
  const key = keyOf(serverId, project);
  const open = marks[key];
  if (open && !open.waited && typeof open.from === 'string' && open.from <= first) return;
  marks[key] = { from: first, waited: false };
  await write(home, marks);
}

/** After a wait from `from` ended: the next submit starts a new batch. */
export async function noteWaited(home: string, serverId: string, project: string, from: string): Promise<void> {
  const marks = await read(home);
  const key = keyOf(serverId, project);
  if (marks[key]?.from !== from || marks[key]!.waited) return;
  marks[key] = { from, waited: true };
  await write(home, marks);
}
