/**
 * Short ids: what people type and paste instead of a whole job or worker id.
 *
 * Ids are UUID v7 (src/server/jobs/ids.ts): the first 12 hex digits are the
 * time in milliseconds and the next ones a counter, so jobs submitted
 * together share a long prefix, while the last 10 hex digits are random. The
 * short form shown by tables and the dashboard is therefore the id's last
 * group, its last 12 hex digits (40 random bits and the counter's low bits):
 * unique in practice (the chance that any two of a million ids share it is
 * about one in five hundred) and one double-click to select, since it
 * follows the last dash.
 *
 * An id may be given as the whole id, as any part of its start (as git
 * takes a commit), or as any part of its end, the short form included; with
 * or without its dashes, and at least MIN_ID_DIGITS hex digits long. A part
 * that fits more than one id is refused with the candidates (AMBIGUOUS_ID).
 */
import { fail } from './errors.js';

export const MIN_ID_DIGITS = 8;
export const SHORT_ID_DIGITS = 12;
/** Candidates named in an AMBIGUOUS_ID message at most. */
export const MAX_CANDIDATES = 10;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Where the dashes of a UUID fall, counted in hex digits from its start. */
const DASHES_AFTER = [8, 12, 16, 20];

export function isFullId(s: string): boolean {
  return UUID.test(s);
}

/** The form tables show: a UUID's last group; any other id whole. */
export function shortId(id: string): string {
  return UUID.test(id) ? id.slice(-SHORT_ID_DIGITS) : id;
}

/** Hex digits of a UUID starting at digit `from`, written with the dashes that fall between them. */
function dashed(hex: string, from: number): string {
  let s = '';
  for (let i = 0; i < hex.length; i++) {
    if (i > 0 && DASHES_AFTER.includes(from + i)) s += '-';
    s += hex[i];
  }
  return s;
}

/**
 * A test for the ids `given` names, or null when `given` is not a usable
 * part of an id (too short, or not hex). Comparisons are on the ids as
 * stored, so a scan of a million ids allocates nothing per id.
 */
export function idMatcher(given: string): ((id: string) => boolean) | null {
  const g = given.trim().toLowerCase();
  if (!/^[0-9a-f-]+$/.test(g)) return null;
  const hex = g.replaceAll('-', '');
  if (hex.length < MIN_ID_DIGITS || hex.length > 32) return null;
  if (hex.length === 32) {
    const whole = dashed(hex, 0);
    return (id) => id === whole;
  }
  const prefix = dashed(hex, 0);
  const suffix = dashed(hex, 32 - hex.length);
  return (id) => id.startsWith(prefix) || id.endsWith(suffix);
}

/** Why `given` cannot name an id, in the words of a usage message. */
export function idUsage(what: string): string {
  return `give a ${what} id, or at least ${MIN_ID_DIGITS} hex digits of its start or end`;
}

/**
 * A search for the one id `given` names: the caller offers the ids that
 * `match` (in plain loops, some tens of milliseconds per million ids, where
 * a generator costs several times that) and asks for the answer. Throws
 * INVALID_FIELD for a malformed part; `answer` throws `notFound` when none
 * fit, AMBIGUOUS_ID naming up to MAX_CANDIDATES of them when several do.
 */
export class IdSearch {
  readonly match: (id: string) => boolean;
  private readonly found: string[] = [];
  private count = 0;

  constructor(
    private readonly given: string,
    private readonly what: 'job' | 'worker',
    private readonly notFound: 'JOB_NOT_FOUND' | 'WORKER_NOT_FOUND',
  ) {
    const match = idMatcher(given);
    if (match === null) throw fail('INVALID_FIELD', `'${given.slice(0, 40)}': ${idUsage(what)}`);
    this.match = match;
  }

  /** Counts `id`, which the caller found to match. */
  add(id: string): void {
    this.count++;
    if (this.found.length < MAX_CANDIDATES) this.found.push(id);
  }

  answer(): string {
    const { given, what, found, count } = this;
    if (count === 0) throw fail(this.notFound, `no ${what} with id '${given}'`);
    if (count > 1) {
      found.sort();
      const more = count > found.length ? ` and ${count - found.length} more` : '';
      throw fail('AMBIGUOUS_ID', `'${given}' fits ${count} ${what}s: ${found.join(', ')}${more}; give more of the id`, { candidates: found, count });
    }
    return found[0]!;
  }
}

/** The one id among `ids` that `given` names (see IdSearch). */
export function resolveId(given: string, ids: Iterable<string>, what: 'job' | 'worker', notFound: 'JOB_NOT_FOUND' | 'WORKER_NOT_FOUND'): string {
  const search = new IdSearch(given, what, notFound);
  for (const id of ids) if (search.match(id)) search.add(id);
  return search.answer();
}
