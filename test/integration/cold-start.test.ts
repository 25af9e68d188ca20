/**
 * What each start of the bins loads. cpcc runs in loops and scripts, so a
 * start reads only what its command uses: `--version` and `--help` no
 * command file, a command its own group's file, and nothing of the HTTP
 * stack until it sends. `cpc-server --help` and `cpc-worker --help` read
 * neither the server nor the worker. The time this saves is measured in
 * bench/cold-start.ts; here the modules are listed, which no load on the
 * machine changes.
 *
 * The list comes from a hook given to node with --import: ES modules as the
 * loader reads them, CommonJS ones from require's cache at exit.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageVersion } from '../../src/common/version.js';
import { COMMAND_MANIFEST } from '../../src/client/commands/manifest.js';
import { cleanup, cpccHome, ROOT, startTestServer, tempDir, type TestServer } from '../helpers/server.js';

/** Packages no start for help, version or a local answer needs. */
const HEAVY = ['undici', 'zod', 'node-forge', 'pino', 'ws', 'lowdb'];

const HOOK = `
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
const out = process.env.CPC_LOADED_OUT;
register('data:text/javascript,' + encodeURIComponent(\`
import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  if (!url.startsWith('node:')) appendFileSync(\${JSON.stringify(out)}, url + '\\\\n');
  return next(url, context);
}\`));
process.on('exit', () => {
  const cjs = Object.keys(createRequire(import.meta.url).cache);
  appendFileSync(out, cjs.map((f) => 'file://' + f + '\\n').join(''));
});
`;

interface Start {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The files it loaded, relative to the package root (node_modules/... or dist/...). */
  loaded: string[];
}

let dir: string;
let hook: string;
let n = 0;

/**
 * `cpcc` is the bundle users run (dist/bin/cpcc.cjs); `cpcc-modules` is the
 * same program as tsc's ES modules, where each file a start loads can be seen.
 */
function start(bin: 'cpcc' | 'cpcc-modules' | 'cpc-server' | 'cpc-worker', args: string[], env: NodeJS.ProcessEnv = {}): Promise<Start> {
  const script = join(ROOT, 'dist', 'bin', bin === 'cpcc' ? 'cpcc.cjs' : bin === 'cpcc-modules' ? 'cpcc.js' : `${bin}.js`);
  assert.ok(existsSync(script), `${script} is missing; run 'npm run build' first`);
  const out = join(dir, `loaded-${++n}.txt`);
  writeFileSync(out, '');
  const child = spawn(process.execPath, ['--import', pathToFileURL(hook).href, script, ...args], {
    env: { ...process.env, NO_COLOR: '1', CPCC_HOME: join(dir, 'no-cpcc-home'), ...env, CPC_LOADED_OUT: out },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const root = pathToFileURL(ROOT).href;
      const loaded = [...new Set(readFileSync(out, 'utf8').split('\n').filter(Boolean))]
        .filter((u) => u.startsWith(root))
        .map((u) => u.slice(root.length));
      resolve({ code, stdout, stderr, loaded });
    });
  });
}

/** The packages under node_modules a start loaded. */
function packages(s: Start): string[] {
  return [...new Set(s.loaded.filter((f) => f.startsWith('node_modules/')).map((f) => f.split('/')[1]!))].sort();
}

/** The command files (src/client/commands/*) a start loaded, by name. */
function commandFiles(s: Start): string[] {
  return s.loaded
    .map((f) => /^dist\/src\/client\/commands\/([\w-]+)\.js$/.exec(f)?.[1])
    .filter((f): f is string => f !== undefined)
    .sort();
}

function noHeavy(s: Start): void {
  const heavy = packages(s).filter((p) => HEAVY.includes(p));
  assert.deepEqual(heavy, [], `loaded ${heavy.join(', ')}`);
}

