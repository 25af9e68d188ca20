/**
 * Writes docs/CONFIG.md from the server's settings table. A test fails when
 * the file is out of date; run `npm run config-doc` after changing a setting.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { configDoc } from '../src/server/start/config-doc.js';

const target = fileURLToPath(new URL('../docs/CONFIG.md', import.meta.url));
writeFileSync(target, configDoc());
process.stdout.write(`wrote ${target}\n`);
