/**
 * Writes docs/openapi.json: the API description for the default settings,
 * made from the route table (src/server/start/openapi.ts). A test fails when the
 * file is out of date; run `npm run openapi` after changing a route.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describeApi } from '../src/server/start/openapi.js';
import { packageVersion } from '../src/common/version.js';

const target = fileURLToPath(new URL('../docs/openapi.json', import.meta.url));
writeFileSync(target, JSON.stringify(describeApi(undefined, packageVersion()), null, 2) + '\n');
process.stdout.write(`wrote ${target}\n`);
