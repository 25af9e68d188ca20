/**
 * Finished jobs, kept on disk instead of in memory and still queryable.
 *
 * Layout: <dir>/<project>/<YYYY-MM-DD>.ndjson, one JSON object per line. The
 * day is the UTC creation day carried in the job's UUID v7 id, so the file of
 * any job is known from its id alone, and walking day files in name order
 * walks ids in order. A job can appear more than once (a crash between the
 * archive write and the journal entry that records it makes the job be
 * archived again); the last line wins.
 */
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir } from './durable-file.js';

export interface ArchivedJob {
  id: string;
  project: string;
  state?: string;
}

export interface ArchiveListOptions {
  state?: string;
  limit: number;
  /** Return only jobs whose id sorts after this one. */
  afterId?: string;
}

export interface ArchiveOptions {
  /** Permission bits of new day files. */
  mode?: number;
}

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const DAY_FILE = /^(\d{4}-\d{2}-\d{2})\.ndjson$/;
const READ_CHUNK_BYTES = 1024 * 1024;
const NEWLINE = 0x0a;

/** Creation time in ms encoded in a UUID v7 (its first 48 bits), or null if `id` is not one. */
export function uuidV7Millis(id: string): number | null {
  if (!UUID_V7.test(id)) return null;
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}

function dayOf(id: string): string | null {
  const ms = uuidV7Millis(id);
  return ms === null ? null : new Date(ms).toISOString().slice(0, 10);
}

/** Folder name for a project; never '.', '..', or anything containing a separator. */
function projectDirName(project: string): string {
  if (typeof project !== 'string' || project === '') throw new TypeError('archive: project name is empty');
  return encodeURIComponent(project).replace(/^\./, '%2E');
}

export class ArchiveStore<T extends ArchivedJob = ArchivedJob> {
  /** Day files whose folder entry is durable and whose last byte is a newline. */
  private readonly ready = new Set<string>();
  private readonly locks = new Map<string, Promise<void>>();
  /** Day files opened for reading so far (lookups must not read what they need not). */
  filesRead = 0;

  constructor(
    readonly dir: string,
    private readonly opts: ArchiveOptions = {},
  ) {}

  /** Resolves once every job is written and fdatasync'ed. One write per day file. */
  async append(jobs: readonly T[]): Promise<void> {
    const byFile = new Map<string, string[]>();
    for (const job of jobs) {
      const day = dayOf(job.id);
      if (day === null) throw new TypeError(`archive: job id ${String(job.id)} is not a UUID v7`);
      const file = path.join(this.dir, projectDirName(job.project), `${day}.ndjson`);
      let lines = byFile.get(file);
      if (!lines) byFile.set(file, (lines = []));
      lines.push(JSON.stringify(job));
    }
    await Promise.all([...byFile].map(([file, lines]) => this.locked(file, () => this.appendLines(file, lines))));
  }

  /** The last archived version of a job, or null. Without `project`, every project is searched. */
  async get(id: string, project?: string): Promise<T | null> {
    const day = dayOf(id);
    if (day === null) return null;
    const projectDirs = project !== undefined ? [projectDirName(project)] : await this.projectDirs();
    const needle = Buffer.from(id, 'utf8');
    for (const pdir of projectDirs) {
      let found: T | null = null;
      await this.forEachLine(path.join(this.dir, pdir, `${day}.ndjson`), (line) => {
        if (line.indexOf(needle) < 0) return;
        const job = parseJob<T>(line);
        if (job && job.id === id) found = job;
      });
      if (found) return found;
    }
    return null;
  }

  /**
   * Jobs of a project in id order, one version per id. Day files before the
   * one holding `afterId` are not read, and reading stops at the day that
   * fills the page.
   */
  async list(project: string, opts: ArchiveListOptions): Promise<T[]> {
    const out: T[] = [];
    if (opts.limit <= 0) return out;
    const after = opts.afterId;
    const fromDay = after !== undefined ? dayOf(after) : null;
    for (const day of await this.days(project)) {
      if (fromDay !== null && day < fromDay) continue;
      const latest = new Map<string, T>();
      await this.forEachLine(this.dayFile(project, day), (line) => {
        const job = parseJob<T>(line);
        if (job && (after === undefined || job.id > after)) latest.set(job.id, job);
      });
      const page = [...latest.values()]
        .filter((job) => opts.state === undefined || job.state === opts.state)
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      for (const job of page) {
        out.push(job);
        if (out.length >= opts.limit) return out;
      }
    }
    return out;
  }

