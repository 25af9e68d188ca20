#!/usr/bin/env node
// Runs every test file under test/ with node's test runner (through tsx),
// except the fault suite (test/faults: network namespaces, root only), which
// runs by itself: `run-tests.mjs test/faults` (npm run test:faults), and the
// 32-server test (test/scale), which npm run test:faults runs after it, alone,
// since it takes both cores for minutes.
// Node 20 neither expands globs nor finds .ts files on its own, and given no
// files it reports 0 tests and exits 0; so we list the files here and fail
// when nothing ran.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';

function find(dir, skip = []) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (skip.includes(p)) continue;
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const only = process.argv.slice(2);
// A folder given stands for the test files in it.
const files = only.length > 0 ? only.flatMap((p) => (statSync(p).isDirectory() ? find(p) : [p])) : find('test', [join('test', 'faults'), join('test', 'scale')]);
if (files.length === 0) {
  console.error('run-tests: no test files found under test/');
  process.exit(1);
}

const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=2', ...files],
  // Servers the tests start hash passwords at scrypt's N = 2^14 (the cost
  // before it was a setting) instead of the default 2^17: hundreds of logins
  // would otherwise take minutes. The default is tested on its own.
  { stdio: ['ignore', 'pipe', 'inherit'], env: { CPC_SCRYPT_LOG_N: '14', ...process.env } },
);
// The summary's test count, caught as it goes by: failures printed after it may be long.
let tail = '';
let ran = 0;
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString()).slice(-4000);
  for (const m of tail.replace(/\x1b\[[0-9;]*m/g, '').matchAll(/ℹ tests (\d+)/g)) ran = Number(m[1]);
});
child.on('close', (code) => {
  if (ran === 0) {
    console.error('run-tests: no test ran');
    process.exit(1);
  }
  process.exit(code ?? 1);
});
