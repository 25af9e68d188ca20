/**
 * The quick checks of the worker routes against the schemas they stand in
 * for: whatever a predicate lets through, the schema accepts unchanged; and
 * the ordinary valid request does pass the predicate, or it saves nothing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { QuickCheck } from '../../src/server/http/router.js';
import { isClaim, isHeartbeat, isPlainResult, isWorkerPath } from '../../src/server/jobs/quick-checks.js';
import { claimSchema, heartbeatSchema, resultSchema } from '../../src/server/jobs/schemas.js';
import { z as zod } from 'zod';

type Schema = zod.ZodType;

const limits = { maxJobsPerSubmit: 100, maxLogBytes: 64 };
const uuid = fc.uuid().map((u) => u.toLowerCase());
const workerPathSchema = zod.strictObject({ id: zod.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/) });

/** Valid values, and values near them: a field dropped, added, or replaced by anything. */
function nearby(valid: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<unknown> {
  const anything = fc.oneof(fc.jsonValue(), fc.constant(undefined), fc.integer(), fc.double(), fc.string());
  return fc.oneof(
    valid,
    valid.chain((v) => fc.constantFrom(...Object.keys(v)).map((k) => Object.fromEntries(Object.entries(v).filter(([key]) => key !== k)))),
    valid.chain((v) => fc.tuple(fc.constantFrom(...Object.keys(v), 'extra', '__proto__'), anything).map(([k, x]) => JSON.parse(JSON.stringify({ ...v, [k]: x })) as unknown)),
    valid.chain((v) => anything.map((x) => ({ ...v, [Object.keys(v)[0]!]: x }))),
    fc.jsonValue(),
  );
}

function holds(name: string, quick: QuickCheck, schema: Schema, valid: fc.Arbitrary<Record<string, unknown>>): void {
  it(`${name}: passes only what its schema accepts unchanged`, () => {
    fc.assert(
      fc.property(nearby(valid), (v) => {
        if (!quick(v)) return true;
        const r = schema.safeParse(v);
        return r.success && JSON.stringify(r.data) === JSON.stringify(v);
      }),
      { numRuns: 3000 },
    );
  });
  it(`${name}: passes the ordinary valid request`, () => {
    fc.assert(fc.property(valid, (v) => quick(v)), { numRuns: 500 });
  });
}

const attempt = fc.record({ jobId: uuid, attempt: fc.integer({ min: 1, max: 1000 }), started: fc.constant(true) }, { requiredKeys: ['jobId', 'attempt'] });
/** A heartbeat's attempt, then the same with its `started` flag replaced by anything. */
const attemptNearby = fc.oneof(
  attempt,
  fc.tuple(attempt, fc.oneof(fc.jsonValue(), fc.boolean(), fc.integer())).map(([a, started]) => JSON.parse(JSON.stringify({ ...a, started })) as Record<string, unknown>),
);
/** An attempt's usage as a worker measures it; bytes only where the host counts them. */
const usage = fc.record(
  {
    wallS: fc.double({ min: 0, max: 1e6, noNaN: true }),
    userS: fc.double({ min: 0, max: 1e6, noNaN: true }),
    systemS: fc.double({ min: 0, max: 1e6, noNaN: true }),
    maxRssMb: fc.double({ min: 0, max: 1e6, noNaN: true }),
    readBytes: fc.nat(),
    writeBytes: fc.nat(),
  },
  { requiredKeys: ['wallS', 'userS', 'systemS', 'maxRssMb'] },
);
const result = fc.record({
  jobId: uuid,
  attempt: fc.integer({ min: 1, max: 100 }),
  how: fc.constantFrom('exited', 'timeout', 'oom', 'start-failed'),
  usage,
  exitCode: fc.option(fc.integer({ min: -255, max: 255 }), { nil: null }),
  signal: fc.option(fc.constantFrom('SIGTERM', 'SIGKILL'), { nil: null }),
  durationMs: fc.integer({ min: 0, max: 1e9 }),
  stdout: fc.string({ maxLength: 64 }),
  stderr: fc.string({ maxLength: 64 }),
  stdoutBytes: fc.nat(),
  stderrBytes: fc.nat(),
}, { requiredKeys: ['jobId', 'attempt', 'how', 'exitCode', 'signal', 'durationMs', 'stdout', 'stderr', 'stdoutBytes', 'stderrBytes'] });

describe('quick checks of the worker routes', () => {
  holds('worker path', isWorkerPath, workerPathSchema, fc.record({ id: uuid }));
  holds(
    'claim',
    isClaim(limits),
    claimSchema(limits),
    fc.record({ waitS: fc.double({ min: 0, max: 300, noNaN: true }), max: fc.integer({ min: 1, max: 4096 }), results: fc.array(result, { maxLength: 3 }) }, { requiredKeys: ['waitS'] }),
  );
  holds(
    'heartbeat',
    isHeartbeat,
    heartbeatSchema,
    fc.oneof(fc.record({ attempts: fc.array(attempt, { maxLength: 20 }) }), fc.record({ same: fc.integer({ min: 1, max: 100_000 }) })),
  );
  it('heartbeat: an attempt whose started flag is anything but true is left to the schema, which refuses it', () => {
    fc.assert(
      fc.property(fc.array(attemptNearby, { minLength: 1, maxLength: 5 }), (attempts) => {
        const v = { attempts };
        if (!isHeartbeat(v)) return true;
        const r = heartbeatSchema.safeParse(v);
        return r.success && JSON.stringify(r.data) === JSON.stringify(v);
      }),
      { numRuns: 2000 },
    );
    assert.equal(isHeartbeat({ attempts: [{ jobId: '01900000-0000-7000-8000-000000000000', attempt: 1, started: false }] }), false);
    assert.equal(isHeartbeat({ attempts: [{ jobId: '01900000-0000-7000-8000-000000000000', attempt: 1, started: true }] }), true);
  });
  holds('result', isPlainResult(limits), resultSchema(limits), result);

  it('leaves to the schema what it does not know: files, reasons, and logs over the limit', () => {
    const base = { jobId: '01900000-0000-7000-8000-000000000000', attempt: 1, how: 'exited', exitCode: 0, signal: null, durationMs: 1, stdout: '', stderr: '', stdoutBytes: 0, stderrBytes: 0 };
    const quick = isPlainResult(limits);
    assert.equal(quick(base), true);
    assert.equal(quick({ ...base, outputs: [] }), false);
    assert.equal(quick({ ...base, reason: 'x' }), false);
    assert.equal(quick({ ...base, how: 'output-failed' }), false);
    assert.equal(quick({ ...base, stdout: 'x'.repeat(65) }), false);
    assert.equal(isHeartbeat({ attempts: [{ jobId: 'NOT-A-UUID', attempt: 1 }] }), false);
    assert.equal(isHeartbeat(JSON.parse('{"attempts":[],"__proto__":{}}')), false);
  });
});
