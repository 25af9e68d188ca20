#!/usr/bin/env node
import { main } from '../src/server/start/cli.js';

main(process.argv).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`cpc-server: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