describe('cold start: what each start loads', () => {
  let ts: TestServer;
  let home: string;

  before(async () => {
    dir = await tempDir('cpc-cold-');
    hook = join(dir, 'record-loads.mjs');
    writeFileSync(hook, HOOK);
    ts = await startTestServer();
    home = await cpccHome(ts, 'cold');
    await ts.admin.createProject('cold');
  });
  after(cleanup);

  it('the hook sees what a start loads (a server start loads the whole server)', async () => {
    // The same list must show what it is said not to show elsewhere.
    const s = await start('cpc-server', ['--home', join(dir, 'no-server-home'), 'status']);
    assert.equal(s.code, 1, s.stderr);
    assert.ok(packages(s).includes('zod'), packages(s).join(' '));
  });

  it('cpcc --version prints the version and loads no command file and nothing heavy', async () => {
    const s = await start('cpcc-modules', ['--version']);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(s.stdout, `${packageVersion()}\n`);
    assert.deepEqual(commandFiles(s), []);
    noHeavy(s);
  });

  it('cpcc --help lists every command, from the manifest alone', async () => {
    const s = await start('cpcc-modules', ['--help']);
    assert.equal(s.code, 0, s.stderr);
    for (const e of COMMAND_MANIFEST) assert.match(s.stdout, new RegExp(`^  ${e.term.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} +\\S`, 'm'), e.name);
    // The examples are read for help only (commands/examples.ts).
    assert.deepEqual(commandFiles(s), ['examples', 'index', 'manifest']);
    noHeavy(s);
  });

  it('cpcc help NAME shows the options of that command, loading its file only', async () => {
    const s = await start('cpcc-modules', ['help', 'submit']);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /^Usage: cpcc submit \[options\] \[command\.\.\.\]/);
    assert.match(s.stdout, /--cores <n>/);
    assert.deepEqual(commandFiles(s).filter((f) => f !== 'index' && f !== 'manifest' && f !== 'context' && f !== 'examples'), ['files', 'job-bulk', 'job-file', 'job-list', 'job-wait', 'job-why', 'jobs', 'limits', 'parsers', 'projects', 'prompt']);
    assert.match(s.stdout, /Examples:\n {2}\$ cpcc submit /);
    noHeavy(s);
  });

  it('cpcc pwd answers from the config, loading its own group and no HTTP client', async () => {
    const s = await start('cpcc-modules', ['pwd'], { CPCC_HOME: home });
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /^server: +here \(https:\/\/127\.0\.0\.1:\d+\)\nproject: +cold\n$/);
    assert.ok(commandFiles(s).includes('projects'));
    assert.deepEqual(
      commandFiles(s).filter((f) => !['index', 'manifest', 'context', 'projects', 'prompt'].includes(f)),
      [],
    );
    noHeavy(s);
  });

  it('the cpcc users run is one file: it loads nothing of cpc but itself, and of packages only commander', async () => {
    for (const args of [['--version'], ['--help'], ['pwd'], ['help', 'submit']]) {
      const s = await start('cpcc', args, { CPCC_HOME: home });
      assert.equal(s.code, 0, s.stderr);
      assert.deepEqual(s.loaded.filter((f) => f.startsWith('dist/')), ['dist/bin/cpcc.cjs'], args.join(' '));
      assert.deepEqual(packages(s).filter((p) => p !== 'commander'), [], args.join(' '));
    }
    const version = await start('cpcc', ['--version']);
    assert.equal(version.stdout, `${packageVersion()}\n`);
    assert.deepEqual(packages(version), [], 'commander for --version');
  });

  it('cpcc status, jobs and submit talk to the server with Node\'s own client, not undici', async () => {
    const submitted = await start('cpcc', ['submit', '--', 'true'], { CPCC_HOME: home });
    assert.equal(submitted.code, 0, submitted.stderr);
    assert.match(submitted.stdout, /^[0-9a-f-]{36}\n$/);
    const status = await start('cpcc', ['status'], { CPCC_HOME: home });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /queued +1\b/);
    const jobs = await start('cpcc', ['jobs', '--limit', '20'], { CPCC_HOME: home });
    assert.equal(jobs.code, 0, jobs.stderr);
    assert.match(jobs.stdout, /^id +.*state/);
    // No package at all: tables and colours are cpc's own few lines.
    for (const s of [submitted, status, jobs]) assert.deepEqual(packages(s).filter((p) => p !== 'commander'), [], s.loaded.join(' '));
  });

  it('cpc-server --help lists its commands and loads no server module', async () => {
    const s = await start('cpc-server', ['--help']);
    assert.equal(s.code, 0, s.stderr);
    for (const c of ['start', 'setup', 'bundle', 'stop', 'status', 'config']) assert.match(s.stdout, new RegExp(`^  ${c}\\b`, 'm'));
    noHeavy(s);
    assert.deepEqual(
      s.loaded.filter((f) => /^dist\/src\/server\/(?!start\/(cli|home-lock)\.js)/.test(f)),
      [],
    );
  });

  it('cpc-worker --help lists its options and loads neither the worker nor its client', async () => {
    const s = await start('cpc-worker', ['--help']);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /--bundle <file>/);
    assert.match(s.stdout, /--isolation <level>/);
    noHeavy(s);
    for (const f of ['dist/src/worker/worker.js', 'dist/src/client/api/client.js', 'dist/src/common/logger.js']) assert.ok(!s.loaded.includes(f), f);
  });
});
