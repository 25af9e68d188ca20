/**
 * Parts of ids (core/short-ids.ts): every start and every end of 8 hex
 * digits or more names its id, with or without dashes, and nothing else;
 * shorter or non-hex parts name nothing; several fits are refused with the
 * candidates, at most ten of them.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CpcError } from '../../src/core/errors.js';
import { idMatcher, isFullId, MAX_CANDIDATES, resolveId, shortId } from '../../src/core/short-ids.js';
import { newId } from '../../src/server/jobs/ids.js';

const bare = (id: string) => id.replaceAll('-', '');

function refusal(f: () => unknown): CpcError {
  try {
    f();
  } catch (err) {
    if (err instanceof CpcError) return err;
    throw err;
  }
  assert.fail('expected a refusal');
}

/** Twelve ids sharing their first 8 digits, each with a tail of its own. */
const siblings = Array.from({ length: 12 }, (_, i) => `aaaaaaaa-0000-7000-8000-${String(i).padStart(12, '0')}`);

describe('parts of ids', () => {
  it('matches every start and end of 8 hex digits or more, with the dashes of the id or none, in any case', () => {
    const id = newId();
    const other = '00000000-0000-7000-8000-000000000000';
    for (let k = 1; k <= id.length; k++) {
      for (const part of [id.slice(0, k), id.slice(-k)]) {
        if (bare(part).length < 8) {
          assert.equal(idMatcher(part), null, part);
          continue;
        }
        for (const given of [part, bare(part), part.toUpperCase()]) {
          assert.ok(idMatcher(given)!(id), `${given} names ${id}`);
          assert.ok(!idMatcher(given)!(other), `${given} does not name ${other}`);
        }
      }
    }
    assert.equal(shortId(id), bare(id).slice(-12));
    assert.equal(shortId(id), id.split('-')[4]);
    assert.ok(isFullId(id));
  });

  it('refuses parts too short or not hex', () => {
    for (const given of ['', 'abc1234', '-a-b-c-d-e-f-0-', 'ghijklmn', '0'.repeat(33), 'aaaa aaaa']) assert.equal(idMatcher(given), null, given);
    assert.equal(refusal(() => resolveId('abc1234', siblings, 'job', 'JOB_NOT_FOUND')).code, 'INVALID_FIELD');
  });

  it('names one id, says when none fits, and refuses several with at most ten candidates', () => {
    assert.equal(resolveId(shortId(siblings[4]!), siblings, 'job', 'JOB_NOT_FOUND'), siblings[4]);
    assert.equal(refusal(() => resolveId('fedcba9876543210', siblings, 'worker', 'WORKER_NOT_FOUND')).code, 'WORKER_NOT_FOUND');

    const two = refusal(() => resolveId('00000001', [...siblings, 'bbbbbbbb-0000-7000-8000-100000000001'], 'job', 'JOB_NOT_FOUND'));
    assert.equal(two.code, 'AMBIGUOUS_ID');
    assert.match(two.message, /fits 2 jobs: aaaaaaaa-0000-7000-8000-000000000001, bbbbbbbb-0000-7000-8000-100000000001;/);

    const many = refusal(() => resolveId('aaaaaaaa', siblings, 'job', 'JOB_NOT_FOUND'));
    assert.equal(many.code, 'AMBIGUOUS_ID');
    assert.equal(many.message.match(/aaaaaaaa-[0-9a-f-]{27}/g)?.length, MAX_CANDIDATES);
    assert.match(many.message, /fits 12 jobs: .* and 2 more;/);
  });
});
