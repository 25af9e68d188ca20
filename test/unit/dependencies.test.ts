/**
 * The dependency rule of src/, read from the import lines of every file:
 *
 *  - src/core holds the model and does no I/O: it imports neither Node's I/O
 *    modules nor any other folder of src/.
 *  - No circle of imports among the files of src/ (type-only imports count:
 *    a circle of types is as hard to read as one of values).
 *  - A subsystem of src/server reaches another subsystem only through that
 *    subsystem's doors, listed below; everything else in a folder is its own.
 *    src/server/start is the assembly and may wire any file; the top-level
 *    folders (core, persistence, federation, common, ...) are libraries whose
 *    every file is public.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The files other subsystems may import, per subsystem of src/server. */
const DOORS: Record<string, string[]> = {
  'src/server/http': ['router.ts', 'auth.ts', 'auth-rules.ts', 'schemas.ts'],
  'src/server/jobs': ['store.ts', 'dispatcher.ts', 'control.ts', 'results.ts', 'ids.ts', 'worker-routes.ts', 'schemas.ts', 'views.ts'],
  'src/server/files': ['files.ts', 'log-store.ts', 'log-part.ts', 'schemas.ts'],
  'src/server/accounts': ['accounts.ts'],
  'src/server/federation': ['delegation.ts', 'views.ts'],
  'src/server/events': ['hub.ts'],
  'src/server/pilots': ['index.ts'],
  'src/server/dashboard': ['serve.ts'],
  'src/server/start': ['context.ts'],
};
const ASSEMBLY = 'src/server/start';

/**
 * Circles allowed for now, each as its sorted member files: none. Listing one
 * here lets a change land before its circle is broken; the test fails when a
 * listed circle is gone, so the list only shrinks.
 */
const KNOWN_CIRCLES: string[][] = [];

const IO_MODULES = new Set([
  'fs', 'fs/promises', 'net', 'http', 'https', 'http2', 'tls', 'dgram', 'dns', 'dns/promises', 'child_process',
  'cluster', 'worker_threads', 'os', 'readline', 'inspector', 'process', 'v8', 'vm',
]);

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).sort().flatMap((name) => {
    const path = `${dir}/${name}`;
    if (statSync(join(ROOT, path)).isDirectory()) return sourceFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/** Every module a file names in an import or export line, or in import(). */
function specifiers(text: string): string[] {
  const noComments = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const found: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\b[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of noComments.matchAll(re)) found.push(m[1]!);
  return found;
}

/** The subsystem (src/server/x) or top-level folder (src/x) a file lives in. */
function folderOf(file: string): string {
  const parts = file.split('/');
  if (parts[1] === 'server' && parts.length > 3) return parts.slice(0, 3).join('/');
  return parts.length > 2 ? parts.slice(0, 2).join('/') : file;
}

interface Edge {
  from: string;
  spec: string;
  to: string | null;
}

function readGraph(): { files: string[]; edges: Edge[] } {
  const files = sourceFiles('src');
  const edges: Edge[] = [];
  for (const from of files) {
    for (const spec of specifiers(readFileSync(join(ROOT, from), 'utf8'))) {
      const to = spec.startsWith('.') ? normalize(join(dirname(from), spec)).replace(/\.js$/, '.ts') : null;
      edges.push({ from, spec, to });
    }
  }
  return { files, edges };
}

/** The strongly connected components of more than one file (or a file importing itself). */
function circles(files: string[], edges: Edge[]): string[][] {
  const next = new Map<string, string[]>(files.map((f) => [f, []]));
  for (const e of edges) if (e.to !== null && next.has(e.to)) next.get(e.from)!.push(e.to);
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || next.get(v)!.includes(v)) out.push(scc.sort());
    }
  };
  for (const f of files) if (!index.has(f)) visit(f);
  return out.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

describe('dependency rule', () => {
  const { files, edges } = readGraph();

  it('reads the import lines of src/', () => {
    // A parser that found nothing would pass every rule below.
    assert.ok(files.length > 100, `only ${files.length} files under src/`);
    assert.ok(edges.length > 500, `only ${edges.length} imports found`);
    assert.ok(edges.some((e) => e.from === 'src/server/start/server.ts' && e.to === 'src/server/jobs/store.ts'));
  });

  it('every relative import names a file that exists', () => {
    const known = new Set(files);
    const missing = edges.filter((e) => e.to !== null && !known.has(e.to)).map((e) => `${e.from}: ${e.spec}`);
    assert.deepEqual(missing, []);
  });

  it('src/core imports no I/O and no other folder of src/', () => {
    const bad = edges
      .filter((e) => e.from.startsWith('src/core/'))
      .filter((e) => (e.to !== null ? !e.to.startsWith('src/core/') : IO_MODULES.has(e.spec.replace(/^node:/, ''))))
      .map((e) => `${e.from}: ${e.spec}`);
    assert.deepEqual(bad, []);
  });

  it('no circle of imports among the files of src/, beyond the known ones', () => {
    const found = circles(files, edges).map((c) => c.join(' -> '));
    assert.deepEqual(found, KNOWN_CIRCLES.map((c) => [...c].sort().join(' -> ')));
  });

  it("a subsystem of src/server reaches another only through the other's doors", () => {
    for (const [folder, doors] of Object.entries(DOORS)) {
      for (const door of doors) assert.ok(files.includes(`${folder}/${door}`), `door ${folder}/${door} does not exist`);
    }
    const bad = edges
      .filter((e) => e.to !== null && e.to.startsWith('src/server/') && e.from.startsWith('src/'))
      .filter((e) => folderOf(e.from) !== folderOf(e.to!) && folderOf(e.from) !== ASSEMBLY)
      .filter((e) => !(DOORS[folderOf(e.to!)] ?? []).includes(relative(folderOf(e.to!), e.to!)))
      .map((e) => `${e.from}: ${e.spec}`);
    assert.deepEqual(bad, []);
  });

  it('the rules catch what they are meant to', () => {
    // The checks above, run on made-up files, so that a rule that cannot fail is noticed.
    const a = 'src/server/jobs/a.ts';
    const b = 'src/server/jobs/b.ts';
    const c = 'src/server/jobs/c.ts';
    const made = [
      { from: a, spec: './b.js', to: b },
      { from: b, spec: './c.js', to: c },
      { from: c, spec: './a.js', to: a },
    ];
    assert.deepEqual(circles([a, b, c], made), [[a, b, c]]);
    assert.deepEqual(circles([a, b, c], made.slice(0, 2)), []);
    assert.deepEqual(specifiers("import type { X } from './x.js';\nexport { y } from \"../y.js\";\nawait import('node:fs');"), [
      './x.js',
      '../y.js',
      'node:fs',
    ]);
    assert.deepEqual(specifiers("import {\n  a,\n  b,\n} from './multi.js';\nimport './side.js';"), ['./multi.js', './side.js']);
    assert.equal(folderOf('src/server/files/transfers.ts'), 'src/server/files');
    assert.equal(folderOf('src/core/model.ts'), 'src/core');
  });
});
