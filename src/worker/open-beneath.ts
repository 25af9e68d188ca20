import { constants, existsSync, type Stats } from 'node:fs';
import { open, readdir, realpath, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Opening files inside a job's folder without following symbolic links
 * anywhere on the way. The job owns the folder and may still be changing it
 * while the worker reads (a process it left behind), so a name checked first
 * and opened after could meanwhile lead out of the folder: to the worker's
 * token, or another job's files.
 *
 * Every name is opened once, with O_NOFOLLOW, and judged by what the open
 * handle is (fstat), never by a second look at the path. Folders on the way
 * are opened the same way and kept open, and the next name is opened through
 * the open folder, `/proc/self/fd/<fd>/<name>`: the kernel resolves that
 * magic link to the very folder the descriptor holds, wherever its path now
 * points, which is what openat(2) gives C (Node has no openat). Where
 * /proc/self/fd is missing the name is opened by its whole path, still with
 * O_NOFOLLOW, and the handle must then be the same file (device and inode)
 * as the one at that path with every symbolic link resolved, and that path
 * must be the expected one inside the folder.
 */

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY } = constants;
const THROUGH_FD = existsSync('/proc/self/fd');

export class OpenFolder {
  private constructor(
    readonly handle: FileHandle,
    /** The folder's real path when it was opened (for the fallback's check). */
    private readonly real: string,
  ) {}

  /** Opens the job's folder itself, which must not be a symbolic link. */
  static async open(dir: string): Promise<OpenFolder> {
    const handle = await open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    try {
      return new OpenFolder(handle, await realpath(dir));
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  private where(name: string): string {
    return THROUGH_FD ? `/proc/self/fd/${this.handle.fd}/${name}` : join(this.real, name);
  }

  /** Names in the folder, sorted. */
  async names(): Promise<string[]> {
    return (await readdir(THROUGH_FD ? `/proc/self/fd/${this.handle.fd}` : this.real)).sort();
  }

  /**
   * One name in this folder, opened without following a link, and what it
   * is; null when it is a symbolic link, gone, or neither a file nor a folder.
   */
  async child(name: string): Promise<{ handle: FileHandle; stats: Stats; folder: OpenFolder | null } | null> {
    if (name === '' || name === '.' || name === '..' || name.includes('/')) return null;
    let handle: FileHandle;
    try {
      // Non-blocking, so a FIFO the job left does not hang the worker; it is refused below.
      handle = await open(this.where(name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES' || code === 'ENXIO' || code === 'EPERM') return null;
      throw err;
    }
    try {
      const stats = await handle.stat();
      if (!stats.isFile() && !stats.isDirectory()) throw new Skip();
      const path = join(this.real, name);
      if (!THROUGH_FD) {
        const resolved = await realpath(path);
        const there = await stat(resolved);
        if (resolved !== path || there.dev !== stats.dev || there.ino !== stats.ino) throw new Skip();
      }
      return { handle, stats, folder: stats.isDirectory() ? new OpenFolder(handle, path) : null };
    } catch (err) {
      await handle.close().catch(() => undefined);
      if (err instanceof Skip || (err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /**
   * A regular file at `rel` (`a/b/c`) beneath this folder, each folder on the
   * way opened as above; null when anything on the way is not what it must be.
   */
  async openFile(rel: string): Promise<{ handle: FileHandle; size: number } | null> {
    const parts = rel.split('/');
    const opened: OpenFolder[] = [];
    let at: OpenFolder = this;
    try {
      for (const [i, part] of parts.entries()) {
        const c = await at.child(part);
        if (!c) return null;
        if (i === parts.length - 1) {
          if (c.folder) {
            await c.handle.close();
            return null;
          }
          return { handle: c.handle, size: c.stats.size };
        }
        if (!c.folder) {
          await c.handle.close();
          return null;
        }
        opened.push(c.folder);
        at = c.folder;
      }
      return null;
    } finally {
      for (const f of opened) await f.close();
    }
  }

  close(): Promise<void> {
    return this.handle.close().catch(() => undefined);
  }
}

class Skip extends Error {}
