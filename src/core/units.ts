/**
 * Sizes and durations as people write them: `4G`, `512M`, `1.5T`; `90m`,
 * `2h`, `1d12h`, `45s`. A bare number keeps the caller's unit (MB for sizes,
 * seconds for durations), so every place that took a number still does.
 * Pure: used by cpcc's options, the job file and the server's settings.
 */

const SIZE_UNITS_MB: Record<string, number> = {
  k: 1 / 1024, kb: 1 / 1024, kib: 1 / 1024,
  m: 1, mb: 1, mib: 1,
  g: 1024, gb: 1024, gib: 1024,
  t: 1024 * 1024, tb: 1024 * 1024, tib: 1024 * 1024,
};

const DURATION_UNITS_S: Record<string, number> = {
  s: 1, sec: 1, secs: 1,
  m: 60, min: 60, mins: 60,
  h: 3600, hr: 3600, hrs: 3600,
  d: 86400, day: 86400, days: 86400,
  w: 7 * 86400,
};

/** Megabytes in `text` (binary units: 1G = 1024 MB), rounded up; null if it is not a size. */
export function parseSizeMb(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (m === null) return null;
  const unit = (m[2] ?? '').toLowerCase();
  const factor = unit === '' ? 1 : SIZE_UNITS_MB[unit];
  if (factor === undefined) return null;
  const mb = Math.ceil(Number(m[1]) * factor - 1e-9);
  return Number.isFinite(mb) ? mb : null;
}

/** Bytes in `text` (binary units: 1K = 1024 bytes; a bare number is bytes), rounded up; null if it is not a size. */
export function parseSizeBytes(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (m === null) return null;
  const unit = (m[2] ?? '').toLowerCase();
  if (unit === 'b' || unit === '') return Math.ceil(Number(m[1]) - 1e-9);
  const factor = SIZE_UNITS_MB[unit];
  if (factor === undefined) return null;
  const bytes = Math.ceil(Number(m[1]) * factor * 1024 * 1024 - 1e-6);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

/**
 * Seconds in `text`: a bare number, one number with a unit, or a sequence of
 * them (`1h30m`); rounded up to whole seconds; null if it is not a duration.
 */
export function parseDurationS(text: string): number | null {
  const t = text.trim().toLowerCase();
  if (/^\d+(?:\.\d+)?$/.test(t)) return Math.ceil(Number(t) - 1e-9);
  const part = /(\d+(?:\.\d+)?)\s*([a-z]+)\s*/gy;
  let total = 0;
  let used = 0;
  for (let m = part.exec(t); m !== null; m = part.exec(t)) {
    const factor = DURATION_UNITS_S[m[2]!];
    if (factor === undefined) return null;
    total += Number(m[1]) * factor;
    used = part.lastIndex;
  }
  if (used === 0 || used !== t.length) return null;
  const s = Math.ceil(total - 1e-9);
  return Number.isFinite(s) ? s : null;
}

/** `4096` MB as `4G`, `1536` as `1.5G`, `300` as `300M`: for tables and help. */
export function formatSizeMb(mb: number): string {
  if (mb >= 1024 * 1024 && mb % (1024 * 1024 / 10) === 0) return `${mb / (1024 * 1024)}T`;
  if (mb >= 1024 && (mb * 10) % 1024 === 0) return `${mb / 1024}G`;
  return `${mb}M`;
}

/** `5400` s as `1h30m`, `45` as `45s`. */
export function formatDurationS(s: number): string {
  if (s < 60) return `${s}s`;
  const parts: string[] = [];
  let rest = Math.round(s);
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  return parts.join('');
}
