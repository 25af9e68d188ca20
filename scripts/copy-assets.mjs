#!/usr/bin/env node
// Copies the dashboard's page files (HTML, script, styles, icon) next to the
// compiled server in dist, where it reads them from; tsc carries only .ts.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const from = join('src', 'server', 'dashboard');
const to = join('dist', 'src', 'server', 'dashboard');
mkdirSync(to, { recursive: true });
let n = 0;
for (const name of readdirSync(from)) {
  if (!/\.(html|js|css|svg)$/.test(name)) continue;
  copyFileSync(join(from, name), join(to, name));
  n++;
}
if (n === 0) {
  console.error(`copy-assets: no page files in ${from}`);
  process.exit(1);
}
