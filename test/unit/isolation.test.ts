import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseUidRange, UidPool } from '../../src/worker/isolation.js';
import { replay, res, spec, World } from '../helpers/core.js';

describe('a worker bound to one user', () => {
  function world(): World {
    const w = new World();
    w.project('alices', 'alice');
    w.project('bobs', 'bob');
    w.project('shared', 'alice');
    w.apply({ t: 'members-changed', at: w.now, project: 'shared', members: ['bob'] });
    w.apply({ t: 'worker-registered', at: w.now, id: 'bound', name: 'b', host: 'h', resources: res(8, 8192), labels: [], tokenId: 't', isolation: 'none', onlyUser: 'alice' });
    w.worker('free', res(8, 8192));
    return w;
  }

  it("is handed only jobs of projects its user alone may use, whatever their order or priority", () => {
    const w = world();
    const bobs = w.submit('bobs', [spec({ priority: 9 })]);
    const shared = w.submit('shared', [spec({ priority: 5 })]);
    const alices = w.submit('alices', [spec(), spec()]);
    assert.deepEqual(w.claimIds('bound').sort(), [...alices].sort());
    assert.deepEqual(w.claimIds('bound'), [], 'nothing else is its user’s alone');
    // The same jobs are anyone's to an unbound worker.
    assert.deepEqual(w.claimIds('free').sort(), [...bobs, ...shared].sort());
  });

  it('keeps the binding across a replay', () => {
    const w = world();
    const m = replay(w.events);
    assert.equal(m.workers.get('bound')?.onlyUser, 'alice');
    assert.equal(m.workers.get('bound')?.isolation, 'none');
  });
});

describe('job uids', () => {
  it('parses a range and refuses a bad one', () => {
    assert.deepEqual(parseUidRange('2100000000-2100000009'), { first: 2100000000, last: 2100000009 });
    for (const bad of ['', '5-4', '0-10', '10-2147483647', 'a-b', '2000-']) assert.equal(typeof parseUidRange(bad), 'string', bad);
  });

  it('hands out a different uid to each running attempt, shares them across pools through lock files, and reclaims stale ones', async () => {
    const locks = mkdtempSync(join(tmpdir(), 'cpc-uid-locks-'));
    try {
      const range = { first: 2100099990, last: 2100099993 };
      const a = new UidPool(range, locks);
      const b = new UidPool(range, locks);
      const got = [await a.acquire(), await b.acquire(), await a.acquire(), await b.acquire()];
      assert.equal(new Set(got).size, 4);
      await assert.rejects(a.acquire(), /in use/);
      await b.release(got[1]!);
      assert.equal(await a.acquire(), got[1]);
      // A lock whose worker is gone is stale.
      await a.release(got[0]!);
      writeFileSync(join(locks, String(got[0])), '2147483646\n');
      assert.equal(await b.acquire(), got[0]);
      assert.equal(readdirSync(locks).length, 4);
    } finally {
      rmSync(locks, { recursive: true, force: true });
    }
  });
});
