/**
 * Tables as the terminal shows them: widths count columns, not code units,
 * and cutting keeps colours closed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { displayWidth, drawTable, truncate } from '../../src/client/table-draw.js';

describe('table drawing', () => {
  it('measures what the terminal draws', () => {
    assert.equal(displayWidth('abc'), 3);
    assert.equal(displayWidth('平衡'), 4);
    assert.equal(displayWidth('e\u0301'), 1); // e and a combining acute accent
    assert.equal(displayWidth('🚀 ok'), 5);
    assert.equal(displayWidth('\x1b[31mred\x1b[39m'), 3);
    assert.equal(displayWidth('équilibre Ω'), 11);
  });

  it('cuts to a width with an ellipsis, never splitting a wide character, and closes colours', () => {
    assert.equal(truncate('abcdef', 6), 'abcdef');
    assert.equal(truncate('abcdef', 4), 'abc…');
    assert.equal(truncate('平衡平衡', 4), '平…');
    assert.equal(displayWidth(truncate('平衡平衡', 4)), 3);
    assert.equal(truncate('\x1b[31mabcdef\x1b[39m', 3), '\x1b[31mab…\x1b[0m');
    assert.equal(truncate('abc', 0), '');
  });

  it('draws boxes for a terminal and whitespace columns for a pipe', () => {
    const heads = ['name', 'n'];
    const rows = [['x', '12'], ['longer', '3']];
    assert.equal(
      drawTable(heads, rows, { aligns: ['left', 'right'], boxed: true }),
      ['┌────────┬────┐', '│ name   │  n │', '├────────┼────┤', '│ x      │ 12 │', '│ longer │  3 │', '└────────┴────┘'].join('\n'),
    );
    assert.equal(drawTable(heads, rows, { aligns: ['left', 'right'], boxed: false }), ['name     n', 'x       12', 'longer   3'].join('\n'));
    // A pipe's lines carry no trailing blanks, so `awk` and `cut` see clean fields.
    assert.equal(drawTable(['a', 'b'], [['x', '']], { aligns: [], boxed: false }), 'a  b\nx');
  });
});
