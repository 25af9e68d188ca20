/**
 * What cpcc prints is safe for a terminal: characters that act on it are
 * shown escaped, cpcc's own colours stay, and --json stays valid JSON.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { colours } from '../../src/client/colours.js';
import { jsonText, Output, printable } from '../../src/client/output.js';

describe('printable', () => {
  it('escapes C0, DEL, C1 and bidirectional controls', () => {
    assert.equal(printable('a\x1b[2Jb'), 'a\\x1b[2Jb');
    assert.equal(printable('t\x1b]0;x\x07'), 't\\x1b]0;x\\x07');
    assert.equal(printable('c\x9b1m d\x7f'), 'c\\x9b1m d\\x7f');
    assert.equal(printable('evil\u202etxt \u2066i\u2069'), 'evil\\u202etxt \\u2066i\\u2069');
    assert.equal(printable('a\nb\tc\r'), 'a\\x0ab\\x09c\\x0d');
    assert.equal(printable('a\nb\tc\r', { multiline: true }), 'a\nb\tc\\x0d');
    assert.equal(printable('équilibre Ω 平衡 ✓ [ok]'), 'équilibre Ω 平衡 ✓ [ok]');
  });

  it("keeps cpcc's own colour codes only while colour is on", () => {
    const c = colours(true);
    const painted = `${c.bold('b')} ${c.dim('d')} ${c.red('r')} ${c.gray('g')} ${c.green('ok')}`;
    assert.equal(printable(painted, { colour: true }), painted);
    assert.equal(printable(painted), painted.replace(/\x1b/g, '\\x1b'));
    // A style inside another: the outer one is open again after the inner one closes.
    assert.equal(c.bold(`a ${c.dim('b')} c`), '\x1b[1ma \x1b[2mb\x1b[22m\x1b[1m c\x1b[22m');
    assert.equal(colours(false).red('r'), 'r');
    // Other sequences are escaped even with colour on: clear screen, cursor moves, conceal.
    assert.equal(printable('\x1b[2J\x1b[8mx\x1b[1;1H', { colour: true }), '\\x1b[2J\\x1b[8mx\\x1b[1;1H');
  });

  it('writes tables, lines and notes through it', () => {
    let out = '';
    let err = '';
    const o = new Output({ write: (s: string) => (out += s) }, { write: (s: string) => (err += s) });
    o.table([{ n: 'x\x1b[31my' }], [{ header: 'name', value: (r) => r.n }]);
    o.line('line \x1b[2J');
    o.note('note \u202e');
    o.fields([['name', 'f\x07']]);
    assert.doesNotMatch(out + err, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]/);
    assert.match(out, /x\\x1b\[31my/);
  });

  it('keeps --json valid while escaping DEL, C1 and bidirectional controls', () => {
    const value = { name: 'a\x1b\x7f\x9b\u202eb' };
    const text = jsonText(value);
    assert.doesNotMatch(text, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]/);
    assert.deepEqual(JSON.parse(text), value);
  });
});
