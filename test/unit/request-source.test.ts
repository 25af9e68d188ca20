/**
 * The address a connection request is counted under for the per-source cap:
 * one host must not escape it by using the many addresses of its IPv6 /64.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { requestSource } from '../../src/federation/handshake.js';

describe('requestSource', () => {
  it('keeps IPv4 addresses, also when mapped into IPv6', () => {
    assert.equal(requestSource('192.0.2.7'), '192.0.2.7');
    assert.equal(requestSource('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(requestSource('::FFFF:127.0.0.4'), '127.0.0.4');
  });

  it('counts IPv6 addresses by their /64, however they are written', () => {
    const net = '2001:db8:0:1::/64';
    assert.equal(requestSource('2001:db8:0:1::1'), net);
    assert.equal(requestSource('2001:db8:0:1:ffff:ffff:ffff:fffe'), net);
    assert.equal(requestSource('2001:0DB8:0000:0001:0000:0000:0000:0009'), net);
    assert.equal(requestSource('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.notEqual(requestSource('2001:db8:0:2::1'), net);
  });

  it('names an unknown source', () => {
    assert.equal(requestSource(undefined), 'unknown');
  });
});
