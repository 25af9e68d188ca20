/**
 * A part of a job's log, for readers that page through it (the dashboard)
 * or want only its end, without the server reading or sending all of it.
 */

/** From `offset` (default 0) for `limit` bytes (default: to the end), or the last `tail` bytes. */
export interface PartOf {
  offset?: number;
  limit?: number;
  tail?: number;
}

export interface LogPart {
  text: string;
  /** Where the text begins in the log, in bytes. */
  offset: number;
  /** Where it ends: the next part begins here. */
  end: number;
  /** The whole log's size in bytes. */
  size: number;
}

/**
 * The part of a log of `size` bytes that `want` asks for, as text, read with
 * `read(start, end)`. A character belongs to the part its first byte is in:
 * the start moves forward past the rest of a character cut in two, and the
 * end forward to finish the last one, so pages that meet at byte boundaries
 * show every character exactly once.
 */
export async function utf8Part(size: number, want: PartOf, read: (start: number, end: number) => Promise<Buffer>, growing = false): Promise<LogPart> {
  const start = want.tail !== undefined ? Math.max(0, size - want.tail) : Math.min(want.offset ?? 0, size);
  const end = want.tail === undefined && want.limit !== undefined ? Math.min(size, start + want.limit) : size;
  // A UTF-8 character is at most 4 bytes: 3 more show whether the end cuts one.
  const buf = await read(start, Math.min(size, end + 3));
  const continues = (i: number): boolean => i < buf.length && (buf[i]! & 0xc0) === 0x80;
  let s = 0;
  while (s < end - start && continues(s)) s++;
  let e = end - start;
  while (e > s && continues(e)) e++;
  // A log still being written may end inside a character: its first bytes wait for the rest, in the next part.
  if (growing && start + e === size) e = s + completeUpTo(buf.subarray(s, e));
  return { text: buf.subarray(s, e).toString('utf8'), offset: start + s, end: start + e, size };
}

/** The same for a log held in memory. */
export function textPart(text: string, want: PartOf): Promise<LogPart> {
  const bytes = Buffer.from(text, 'utf8');
  return utf8Part(bytes.length, want, (start, end) => Promise.resolve(bytes.subarray(start, end)));
}

/** How many bytes of `buf` form whole UTF-8 characters, leaving out a last one that is cut short. */
function completeUpTo(buf: Buffer): number {
  for (let back = 1; back <= Math.min(4, buf.length); back++) {
    const b = buf[buf.length - back]!;
    if ((b & 0xc0) === 0x80) continue;
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back ? buf.length - back : buf.length;
  }
  return buf.length;
}