  /** Number of jobs per state (jobs without one count as "unknown"), one version per id. */
  async count(project: string): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const day of await this.days(project)) {
      const states = new Map<string, string>();
      await this.forEachLine(this.dayFile(project, day), (line) => {
        const job = parseJob<T>(line);
        if (job) states.set(job.id, typeof job.state === 'string' ? job.state : 'unknown');
      });
      for (const state of states.values()) counts[state] = (counts[state] ?? 0) + 1;
    }
    return counts;
  }

  /**
   * Every archived job's id with its project, read from every day file: how
   * the index of archived ids is built once for state saved before it existed.
   */
  async allIds(): Promise<[id: string, project: string][]> {
    const out: [string, string][] = [];
    for (const pdir of await this.projectDirs()) {
      const project = decodeURIComponent(pdir);
      const entries = await fsp.readdir(path.join(this.dir, pdir), { withFileTypes: true });
      for (const e of entries) {
        if (!e.isFile() || !DAY_FILE.test(e.name)) continue;
        await this.forEachLine(path.join(this.dir, pdir, e.name), (line) => {
          const job = parseJob<T>(line);
          if (job) out.push([job.id, project]);
        });
      }
    }
    return out;
  }

  private forEachLine(file: string, onLine: (line: Buffer) => void): Promise<void> {
    this.filesRead++;
    return forEachLine(file, onLine);
  }

  async removeProject(project: string): Promise<void> {
    const pdir = path.join(this.dir, projectDirName(project));
    await Promise.all([...this.locks].filter(([file]) => path.dirname(file) === pdir).map(([, p]) => p));
    await fsp.rm(pdir, { recursive: true, force: true });
    for (const file of this.ready) if (path.dirname(file) === pdir) this.ready.delete(file);
    await fsyncDir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  private dayFile(project: string, day: string): string {
    return path.join(this.dir, projectDirName(project), `${day}.ndjson`);
  }

  private async days(project: string): Promise<string[]> {
    const names = await readdirOrEmpty(path.join(this.dir, projectDirName(project)));
    const days: string[] = [];
    for (const name of names) {
      const m = DAY_FILE.exec(name);
      if (m) days.push(m[1]!);
    }
    return days.sort();
  }

  private async projectDirs(): Promise<string[]> {
    const entries = await fsp.readdir(this.dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw err;
    });
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  }

  private async appendLines(file: string, lines: string[]): Promise<void> {
    const fresh = !this.ready.has(file);
    let prefix = '';
    if (fresh) {
      await mkdirDurable(path.dirname(file), this.dir);
      // A crash can leave a line without its newline; the next line must not be glued to it.
      if (!(await endsWithNewlineOrEmpty(file))) prefix = '\n';
    }
    this.ready.delete(file);
    const fh = await fsp.open(file, 'a', this.opts.mode ?? 0o600);
    try {
      await fh.writeFile(prefix + lines.join('\n') + '\n');
      await fh.datasync();
    } finally {
      await fh.close();
    }
    if (fresh) await fsyncDir(path.dirname(file));
    this.ready.add(file);
  }

  /** Runs fn after every earlier call for the same file; big writes are not atomic. */
  private locked(file: string, fn: () => Promise<void>): Promise<void> {
    const run = (this.locks.get(file) ?? Promise.resolve()).then(fn);
    const tail = run.catch(() => undefined);
    this.locks.set(file, tail);
    void tail.then(() => {
      if (this.locks.get(file) === tail) this.locks.delete(file);
    });
    return run;
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Creates `dir` and any missing parents, and syncs the folders that gained an entry. */
async function mkdirDurable(dir: string, root: string): Promise<void> {
  const first = await fsp.mkdir(dir, { recursive: true });
  if (first === undefined) return;
  // Every folder from `first` down to `dir` is new, so each one's parent gained an entry.
  for (let d = dir; ; d = path.dirname(d)) {
    await fsyncDir(path.dirname(d));
    if (d === first || d === root || d === path.dirname(d)) break;
  }
}

async function endsWithNewlineOrEmpty(file: string): Promise<boolean> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
  try {
    const { size } = await fh.stat();
    if (size === 0) return true;
    const last = Buffer.alloc(1);
    await fh.read(last, 0, 1, size - 1);
    return last[0] === NEWLINE;
  } finally {
    await fh.close();
  }
}

function parseJob<T extends ArchivedJob>(line: Buffer): T | null {
  let value: unknown;
  try {
    value = JSON.parse(line.toString('utf8'));
  } catch {
    return null;
  }
  if (value === null || typeof value !== 'object' || typeof (value as ArchivedJob).id !== 'string') return null;
  return value as T;
}

/**
 * Calls onLine with each line of a file (without its newline), reading in
 * chunks. The buffer passed is only valid during the call. A missing file has
 * no lines.
 */
async function forEachLine(file: string, onLine: (line: Buffer) => void): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    let buf = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    let filled = 0;
    for (;;) {
      if (filled === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, filled);
        buf = bigger;
      }
      const { bytesRead } = await fh.read(buf, filled, buf.length - filled, null);
      const end = filled + bytesRead;
      let start = 0;
      for (let nl = buf.indexOf(NEWLINE, filled); nl >= 0 && nl < end; nl = buf.indexOf(NEWLINE, start)) {
        if (nl > start) onLine(buf.subarray(start, nl));
        start = nl + 1;
      }
      if (bytesRead === 0) {
        if (end > start) onLine(buf.subarray(start, end));
        return;
      }
      buf.copy(buf, 0, start, end);
      filled = end - start;
    }
  } finally {
    await fh.close();
  }
}
