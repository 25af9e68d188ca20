/**
 * Crash-safe whole-file replacement. A reader sees either the old content or
 * the new content, never a mix: the data goes to a temporary sibling, is
 * synced, renamed over the target, and the folder is synced so that the
 * rename itself survives a power cut.
 */
import fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

export type DurableData = string | Uint8Array | ReadonlyArray<string | Uint8Array>;

export interface DurableWriteOptions {
  /** Exact permission bits of the new file (umask does not apply). Without it: 0o644 minus umask. */
  mode?: number;
}

const TEMP_MARK = '.tmp-';

function dirSyncUnsupported(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  // Some file systems cannot fsync a folder, and Windows cannot open one;
  // there is nothing better to do than to carry on.
  if (code === 'EINVAL' || code === 'ENOTSUP') return true;
  return process.platform === 'win32' && (code === 'EISDIR' || code === 'EPERM' || code === 'EACCES');
}

export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch (err) {
    if (!dirSyncUnsupported(err)) throw err;
  } finally {
    await fh?.close();
  }
}

export function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (err) {
    if (!dirSyncUnsupported(err)) throw err;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

export async function writeFileDurable(
  file: string,
  data: DurableData,
  opts: DurableWriteOptions = {},
): Promise<void> {
  const tmp = `${file}${TEMP_MARK}${randomBytes(6).toString('hex')}`;
  const fh = await fsp.open(tmp, 'wx', opts.mode ?? 0o644);
  let open = true;
  try {
    if (opts.mode !== undefined) await fh.chmod(opts.mode);
    const chunks = typeof data === 'string' || data instanceof Uint8Array ? [data] : data;
    // writeFile continues from the current position, so successive calls append.
    for (const chunk of chunks) await fh.writeFile(chunk);
    await fh.sync();
    open = false;
    await fh.close();
    await fsp.rename(tmp, file);
  } catch (err) {
    if (open) await fh.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await fsyncDir(path.dirname(file));
}

/** Removes temporary files a crash left next to `file`; only call when no write to it is under way. */
export async function removeTempFiles(file: string): Promise<void> {
  const dir = path.dirname(file);
  const prefix = path.basename(file) + TEMP_MARK;
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  await Promise.all(
    names.filter((n) => n.startsWith(prefix)).map((n) => fsp.rm(path.join(dir, n), { force: true })),
  );
}
