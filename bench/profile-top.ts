/**
 * Prints the functions with the most self time in V8 CPU profiles (from
 * `bench/run.ts --profile` or `node --cpu-prof`). Several files are added
 * together, e.g. every run of one figure.
 *
 *   npx tsx bench/profile-top.ts bench/results/profiles/heartbeats-100000-*.cpuprofile [--top 30] [--by-file]
 *
 * --by-file adds self time up per source file (native code, the collector
 * and V8's own work keep their own names), to see which layer costs most.
 * --inclusive counts time spent in callees too (each function or file once
 * per sample), to see what a route or a layer costs as a whole.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface ProfileNode {
  id: number;
  parent?: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const byFile = args.includes('--by-file');
const inclusive = args.includes('--inclusive');
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args[topAt + 1]) : 25;
const files = args.filter((a, i) => !a.startsWith('--') && (topAt < 0 || i !== topAt + 1));
if (files.length === 0) {
  console.error('usage: profile-top.ts <file.cpuprofile>... [--top N] [--by-file]');
  process.exit(2);
}

const selfUs = new Map<string, number>();
let totalUs = 0;
for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  for (const n of p.nodes) for (const c of n.children ?? []) byId.get(c)!.parent = n.id;
  // A sample's time is the delta to the next sample.
  for (let i = 0; i < p.samples.length; i++) {
    const us = p.timeDeltas[i + 1] ?? 0;
    totalUs += us;
    // Inclusive: the sample counts once for every function on its stack.
    const seen = new Set<string>();
    for (let node: ProfileNode | undefined = byId.get(p.samples[i]!); node; node = inclusive && node.parent !== undefined ? byId.get(node.parent) : undefined) {
      const key = keyOf(node.callFrame);
      if (seen.has(key)) continue;
      seen.add(key);
      selfUs.set(key, (selfUs.get(key) ?? 0) + us);
    }
  }
}

function keyOf(f: ProfileNode['callFrame']): string {
  const where = f.url ? `${shorten(f.url)}:${f.lineNumber + 1}` : '';
  return byFile && f.url ? shorten(f.url) : `${f.functionName || '(anonymous)'}  ${where}`.trim();
}

function shorten(url: string): string {
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('node_modules/');
  if (nm >= 0) return path.slice(nm + 'node_modules/'.length);
  return path.startsWith('/') ? relative(process.cwd(), path) : path;
}

const busyUs = totalUs - (selfUs.get('(idle)') ?? 0);
console.log(`${files.length} profile(s), ${(totalUs / 1e6).toFixed(1)} s sampled, ${((busyUs / totalUs) * 100).toFixed(0)} % busy`);
console.log(`${inclusive ? 'total ms' : ' self ms'}  % busy  ${byFile ? 'file' : 'function'}`);
for (const [key, us] of [...selfUs].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  const share = key === '(idle)' ? '' : ((us / busyUs) * 100).toFixed(1);
  console.log(`${(us / 1000).toFixed(0).padStart(7)}  ${share.padStart(6)}  ${key}`);
}
