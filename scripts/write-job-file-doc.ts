/**
 * Writes docs/JOB-FILE.md from the server's job schema and the field
 * meanings in src/core/job-fields.ts. A test fails when the file is out of
 * date; run `npm run job-file-doc` after changing a job field.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { jobFileDoc } from '../src/server/jobs/job-file-doc.js';

const target = fileURLToPath(new URL('../docs/JOB-FILE.md', import.meta.url));
writeFileSync(target, jobFileDoc());
process.stdout.write(`wrote ${target}\n`);
