/**
 * Parts of a log by bytes: pages that meet show every character once, even
 * characters of several bytes cut by a page boundary.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { textPart } from '../../src/server/files/log-part.js';

const TEXT = 'ascii é € 😀 line\n'.repeat(40);
const SIZE = Buffer.byteLength(TEXT);

describe('log parts', () => {
  it('pages of any size, read one after the other, give back the whole text', async () => {
    for (const limit of [1, 2, 3, 4, 5, 7, 16, 100, SIZE, SIZE + 10]) {
      let offset = 0;
      let joined = '';
      for (let page = 0; offset < SIZE; page++) {
        // Pages as a reader asks for them: fixed byte boundaries.
        const part = await textPart(TEXT, { offset: page * limit, limit });
        assert.equal(part.size, SIZE);
        assert.ok(part.offset >= page * limit && part.offset <= page * limit + 3);
        if (part.text !== '') assert.equal(part.offset, offset, `limit ${limit}, page ${page}: no gap and no overlap`);
        joined += part.text;
        offset = Math.max(offset, part.end);
        assert.ok(!part.text.includes('\uFFFD'), 'no character cut in two');
      }
      assert.equal(joined, TEXT, `limit ${limit}`);
    }
  });

  it('gives the end of the log, from a whole character on', async () => {
    for (const tail of [1, 2, 3, 5, 9, 50]) {
      const part = await textPart(TEXT, { tail });
      assert.equal(part.end, SIZE);
      assert.ok(TEXT.endsWith(part.text));
      assert.ok(Buffer.byteLength(part.text) <= tail);
      assert.ok(!part.text.includes('\uFFFD'));
    }
    assert.equal((await textPart(TEXT, { tail: SIZE * 2 })).text, TEXT);
  });

  it('answers an offset past the end with nothing, and says where the end is', async () => {
    const part = await textPart(TEXT, { offset: SIZE + 100, limit: 10 });
    assert.deepEqual(part, { text: '', offset: SIZE, end: SIZE, size: SIZE });
  });
});
