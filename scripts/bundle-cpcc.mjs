#!/usr/bin/env node
// Bundles cpcc into one CommonJS file, dist/bin/cpcc.cjs: the bin users run.
// cpcc runs in loops and scripts, so its start-up is paid many times. Node 20
// spends a third of a short command's own time finding, reading and linking
// some twenty ES modules; one CommonJS file (the packages stay outside it,
// loaded by require) saves it. The command groups stay lazy inside the
// bundle: a group's code runs only when its command does.
// Built from tsc's output in dist, so the bundle is exactly the checked code.
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/bin/cpcc.js'],
  outfile: 'dist/bin/cpcc.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  // Code that finds files next to itself (the package's version, undici's parts) asks import.meta.url.
  define: { 'import.meta.url': '__cpccFileUrl' },
  banner: { js: "const __cpccFileUrl = require('node:url').pathToFileURL(__filename).href;" },
  sourcemap: true,
  logLevel: 'warning',
});
