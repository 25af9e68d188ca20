/**
 * The widths a table's columns get on a narrow terminal: free text gives way
 * first, then other columns down to their header, ids never.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fitWidths, terminalWidth, type ColumnFit } from '../../src/client/table-fit.js';

const id: ColumnFit = { natural: 36, header: 2, kind: 'id' };
const name: ColumnFit = { natural: 24, header: 4, kind: 'text' };
const command: ColumnFit = { natural: 40, header: 7, kind: 'text' };
const state: ColumnFit = { natural: 9, header: 5, kind: 'other' };
const sum = (w: number[]) => w.reduce((a, b) => a + b, 0);

describe('table widths', () => {
  it('leaves a table that fits as it is', () => {
    assert.deepEqual(fitWidths([id, name, state], 200), [36, 24, 9]);
  });

  it('cuts free text before anything else, the widest first', () => {
    const w = fitWidths([id, name, state, command], 36 + 9 + 40);
    assert.equal(sum(w), 85);
    assert.deepEqual([w[0], w[2]], [36, 9]);
    assert.ok(w[1]! >= 10 && w[3]! >= 10);
    assert.equal(w[3], w[1]);
  });

  it('then other columns down to their header, then everything but ids', () => {
    assert.deepEqual(fitWidths([id, name, state, command], 36 + 10 + 5 + 10), [36, 10, 5, 10]);
    const w = fitWidths([id, name, state, command], 40);
    assert.equal(w[0], 36);
    assert.equal(sum(w), 40);
  });

  it('never cuts an id, even when the ids alone are too wide', () => {
    const w = fitWidths([id, name], 20);
    assert.deepEqual(w, [36, 1]);
  });

  it('takes the width from COLUMNS, else from a terminal, and sets none for a pipe', () => {
    assert.equal(terminalWidth({ COLUMNS: '72' }, { isTTY: false }), 72);
    assert.equal(terminalWidth({ COLUMNS: '72' }, { isTTY: true, columns: 100 }), 72);
    assert.equal(terminalWidth({}, { isTTY: true, columns: 100 }), 100);
    assert.equal(terminalWidth({ COLUMNS: '' }, { isTTY: false, columns: 100 }), undefined);
    assert.equal(terminalWidth({ COLUMNS: 'wide' }, { isTTY: false }), undefined);
  });
});
