/** The federation membership file: what it accepts, what it refuses and the digest admins compare. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CliError } from '../../src/client/output.js';
import { parseMembers } from '../../src/client/commands/members-file.js';

const FP_A = 'AB:'.repeat(31) + 'AB';
const FP_B = 'sha256:' + 'cd'.repeat(32);

describe('membership file', () => {
  it('reads hosts, ports, fingerprints and names, with comments and blank lines', () => {
    const { members } = parseMembers(`# federation\n\nhub.example 14900 ${FP_A} hub one  # the hub\nleaf.example ${FP_B}\n`, 'm.txt');
    assert.deepEqual(
      members.map((m) => [m.host, m.port, m.caFingerprint, m.name, m.line]),
      [
        ['hub.example', 14900, 'ab'.repeat(32), 'hub one', 3],
        ['leaf.example', 14807, 'cd'.repeat(32), '', 4],
      ],
    );
  });

  it('gives the same digest whatever the order, names and spelling of fingerprints', () => {
    const one = parseMembers(`hub.example 14900 ${FP_A} hub\nleaf.example ${FP_B}\n`, 'a').digest;
    const two = parseMembers(`leaf.example 14807 ${'CD'.repeat(32)} a leaf\nhub.example 14900 ${'ab'.repeat(32)}\n`, 'b').digest;
    assert.equal(one, two);
    const other = parseMembers(`hub.example 14901 ${FP_A}\nleaf.example ${FP_B}\n`, 'c').digest;
    assert.notEqual(one, other, 'another port is another federation');
  });

  it('refuses bad lines with the line number and a usage exit', () => {
    const refuses = (text: string, message: RegExp) =>
      assert.throws(() => parseMembers(text, 'm.txt'), (err: unknown) => err instanceof CliError && err.exitCode === 2 && message.test(err.message));
    refuses(`hub.example\n`, /m\.txt line 1: expected HOST \[PORT\] FINGERPRINT/);
    refuses(`hub.example 14807 abcd\n`, /line 1: 'abcd' is not a SHA-256 fingerprint/);
    refuses(`hub.example ${'zz'.repeat(32)}\n`, /is not a SHA-256 fingerprint/);
    refuses(`hub.example 70000 ${FP_A}\n`, /line 1: port 70000 is not from 1 to 65535/);
    refuses(`hub/evil ${FP_A}\n`, /'hub\/evil' is not a host name/);
    refuses(`a.example ${FP_A}\nb.example ${FP_A}\n`, /line 2: the fingerprint is listed already on line 1/);
    refuses(`# nothing\n`, /lists no servers/);
  });
});
