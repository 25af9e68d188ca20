import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileDurable } from '../../persistence/durable-file.js';
import type { Logger } from '../../common/logger.js';
import { LoginThrottle, type SavedThrottle, type ThrottleOptions } from './throttle.js';

/**
 * The login throttle kept across restarts in `<home>/state/login-throttle.json`:
 * read at start, written a few seconds after failed logins change it and at
 * a clean stop. A crash loses at most those few seconds of failures.
 */

const entry = z.tuple([z.string().max(1024), z.int().min(0), z.number(), z.number()]);
const savedSchema = z.strictObject({ users: z.array(entry), addresses: z.array(entry) });

const SAVE_EVERY_MS = 5000;

export interface ThrottleFile {
  throttle: LoginThrottle;
  /** Saves what changed and stops saving. */
  close(): Promise<void>;
}

export async function openLoginThrottle(home: string, opts: ThrottleOptions, log: Logger): Promise<ThrottleFile> {
  const file = join(home, 'state', 'login-throttle.json');
  const throttle = new LoginThrottle(opts);
  try {
    const parsed = savedSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
    if (parsed.success) throttle.restore(parsed.data as SavedThrottle);
    else log.warn('the saved login throttle is not readable; starting without it', { file });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn('the saved login throttle is not readable; starting without it', { file, err: String(err) });
  }
  let saved = throttle.changes;
  let saving: Promise<void> = Promise.resolve();
  const save = (): Promise<void> => {
    if (throttle.changes === saved) return saving;
    saved = throttle.changes;
    saving = saving
      .then(() => writeFileDurable(file, JSON.stringify(throttle.save()), { mode: 0o600 }))
      .catch((err: unknown) => log.error('could not save the login throttle', { err: String(err) }));
    return saving;
  };
  const timer = setInterval(() => void save(), SAVE_EVERY_MS);
  timer.unref();
  return {
    throttle,
    close: async () => {
      clearInterval(timer);
      await save();
    },
  };
}
