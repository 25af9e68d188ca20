import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir } from '../persistence/durable-file.js';

/**
 * Full stdout and stderr of every attempt, one file each, under
 * `<home>/logs/<last two hex digits of the job id>/<job id>/`. The shard keeps
 * folders small; the last digits of a uuid v7 are random, the first are time.
 */
export class LogStore {
  constructor(private readonly dir: string) {}

  private folder(jobId: string): string {
    return join(this.dir, jobId.slice(-2), jobId);
  }

  /** Writes both streams of an attempt and fsyncs them before resolving. */
  async write(jobId: string, attempt: number, stdout: string, stderr: string): Promise<void> {
    const folder = this.folder(jobId);
    await mkdir(folder, { recursive: true });
    await Promise.all([
      writeSynced(join(folder, `${attempt}.stdout`), stdout),
      writeSynced(join(folder, `${attempt}.stderr`), stderr),
    ]);
    await fsyncDir(folder);
  }

  /** The stored text, or null when the attempt left none. */
  async read(jobId: string, attempt: number, stream: 'stdout' | 'stderr'): Promise<string | null> {
    try {
      return await readFile(join(this.folder(jobId), `${attempt}.${stream}`), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }
}

async function writeSynced(path: string, text: string): Promise<void> {
  const fh = await open(path, 'w', 0o640);
  try {
    await fh.writeFile(text);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}
