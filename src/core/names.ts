/**
 * Names people give (jobs, workers, projects) are shown in other people's
 * terminals and pages, so they may not hold characters that act on a
 * terminal instead of showing: C0 controls (escape sequences start with
 * ESC), DEL, C1 controls (U+009B is CSI to some terminals), line and
 * paragraph separators, and the bidirectional marks, embeddings, overrides
 * and isolates that make text read differently from what it is.
 */
export const CONTROL_CHARACTERS = /[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

export function hasControlCharacters(s: string): boolean {
  return CONTROL_CHARACTERS.test(s);
}
