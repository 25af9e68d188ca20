/**
 * Prints the functions with the most self time in V8 CPU profiles (from
 * `bench/run.ts --profile` or `node --cpu-prof`). Several files are added
 * together, e.g. every run of one figure.
 *
 *   npx tsx bench/profile-top.ts bench/results/profiles/heartbeats-100000-*.cpuprofile [--top 30] [--by-file]
 *
 * --by-file adds self time up per source file (native code, the collector
 * and V8's own work keep their own names), to see which layer costs most.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface ProfileNode {
  id: number;
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
  // A sample's time is the delta to the next sample.
  for (let i = 0; i < p.samples.length; i++) {
    const us = p.timeDeltas[i + 1] ?? 0;
    const f = byId.get(p.samples[i]!)!.callFrame;
    const where = f.url ? `${shorten(f.url)}:${f.lineNumber + 1}` : '';
    const key = byFile && f.url ? shorten(f.url) : `${f.functionName || '(anonymous)'}  ${where}`.trim();
    selfUs.set(key, (selfUs.get(key) ?? 0) + us);
    totalUs += us;
  }
}

function shorten(url: string): string {
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('node_modules/');
  if (nm >= 0) return path.slice(nm + 'node_modules/'.length);
  return path.startsWith('/') ? relative(process.cwd(), path) : path;
}

const busyUs = totalUs - (selfUs.get('(idle)') ?? 0);
console.log(`${files.length} profile(s), ${(totalUs / 1e6).toFixed(1)} s sampled, ${((busyUs / totalUs) * 100).toFixed(0)} % busy`);
console.log(`self ms   % busy  ${byFile ? 'file' : 'function'}`);
for (const [key, us] of [...selfUs].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  const share = key === '(idle)' ? '' : ((us / busyUs) * 100).toFixed(1);
  console.log(`${(us / 1000).toFixed(0).padStart(7)}  ${share.padStart(6)}  ${key}`);
}
