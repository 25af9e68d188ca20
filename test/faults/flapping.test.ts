/**
 * A link that flaps: the network between a home server and the two servers
 * that borrow its jobs goes down and up every few seconds while jobs flow.
 * At the end every job has ended done with exactly one result taken, no job
 * ever ran two attempts at once, and neither server holds more sockets or
 * descriptors than before the flapping began.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { until } from '../helpers/server.js';
import { faultsUnavailable, type Network } from './netns.js';
import { borrowingFederation, linkUp, reportedAttempts, type AttemptWatch, type BorrowingFederation, type NsSite } from './sites.js';

const skip = faultsUnavailable();
const FLAP_MS = 2500;
const FLAPPING_MS = 60_000;

/** An IPv4 address as /proc/net/tcp writes it (little-endian hex). */
function procHex(ip: string): string {
  return ip.split('.').map((n) => Number(n).toString(16).padStart(2, '0').toUpperCase()).reverse().join('');
}

/**
 * A server's descriptors that are not the test's own connections to it: the
 * test's client opens and keeps connections as it polls, which says nothing
 * of the server. Sockets are told apart by the TCP table of the server's
 * namespace (their inodes), and those whose other end is the test's address
 * are left out.
 */
function descriptors(pid: number, testAddress: string): { all: number; sockets: number } {
  const testInodes = new Set<string>();
  const gateway = procHex(testAddress);
  for (const line of readFileSync(`/proc/${pid}/net/tcp`, 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    if (f[2]!.split(':')[0] === gateway) testInodes.add(f[9]!);
  }
  let all = 0;
  let sockets = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode !== undefined && testInodes.has(inode)) continue;
    all++;
    if (inode !== undefined) sockets++;
  }
  return { all, sockets };
}

describe('a flapping link', { skip: skip ?? false, timeout: 600_000 }, () => {
  let fed: BorrowingFederation;
  let net: Network;
  let home: NsSite;
  let borrowers: NsSite[];
  let jobIds: Set<string>;
  let watch: AttemptWatch;

  before(async () => {
    fed = await borrowingFederation({ heartbeatS: 2, cores: 2 });
    ({ net, home, borrowers, jobIds, watch } = fed);
  });

  after(async () => {
    await fed?.close();
  });

  it('ends every job once, never runs one twice at a time, and leaks no sockets', async () => {
    // A first job through each borrower, so that both links have carried work before the count.
    const warm = (await home.admin.submit('p', [{ shell: 'sleep 1' }, { shell: 'sleep 1' }, { shell: 'sleep 1' }, { shell: 'sleep 1' }])).ids;
    for (const id of warm) jobIds.add(id);
    await until('the first jobs to end', async () => {
      for (const id of warm) if ((await home.admin.job(id)).state !== 'done') return false;
      return true;
    }, { timeoutMs: 60_000 });
    const sites = [home, ...borrowers];
    const before = new Map(sites.map((s) => [s.name, descriptors(s.child.pid!, net.gateway)]));

    const started = Date.now();
    let down = false;
    let round = 0;
    while (Date.now() - started < FLAPPING_MS) {
      // Jobs keep coming while the links flap: 1 to 3 s of work each.
      const { ids } = await home.admin.submit('p', [{ shell: `sleep ${1 + (round % 3)}; echo ran` }]);
      for (const id of ids) jobIds.add(id);
      const b = borrowers[round % 2]!;
      if (down) net.healAll();
      else net.partition('home', b.host);
      down = !down;
      round++;
      await new Promise((r) => setTimeout(r, FLAP_MS));
    }
    net.healAll();
    await Promise.all(borrowers.map((b) => linkUp(home, b, 120_000)));

    const jobs = await until(
      'every job to end',
      async () => {
        const all = await Promise.all([...jobIds].map((id) => home.admin.job(id)));
        return all.every((j) => j.state === 'done' || j.state === 'failed') ? all : null;
      },
      { timeoutMs: 240_000 },
    );
    for (const job of jobs) {
      assert.equal(job.state, 'done', `job ${job.id}: ${job.reason}`);
      assert.equal(reportedAttempts(job), 1, `job ${job.id} has one result taken`);
    }
    watch.scan();
    assert.deepEqual(watch.overlaps, [], 'no job ran two attempts at once');

    // Whatever the flapping opened is closed again once the links are back (each server holds a link
    // per peer and a few client connections; the bound allows for those coming and going).
    const counts = () => sites.map((s) => `${s.name}: ${JSON.stringify(before.get(s.name))} → ${JSON.stringify(descriptors(s.child.pid!, net.gateway))}`).join('; ');
    await until(
      'the servers to hold no more descriptors than before',
      () => {
        const settled = sites.every((s) => {
          const now = descriptors(s.child.pid!, net.gateway);
          const then = before.get(s.name)!;
          return now.sockets <= then.sockets + 2 && now.all <= then.all + 4;
        });
        if (!settled) throw new Error(counts());
        return true;
      },
      { timeoutMs: 60_000 },
    );
  });
});
