/**
 * The reaper process (reaper.ts): reads what the worker runs from its stdin,
 * and when that pipe ends (the worker is gone, by exit or by SIGKILL) kills
 * every process of the attempts still listed, then exits.
 */
import { killAttempt, type AttemptRecord } from './reaper.js';

const live = new Map<string, AttemptRecord>();
let buffer = '';

// Signals that reach a whole terminal session or process group are not for it; only the pipe's end is.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.on(sig, () => {});

process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  buffer += chunk;
  let nl: number;
  while ((nl = buffer.indexOf('\n')) >= 0) {
    const line = buffer.slice(0, nl);
    buffer = buffer.slice(nl + 1);
    try {
      const msg = JSON.parse(line) as { add?: AttemptRecord; remove?: string };
      if (msg.add) live.set(`${msg.add.jobId}-${msg.add.attempt}`, msg.add);
      else if (typeof msg.remove === 'string') live.delete(msg.remove);
    } catch {
      // a line cut short by the worker's death
    }
  }
});
process.stdin.on('close', () => void reap());
process.stdin.on('end', () => void reap());

let reaping = false;
async function reap(): Promise<void> {
  if (reaping) return;
  reaping = true;
  await Promise.all([...live.values()].map((rec) => killAttempt(rec).catch(() => {})));
  process.exit(0);
}
