import { mkdir, open, readFile } from 'node:fs/promises';
import { utf8Part, type LogPart, type PartOf } from './log-part.js';
import { join } from 'node:path';
import { fsyncDir } from '../../persistence/durable-file.js';

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

  /** A part of the stored text, reading only that part of the file; null when the attempt left none. */
  async readPart(jobId: string, attempt: number, stream: 'stdout' | 'stderr', want: PartOf): Promise<LogPart | null> {
    let fh;
    try {
      fh = await open(join(this.folder(jobId), `${attempt}.${stream}`), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      const { size } = await fh.stat();
      return await utf8Part(size, want, async (start, end) => {
        const buf = Buffer.alloc(end - start);
        const { bytesRead } = await fh.read(buf, 0, buf.length, start);
        return buf.subarray(0, bytesRead);
      });
    } finally {
      await fh.close();
    }
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
