import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CpcError } from '../../core/errors.js';

/**
 * A short lock on a server home, for cpc-server's own commands on this
 * machine. A starting server holds it from before it reads its accounts
 * until it is reachable (its runtime file and control socket are in
 * place); `cpc-server bundle` holds it while it decides whether a server
 * runs and, when none does, writes a token into the accounts document.
 * So a bundle made while a server starts either lands before the server
 * reads the document or asks the running server, never in between, where
 * the server would not know its token and would later write over it.
 *
 * The lock is a file made with O_EXCL holding the holder's pid; a file
 * whose process is gone (killed while holding it) is taken over.
 */
export async function withHomeLock<T>(home: string, what: string, fn: (release: () => void) => Promise<T>, waitMs = 15_000): Promise<T> {
  const dir = join(home, 'run');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'home.lock');
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const seen = readOr(path);
    const holder = Number(seen.trim());
    if (!Number.isInteger(holder) || holder <= 0 || !alive(holder)) {
      // Gone without letting go (or caught between making the file and writing its pid): after a
      // moment, if the file still says the same, it is taken over; O_EXCL decides between two that try.
      await new Promise((r) => setTimeout(r, 50));
      if (readOr(path) === seen) rmSync(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new CpcError('INVALID_STATE', `${what}: process ${holder} holds ${path}; try again when it is done`);
    await new Promise((r) => setTimeout(r, 50));
  }
  let held = true;
  const release = (): void => {
    if (!held) return;
    held = false;
    rmSync(path, { force: true });
  };
  try {
    return await fn(release);
  } finally {
    release();
  }
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
