/**
 * lowdb storage for small documents (config, users, tokens, trust store)
 * that survives power cuts: lowdb's own JSONFile neither syncs nor renames
 * atomically, and its presets fall back to memory under NODE_ENV=test.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Low } from 'lowdb';
import type { Adapter } from 'lowdb';
import { removeTempFiles, writeFileDurable } from './durable-file.js';

export interface DocumentOptions {
  /** Exact permission bits of the file, e.g. 0o600 for secrets. */
  mode?: number;
}

export class DurableJSONFile<T> implements Adapter<T> {
  // Writes run one at a time so an older state can never be renamed over a newer one.
  private chain: Promise<void> = Promise.resolve();

  constructor(
    readonly filename: string,
    private readonly opts: DocumentOptions = {},
  ) {}

  async read(): Promise<T | null> {
    let text: string;
    try {
      text = await fsp.readFile(this.filename, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      // Falling back to defaults here would silently drop users or keys.
      throw new Error(`${this.filename} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Serialises `data` at call time, so later changes to it belong to the next write. */
  write(data: T): Promise<void> {
    const text = JSON.stringify(data, null, 2) + '\n';
    const run = this.chain.then(() => writeFileDurable(this.filename, text, { mode: this.opts.mode }));
    this.chain = run.catch(() => undefined);
    return run;
  }
}

/**
 * Applies a change to a document and writes it. If the write fails, the
 * change is undone in memory too, so that what is served never differs from
 * what is on disk.
 */
export async function changeDocument<T>(db: Low<T>, apply: () => void): Promise<void> {
  const before = structuredClone(db.data);
  try {
    apply();
    await db.write();
  } catch (err) {
    db.data = before;
    throw err;
  }
}

/**
 * Opens (creating its folder if needed) and reads a document. Until the first
 * write, a missing file reads as a copy of `defaults`.
 */
export async function openDocument<T>(file: string, defaults: T, opts: DocumentOptions = {}): Promise<Low<T>> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await removeTempFiles(file);
  const db = new Low<T>(new DurableJSONFile<T>(file, opts), structuredClone(defaults));
  await db.read();
  return db;
}
