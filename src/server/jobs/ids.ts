/**
 * Ids of jobs and workers: UUID v7 (RFC 9562), time-ordered and, within one
 * process, strictly increasing. A 48-bit millisecond time, then a 31-bit
 * counter that starts at a random value each millisecond and counts up
 * within it (so ids made in the same millisecond keep their order), then
 * random bits.
 *
 * The random bytes come from a pool refilled 4 KiB at a time: asking the
 * system for 16 bytes per id cost more than the rest of a one-job submit,
 * and 100 000 ids for one bulk submit took a large part of a second.
 */
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let used = POOL_BYTES;

/** `n` random bytes at `pool[at]`, valid until the next call. */
function random(n: number): number {
  if (used + n > POOL_BYTES) {
    randomFillSync(pool);
    used = 0;
  }
  const at = used;
  used += n;
  return at;
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

let lastMs = -Infinity;
let seq = 0;

export function newId(): string {
  const now = Date.now();
  const r = random(10);
  if (now > lastMs) {
    lastMs = now;
    seq = ((pool[r]! & 0x7f) << 24) | (pool[r + 1]! << 16) | (pool[r + 2]! << 8) | pool[r + 3]!;
  } else {
    seq = (seq + 1) | 0;
    // The counter ran over: borrow the next millisecond, which keeps the order.
    if (seq === 0) lastMs++;
  }
  const ms = lastMs;
  const b = [
    (ms / 0x10000000000) & 0xff,
    (ms / 0x100000000) & 0xff,
    (ms / 0x1000000) & 0xff,
    (ms / 0x10000) & 0xff,
    (ms / 0x100) & 0xff,
    ms & 0xff,
    0x70 | ((seq >>> 28) & 0x0f),
    (seq >>> 20) & 0xff,
    0x80 | ((seq >>> 14) & 0x3f),
    (seq >>> 6) & 0xff,
    ((seq << 2) & 0xff) | (pool[r + 4]! & 0x03),
    pool[r + 5]!,
    pool[r + 6]!,
    pool[r + 7]!,
    pool[r + 8]!,
    pool[r + 9]!,
  ];
  let s = '';
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) s += '-';
    s += HEX[b[i]!];
  }
  return s;
}
