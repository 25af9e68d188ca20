/**
 * A server's refusal in the words of cpcc's user. The server names the field
 * it checked by where it sits in the request (`body.jobs.0.memoryMb`,
 * `query.limit`) and words bounds as its schema library does (`Too big:
 * expected number to be <=10000`); people gave flags, job files and
 * passwords. This turns `query.limit: Too big: expected number to be <=10000`
 * into `--limit must be at most 10000`, and `body.jobs.2.mem…` or `jobs[2].key …`
 * into `job 3: …`.
 * Messages it does not recognise pass unchanged.
 */

/** `maxRetries` as the flag that sets it: `--max-retries`. */
function flagOf(field: string): string {
  return `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

const BOUNDS: [RegExp, (m: RegExpExecArray) => string][] = [
  [/^Too big: expected (?:number|int|bigint) to be <=?\s*(\S+)$/, (m) => `must be at most ${m[1]}`],
  [/^Too small: expected (?:number|int|bigint) to be >=?\s*(\S+)$/, (m) => `must be at least ${m[1]}`],
  [/^Too big: expected string to have <=?\s*(\d+) characters?$/, (m) => `at most ${m[1]} characters`],
  [/^Too small: expected string to have >=?\s*(\d+) characters?$/, (m) => `at least ${m[1]} characters`],
  [/^Too big: expected array to have <=?\s*(\d+) items?$/, (m) => `at most ${m[1]} entries`],
  [/^Too small: expected array to have >=?\s*(\d+) items?$/, (m) => `at least ${m[1]} ${m[1] === '1' ? 'entry' : 'entries'}`],
  [/^Invalid input: expected int, received number$/, () => 'must be a whole number'],
  [/^Invalid input: expected (\w+), received (\w+)$/, (m) => (m[2] === 'undefined' ? 'missing' : `must be ${article(m[1]!)}, not ${article(m[2]!)}`)],
  [/^Invalid option: expected one of (.+)$/, (m) => `must be one of ${m[1]!.replace(/"/g, '').split('|').join(', ')}`],
  [/^Unrecognized keys?: (.+)$/, (m) => `unknown field ${m[1]}`],
  [/^must be (at (?:least|most) \d+ characters)$/, (m) => m[1]!],
];

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function reword(reason: string): string {
  for (const [re, say] of BOUNDS) {
    const m = re.exec(reason);
    if (m) return say(m);
  }
  return reason;
}

/** `jobs[0].inputs[1]` as `job 1: inputs[2]`: the server's checks of a submit count from 0, people from 1. */
function jobIndices(message: string): string {
  return message.replace(/\bjobs\[(\d+)\]((?:\.\w+(?:\[\d+\])?)*)/g, (_all, n: string, rest: string) =>
    `job ${Number(n) + 1}` + rest.replace(/\.(\w+)(?:\[(\d+)\])?/g, (_m, f: string, k?: string) => `: ${f}${k !== undefined ? `[${Number(k) + 1}]` : ''}`),
  );
}

/** The message of a server error as cpcc shows it. */
export function userMessage(message: string): string {
  const m = /^(body|query|params)((?:\.[^\s:]+)*): (.*)$/s.exec(message);
  if (!m) return jobIndices(message);
  const [, where, dotted, reason] = m as unknown as [string, string, string, string];
  const path = dotted.split('.').filter((p) => p !== '');
  const said = reword(reason);
  // A query parameter is what a flag sent: `--limit must be at most 10000`.
  if (where === 'query' && path.length === 1) return `${flagOf(path[0]!)} ${said}`;
  if (where === 'params' && path.length === 1) return `${path[0]} ${said}`;
  // A job of a submit: `job 3: memoryMb: …`, counting from 1 as files and lines do.
  const parts: string[] = [];
  for (let i = 0; i < path.length; i++) {
    const p = path[i]!;
    const next = path[i + 1];
    if (p === 'jobs' && next !== undefined && /^\d+$/.test(next)) {
      parts.push(`job ${Number(next) + 1}`);
      i++;
    } else if (/^\d+$/.test(p)) {
      parts[parts.length - 1] = `${parts[parts.length - 1] ?? ''}[${Number(p) + 1}]`;
    } else {
      parts.push(p);
    }
  }
  return parts.length === 0 ? said : `${parts.join(': ')}: ${said}`;
}
