#!/usr/bin/env node
import { main } from '../src/client/cli.js';

// A reader that goes away (`cpcc jobs | head`) is not an error worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await main(process.argv);
