import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Heap } from '../../src/core/heap.js';
import type { CpcError } from '../../src/core/errors.js';
import { LeaseTable } from '../../src/core/lease-table.js';
import type { Lease } from '../../src/core/types.js';
import { rng } from '../helpers/core.js';

function lease(jobId: string, deadline: number, workerId = 'w1', attempt = 1): Lease {
  return { jobId, attempt, workerId, via: 'local', deadline };
}

const ids = (ls: Lease[]) => ls.map((l) => l.jobId);

describe('LeaseTable', () => {
  it('gives each worker a version that changes with its leases and never comes back', () => {
    const t = new LeaseTable();
    assert.equal(t.versionOf('w1'), 0);
    const seen = new Set<number>([0]);
    const step = () => {
      const v = t.versionOf('w1');
      assert.ok(!seen.has(v) || v === 0, `version ${v} came back`);
      seen.add(v);
      return v;
    };
    t.add(lease('a', 100));
    const v1 = step();
    t.add(lease('x', 100, 'w2'));
    assert.equal(t.versionOf('w1'), v1, "another worker's lease leaves it alone");
    t.renew('a', 1, 500);
    assert.equal(t.versionOf('w1'), v1, 'a renewal leaves it alone');
    t.add(lease('b', 100));
    step();
    t.remove('b');
    step();
    t.remove('a');
    assert.equal(t.versionOf('w1'), 0);
    t.add(lease('c', 100));
    assert.notEqual(step(), v1);
  });

  it('finds leases by job and by worker, and forgets removed ones', () => {
    const t = new LeaseTable();
    t.add(lease('a', 100, 'w1'));
    t.add(lease('b', 200, 'w1'));
    t.add(lease('c', 300, 'w2'));
    assert.equal(t.size, 3);
    assert.equal(t.get('b')?.deadline, 200);
    assert.deepEqual(ids(t.ofWorker('w1')).sort(), ['a', 'b']);
    assert.equal(t.countOfWorker('w2'), 1);
    assert.equal(t.remove('a')?.jobId, 'a');
    assert.equal(t.remove('a'), undefined);
    assert.equal(t.get('a'), undefined);
    assert.deepEqual(ids(t.ofWorker('w1')), ['b']);
    t.remove('c');
    assert.equal(t.countOfWorker('w2'), 0);
    assert.deepEqual(t.ofWorker('w2'), []);
    assert.deepEqual(ids([...t.all()]), ['b']);
    assert.equal(t.size, 1);
  });

  it('a job holds one lease at a time: a second is refused until the first is removed', () => {
    const t = new LeaseTable();
    t.add(lease('a', 100, 'w1', 1));
    assert.throws(() => t.add(lease('a', 500, 'w2', 2)), (err: CpcError) => err.code === 'INVALID_STATE');
    assert.deepEqual(t.get('a'), lease('a', 100, 'w1', 1), 'the refused lease changed nothing');
    t.remove('a');
    t.add(lease('a', 500, 'w2', 2));
    assert.equal(t.size, 1);
    assert.equal(t.countOfWorker('w1'), 0);
    assert.deepEqual(t.get('a'), lease('a', 500, 'w2', 2));
    assert.deepEqual(t.expired(100), [], 'the first lease’s deadline no longer counts');
    assert.deepEqual(ids(t.expired(500)), ['a']);
  });

  it('a stopping lease stays, is indexed by worker, and changes the worker version', () => {
    const t = new LeaseTable();
    t.add(lease('a', 100, 'w1', 1));
    t.add(lease('b', 100, 'w1', 1));
    const v = t.versionOf('w1');
    t.markStopping('a', { cores: 2, memoryMb: 10 });
    assert.notEqual(t.versionOf('w1'), v);
    assert.deepEqual([...(t.stoppingOf('w1') ?? [])], ['a']);
    assert.deepEqual(t.get('a')?.stopping, { resources: { cores: 2, memoryMb: 10 } });
    assert.equal(t.countOfWorker('w1'), 2, 'a stopping lease still holds its place on the worker');
    t.remove('a');
    assert.equal(t.stoppingOf('w1'), undefined);
  });

  it('renew only moves a deadline later, and only for the current attempt', () => {
    const t = new LeaseTable();
    t.add(lease('a', 100, 'w1', 2));
    assert.equal(t.renew('a', 2, 300), true);
    assert.equal(t.get('a')?.deadline, 300);
    assert.equal(t.renew('a', 2, 200), true);
    assert.equal(t.get('a')?.deadline, 300, 'a late, reordered renewal does not shorten the lease');
    assert.equal(t.renew('a', 1, 900), false);
    assert.equal(t.renew('nope', 1, 900), false);
    assert.equal(t.get('a')?.deadline, 300);
  });

  it('renewWorker moves the deadlines of that worker’s leases only, and only later', () => {
    const t = new LeaseTable();
    t.add(lease('a', 100, 'w1'));
    t.add(lease('b', 900, 'w1'));
    t.add(lease('c', 100, 'w2'));
    t.renewWorker('w1', 500);
    t.renewWorker('nobody', 10_000);
    assert.equal(t.get('a')?.deadline, 500);
    assert.equal(t.get('b')?.deadline, 900);
    assert.equal(t.get('c')?.deadline, 100);
    assert.deepEqual(ids(t.expired(499)), ['c']);
  });

  it('expired returns exactly the leases at or past their deadline', () => {
    const t = new LeaseTable();
    t.add(lease('a', 100));
    t.add(lease('b', 200));
    t.add(lease('c', 300));
    assert.deepEqual(t.expired(99), []);
    assert.deepEqual(ids(t.expired(100)), ['a']);
    assert.deepEqual(ids(t.expired(250)).sort(), ['a', 'b']);
  });

  it('expired honours renewals made after the lease was added', () => {
    const t = new LeaseTable();
    t.add(lease('a', 100));
    t.add(lease('b', 150));
    t.renew('a', 1, 400);
    t.renewWorker('w1', 300);
    assert.deepEqual(t.expired(299), []);
    assert.deepEqual(ids(t.expired(300)), ['b']);
    t.renew('b', 1, 350);
    assert.deepEqual(t.expired(349), []);
    assert.deepEqual(ids(t.expired(400)).sort(), ['a', 'b']);
  });

  it('a renewal after a lease was reported expired still rescues it', () => {
    const t = new LeaseTable();
    t.add(lease('a', 100));
    assert.deepEqual(ids(t.expired(100)), ['a']);
    t.renew('a', 1, 500);
    assert.deepEqual(t.expired(200), []);
    assert.deepEqual(ids(t.expired(500)), ['a']);
  });

  it('never returns a removed lease', () => {
    const t = new LeaseTable();
    t.add(lease('a', 100));
    t.add(lease('b', 100));
    t.remove('a');
    assert.deepEqual(ids(t.expired(1000)), ['b']);
    t.remove('b');
    assert.deepEqual(t.expired(1000), []);
  });

  it('an expired lease not removed is reported again by the next sweep, once', () => {
    const t = new LeaseTable();
    t.add(lease('a', 100));
    t.add(lease('b', 100));
    assert.deepEqual(ids(t.expired(100)).sort(), ['a', 'b']);
    assert.deepEqual(ids(t.expired(150)).sort(), ['a', 'b']);
    t.remove('a');
    assert.deepEqual(ids(t.expired(200)), ['b']);
  });

  it('nextDeadline gives the earliest deadline to time the next sweep', () => {
    const t = new LeaseTable();
    assert.equal(t.nextDeadline(), undefined);
    t.add(lease('a', 300));
    t.add(lease('b', 200));
    assert.equal(t.nextDeadline(), 200);
    t.renew('b', 1, 400);
    t.expired(250);
    assert.equal(t.nextDeadline(), 300);
  });

  it('10 000 leases with random deadlines, some renewed and some removed, expire in deadline order', () => {
    const random = rng(2024);
    const t = new LeaseTable();
    const deadlines = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const id = `job-${i}`;
      const d = Math.floor(random() * 1_000_000);
      t.add(lease(id, d, `w${i % 17}`));
      deadlines.set(id, d);
    }
    for (let i = 0; i < 10_000; i += 3) {
      const id = `job-${i}`;
      const d = deadlines.get(id)! + Math.floor(random() * 500_000) - 100_000;
      t.renew(id, 1, d);
      deadlines.set(id, Math.max(d, deadlines.get(id)!));
    }
    t.renewWorker('w5', 900_000);
    for (const [id, d] of deadlines) if (Number(id.slice(4)) % 17 === 5) deadlines.set(id, Math.max(d, 900_000));
    for (let i = 1; i < 10_000; i += 50) {
      t.remove(`job-${i}`);
      deadlines.delete(`job-${i}`);
    }

    // Sweep forward in steps, removing what expires as the model would.
    const seen: number[] = [];
    let prev = -1;
    for (let now = 0; now <= 1_600_000; now += 7_919) {
      const out = t.expired(now);
      for (const l of out) {
        assert.ok(l.deadline <= now && l.deadline > prev, `lease ${l.jobId} (deadline ${l.deadline}) expires in the sweep at ${now}`);
        assert.equal(l.deadline, deadlines.get(l.jobId));
        seen.push(l.deadline);
        t.remove(l.jobId);
      }
      prev = now;
    }
    assert.equal(seen.length, deadlines.size);
    assert.equal(t.size, 0);

    // In one sweep, everything comes out in deadline order.
    const t2 = new LeaseTable();
    const ds: number[] = [];
    for (let i = 0; i < 10_000; i++) {
      const d = Math.floor(random() * 1_000_000);
      ds.push(d);
      t2.add(lease(`job-${i}`, d));
    }
    const all = t2.expired(1_000_000).map((l) => l.deadline);
    assert.deepEqual(all, [...ds].sort((a, b) => a - b));
  });
});

describe('Heap', () => {
  it('pops in order of its comparison', () => {
    const random = rng(5);
    const h = new Heap<number>((a, b) => a < b);
    const xs = Array.from({ length: 2000 }, () => Math.floor(random() * 500));
    for (const x of xs) h.push(x);
    assert.equal(h.size, xs.length);
    const out: number[] = [];
    while (h.size > 0) out.push(h.pop()!);
    assert.deepEqual(out, [...xs].sort((a, b) => a - b));
    assert.equal(h.pop(), undefined);
    assert.equal(h.peek(), undefined);
  });
});
