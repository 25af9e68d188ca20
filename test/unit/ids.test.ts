/**
 * Job and worker ids: UUID v7 that sort in the order they were made, also
 * many within one millisecond, as a bulk submit makes them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { uuidV7Millis } from '../../src/persistence/archive-store.js';
import { newId } from '../../src/server/jobs/ids.js';

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('ids', () => {
  it('are UUID v7 carrying the time they were made', () => {
    const before = Date.now();
    const id = newId();
    const after = Date.now();
    assert.match(id, V7);
    const ms = uuidV7Millis(id)!;
    assert.ok(ms >= before && ms <= after + 1, `${ms} not within ${before}..${after}`);
  });

  it('increase strictly, and never repeat, when many are made at once', () => {
    const ids = Array.from({ length: 200_000 }, () => newId());
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, `${ids[i - 1]} is not before ${ids[i]}`);
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(ids.every((id) => V7.test(id)));
  });

  it('differ in their random part from one millisecond to the next', () => {
    const tails = new Set<string>();
    for (let i = 0; i < 50; i++) tails.add(newId().slice(24));
    assert.ok(tails.size > 45, `only ${tails.size} different random tails of 50`);
  });
});
