/**
 * Writes src/client/commands/manifest.ts from the command files: each
 * command's name, aliases, help term, summary and group. A test fails when
 * the file is out of date; run `npm run command-manifest` after adding a
 * command or changing its name, aliases, arguments, options or summary.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describeCommands } from '../src/client/cli.js';

const target = fileURLToPath(new URL('../src/client/commands/manifest.ts', import.meta.url));
const text = readFileSync(target, 'utf8');
const head = text.slice(0, text.indexOf('export const COMMAND_MANIFEST'));
const entries = (await describeCommands()).map((e) => `  ${JSON.stringify(e)},\n`).join('');
writeFileSync(target, `${head}export const COMMAND_MANIFEST: readonly ManifestEntry[] = [\n${entries}];\n`);
process.stdout.write(`wrote ${target}\n`);
