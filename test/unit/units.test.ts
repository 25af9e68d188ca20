import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDurationS, formatSizeMb, parseDurationS, parseSizeMb } from '../../src/core/units.js';

test('sizes: a bare number is MB, units are binary, fractions round up', () => {
  assert.equal(parseSizeMb('512'), 512);
  assert.equal(parseSizeMb('4G'), 4096);
  assert.equal(parseSizeMb('4 GiB'), 4096);
  assert.equal(parseSizeMb('1.5g'), 1536);
  assert.equal(parseSizeMb('300M'), 300);
  assert.equal(parseSizeMb('1T'), 1024 * 1024);
  assert.equal(parseSizeMb('100K'), 1);
  for (const bad of ['', 'G', '4X', '-1G', '4G4', '1e3', 'four']) assert.equal(parseSizeMb(bad), null, bad);
});

test('durations: a bare number is seconds, units and sequences add up', () => {
  assert.equal(parseDurationS('90'), 90);
  assert.equal(parseDurationS('90s'), 90);
  assert.equal(parseDurationS('90m'), 5400);
  assert.equal(parseDurationS('2h'), 7200);
  assert.equal(parseDurationS('1h30m'), 5400);
  assert.equal(parseDurationS('1d12h'), 129600);
  assert.equal(parseDurationS('0.5m'), 30);
  assert.equal(parseDurationS('1.5'), 2);
  for (const bad of ['', 'h', '2x', '2h3', '-5m', 'h2', '2 hours later']) assert.equal(parseDurationS(bad), null, bad);
});

test('formatting reads back to the same number', () => {
  for (const mb of [300, 1024, 1536, 4096, 1024 * 1024]) assert.equal(parseSizeMb(formatSizeMb(mb)), mb);
  for (const s of [5, 60, 5400, 129600, 86461]) assert.equal(parseDurationS(formatDurationS(s)), s);
  assert.equal(formatSizeMb(4096), '4G');
  assert.equal(formatDurationS(5400), '1h30m');
});
