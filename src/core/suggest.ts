/**
 * "Did you mean …?" for names people type: settings, job file fields,
 * options. Pure. A candidate is offered when it is close in edit distance
 * (a typo) or when one name holds the other regardless of case (`mem` for
 * `memoryMb`).
 */

/** Levenshtein distance, case-insensitive. */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const cur = [i];
    for (let j = 1; j <= t.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (s[i - 1] === t[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[t.length]!;
}

/** The known name `given` most likely meant, or undefined when none is close. */
export function closest(given: string, known: readonly string[]): string | undefined {
  const g = given.toLowerCase();
  let best: string | undefined;
  let bestScore = Infinity;
  for (const name of known) {
    const n = name.toLowerCase();
    let score = editDistance(g, n);
    // Up to a third of the longer name may be wrong.
    if (score > Math.max(1, Math.floor(Math.max(g.length, n.length) / 3))) score = Infinity;
    if (g.length >= 3 && (n.startsWith(g) || g.startsWith(n))) score = Math.min(score, 0.5);
    else if (g.length >= 3 && n.includes(g)) score = Math.min(score, 1.5);
    if (score < bestScore) {
      best = name;
      bestScore = score;
    }
  }
  return bestScore === Infinity ? undefined : best;
}
