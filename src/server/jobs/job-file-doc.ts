/**
 * docs/JOB-FILE.md: every field a job may have, its type and bounds as the
 * server checks them (jobInputSchema) and what it means (core/job-fields.ts).
 * Written by `npm run job-file-doc`; a test fails when the file is out of date.
 */
import { z } from 'zod';
import { JOB_FIELDS } from '../../core/job-fields.js';
import type { JobInput } from '../../core/wire.js';
import { jobInputSchema } from './schemas.js';

interface JsonSchema {
  type?: string;
  anyOf?: JsonSchema[];
  items?: JsonSchema;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
}

function bounds(s: JsonSchema): string {
  const parts: string[] = [];
  const range = (lo: number | undefined, hi: number | undefined, unit: string) => {
    if (lo !== undefined && hi !== undefined) parts.push(`${lo} to ${hi}${unit}`);
    else if (hi !== undefined) parts.push(`at most ${hi}${unit}`);
    else if (lo !== undefined && lo > 0) parts.push(`at least ${lo}${unit}`);
  };
  range(s.minimum, s.maximum, '');
  range(s.minLength, s.maxLength, ' characters');
  range(s.minItems, s.maxItems, ' entries');
  return parts.join(', ');
}

function typeOf(s: JsonSchema): string {
  if (s.anyOf) return s.anyOf.map(typeOf).join(' or ');
  if (s.type === 'array') return s.items?.type === 'string' ? 'list of strings' : 'list of objects';
  if (s.type === 'integer') return 'whole number';
  if (s.type === 'object') return 'object';
  return s.type ?? 'any';
}

function limitsOf(s: JsonSchema): string {
  if (s.anyOf) return s.anyOf.map(limitsOf).filter((b) => b !== '').join('; ');
  return bounds(s);
}

export function jobFileDoc(): string {
  const schema = z.toJSONSchema(jobInputSchema, { io: 'input', unrepresentable: 'any' }) as { properties: Record<string, JsonSchema> };
  const rows = Object.entries(schema.properties).map(([field, s]) => {
    const meaning = JOB_FIELDS[field as keyof JobInput] ?? '';
    return `| \`${field}\` | ${typeOf(s)} | ${limitsOf(s).replace(/\|/g, '\\|')} | ${meaning.replace(/\|/g, '\\|')} |`;
  });
  return [
    '# Job files',
    '',
    '<!-- Written by `npm run job-file-doc` from the server\'s job schema; do not edit by hand. -->',
    '',
    '`cpcc submit --file FILE` submits many jobs at once. FILE holds a JSON array of jobs,',
    '`{"jobs": [...]}`, or one job per line (`.ndjson`, `.jsonl`). Each job is an object with',
    'the fields below; every field is optional except that exactly one of `argv` and `shell`',
    'is given. Flags given with `--file` (`--cores`, `--memory`, `--after`, ...) are defaults',
    'for the jobs that do not say otherwise. A field the table does not list is refused,',
    'with the name it was probably meant to be.',
    '',
    '| field | type | bounds | meaning |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
    'Example (`jobs.ndjson`):',
    '',
    '```',
    '{"key": "prep", "argv": ["./prepare.sh"], "memoryMb": "2G"}',
    '{"name": "run-1", "shell": "./run.sh 1 > out.txt", "after": ["prep"], "outputs": [{"glob": "out.txt"}], "timeoutS": "2h"}',
    '{"name": "run-2", "shell": "./run.sh 2 > out.txt", "after": ["prep"], "outputs": [{"glob": "out.txt"}], "cores": 4}',
    '```',
    '',
  ].join('\n');
}
