#!/usr/bin/env node
import { packageVersion } from '../src/common/version.js';

// A reader that goes away (`cpcc jobs | head`) is not an error worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  // What commander prints for it, without loading commander and the command line.
  process.stdout.write(`${packageVersion()}\n`);
} else {
  // No top-level await: the same file is bundled as CommonJS (scripts/bundle-cpcc.mjs).
  void Promise.all([import('../src/client/cli.js'), import('../src/common/undici.js')]).then(async ([{ main }, { preferQuickExit }]) => {
    preferQuickExit();
    process.exitCode = await main(process.argv);
  });
}
