/**
 * 32 real servers, each with one one-core worker, each in a network namespace
 * of its own: four hubs linked to each other, 28 leaves linked to one hub
 * each, four of the leaves behind a firewall (they only dial out). Trust is
 * set up as an admin would for many servers: one membership file, and per
 * server one `cpcc connect-server --file` and one `cpcc trust --all --from`.
 *
 * Jobs go to three leaves of hub 0, which asks them for work in the order its
 * admin set (a walled leaf first), and to hub 1, whose leaves and fellow hubs
 * borrow. At the end: every job done with exactly one result, never two live
 * attempts of one job, hub 0's worker took a job from a lower-priority leaf
 * only once every job of the higher ones had been handed out, and every
 * server with jobs got its share within the bound below. Setup time, links,
 * messages per delegated job and memory are printed as FIGURES for
 * docs/BENCHMARKS.md.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { updateConfig } from '../../src/client/config.js';
import type { JobView } from '../../src/core/wire.js';
import { cpcc, until } from '../helpers/server.js';
import { faultsUnavailable, Network } from '../faults/netns.js';
import { AttemptWatch, jobEnded, reportedAttempts, startSite, startWorker, UNSECURE_PORT, type NsSite, type NsWorker } from '../faults/sites.js';

const skip = faultsUnavailable();

const HUBS = 4;
const LEAVES = 28;
/** Leaves 24..27, one under each hub, accept no connection from outside. */
const WALLED = new Set([24, 25, 26, 27]);
const JOB_S = 1;
/** Jobs per home: three leaves of hub 0, and hub 1. */
const LEAF_JOBS = 6;
const HUB_JOBS = 16;
/**
 * The bound on a share: every server with jobs has its first job started
 * within START_BOUND_S of its submission, and its last ended within what its
 * own worker alone would need (jobs × JOB_S) plus SLACK_S; borrowers only
 * ever shorten that.
 */
const START_BOUND_S = 60;
const SLACK_S = 90;

const hubName = (i: number) => `h${i}`;
const leafName = (i: number) => `l${i}`;
/** Leaf i hangs off hub i mod 4. */
const hubOf = (leaf: number) => leaf % HUBS;

async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

function rssKb(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

async function metricsOf(site: NsSite): Promise<Map<string, number>> {
  const dispatcher = new Agent({ connect: { ca: site.caPem, rejectUnauthorized: false } });
  let text: string;
  try {
    const res = await request(`${site.url}/metrics`, { dispatcher, headers: { authorization: `Bearer ${site.admin.token!}` } });
    text = await res.body.text();
  } finally {
    await dispatcher.close();
  }
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

const framesOf = (m: Map<string, number>) => (m.get('cpc_peer_frames_total{direction="sent"}') ?? 0);

describe('32 servers: hubs, leaves and walled leaves', { skip: skip ?? false, timeout: 900_000 }, () => {
  let net: Network;
  const sites = new Map<string, NsSite>();
  const workers: NsWorker[] = [];
  const figures: Record<string, unknown> = {};
  const work = mkdtempSync(join(tmpdir(), 'cpc-fault-32-'));
  const jobIds = new Set<string>();
  let watch: AttemptWatch;

  const site = (name: string) => sites.get(name)!;
  const hubs = () => Array.from({ length: HUBS }, (_, i) => site(hubName(i)));

  before(async () => {
    net = new Network();
    const names = [...Array.from({ length: HUBS }, (_, i) => hubName(i)), ...Array.from({ length: LEAVES }, (_, i) => leafName(i))];
    for (const n of names) net.addHost(n);
    const t0 = performance.now();
    // Servers start a few at a time: each makes its keys, and the machine has two cores.
    const started = await mapLimited(names, 4, (n) => startSite(net, n, { heartbeatS: 5 }));
    for (const s of started) sites.set(s.name, s);
    for (let i = 0; i < LEAVES; i++) if (WALLED.has(i)) net.firewall(leafName(i));
    figures.serversStartS = (performance.now() - t0) / 1000;

    // The federation's membership file, and each server's own list of whom it dials.
    const line = (s: NsSite) => `${s.publicAddress} ${UNSECURE_PORT} ${new X509Certificate(s.caPem).fingerprint256} ${s.name}`;
    const all = join(work, 'members.txt');
    writeFileSync(all, ['# the whole federation', ...started.map(line), ''].join('\n'));
    const hubFile = join(work, 'hubs.txt');
    writeFileSync(hubFile, hubs().map(line).join('\n') + '\n');
    const t1 = performance.now();
    const cpccOf = new Map<string, string>();
    for (const s of started) {
      const home = mkdtempSync(join(work, `cpcc-${s.name}-`));
      await updateConfig(home, (c) => {
        c.servers[s.name] = { url: s.url, serverId: s.serverId, caPem: s.caPem, caFingerprint: new X509Certificate(s.caPem).fingerprint256, user: 'cpc-admin', token: s.admin.token! };
        c.current = s.name;
      });
      cpccOf.set(s.name, home);
    }
    const run = async (s: NsSite, args: string[]) => {
      const r = await cpcc(cpccOf.get(s.name)!, [...args, '--json']);
      assert.equal(r.code, 0, `${s.name}: cpcc ${args.join(' ')}: ${r.stderr}`);
    };
    // Hubs dial hubs; a leaf dials its hub (a walled leaf can only dial).
    await mapLimited(started, 4, (s) => {
      if (s.name.startsWith('h')) return run(s, ['connect-server', '--file', hubFile]);
      const hubFileOf = join(work, `${s.name}.txt`);
      writeFileSync(hubFileOf, `${line(site(hubName(hubOf(Number(s.name.slice(1))))))}\n`);
      return run(s, ['connect-server', '--file', hubFileOf]);
    });
    await mapLimited(started, 4, (s) => run(s, ['trust', '--all', '--from', all]));
    const expectedLinks = (HUBS * (HUBS - 1)) / 2 + LEAVES;
    await until(
      'every link up',
      async () => {
        const views = await Promise.all(started.map((s) => s.admin.peers()));
        const up = views.reduce((n, v) => n + v.connected.filter((p) => p.link === 'up').length, 0);
        return up === 2 * expectedLinks;
      },
      { timeoutMs: 180_000, intervalMs: 1000 },
    );
    figures.trustAndLinksS = (performance.now() - t1) / 1000;
    figures.links = expectedLinks;
    figures.adminCommands = 2 * started.length;

    // Hub 0 asks its walled leaf first, then leaf 0, then leaf 4.
    const h0 = site(hubName(0));
    for (const [i, leaf] of [24, 0, 4].entries()) await h0.admin.setPeerPriority(site(leafName(leaf)).serverId, i);

    const t2 = performance.now();
    // Hub 0's worker comes last, once the jobs below are queued: it must choose among its leaves by priority.
    const others = started.filter((s) => s !== h0);
    workers.push(...(await mapLimited(others, 4, (s) => startWorker(net, s.host, s, `${s.name}-w`, 1))));
    figures.workersStartS = (performance.now() - t2) / 1000;
    watch = new AttemptWatch(() => jobIds, 250);
  });

  after(async () => {
    watch?.stop();
    await Promise.all([...sites.values()].map((s) => s.admin.destroy()));
    await net?.destroy();
    for (const dir of [work, ...[...sites.values()].map((s) => s.home), ...workers.map((w) => w.workDir)]) rmSync(dir, { recursive: true, force: true });
    if (Object.keys(figures).length > 0) console.log(`FIGURES ${JSON.stringify(figures)}`);
  });

  it('ends every job exactly once, borrows by priority and starves nobody', async () => {
    const homes = [leafName(24), leafName(0), leafName(4), hubName(1)].map(site);
    const framesBefore = await Promise.all([...sites.values()].map(async (s) => framesOf(await metricsOf(s))));
    const submitted = new Map<string, { at: number; ids: string[] }>();
    for (const home of homes) {
      await home.admin.createProject('p');
      const n = home.name.startsWith('h') ? HUB_JOBS : LEAF_JOBS;
      const at = Date.now();
      const { ids } = await home.admin.submit('p', Array.from({ length: n }, (_, i) => ({ shell: `sleep ${JOB_S}; echo ${home.name}-${i}` })));
      for (const id of ids) jobIds.add(id);
      submitted.set(home.name, { at, ids });
    }
    const h0 = site(hubName(0));
    workers.push(await startWorker(net, h0.host, h0, `${h0.name}-w`, 1));

    const ended = new Map<string, JobView[]>();
    for (const home of homes) {
      ended.set(home.name, await Promise.all(submitted.get(home.name)!.ids.map((id) => jobEnded(home.admin, id, 600_000))));
    }
    watch.stop();
    watch.scan();

    // Exactly once: done, one result taken, never two live attempts.
    let delegated = 0;
    for (const [name, jobs] of ended) {
      for (const j of jobs) {
        assert.equal(j.state, 'done', `${name} job ${j.id}: ${j.reason}`);
        assert.equal(reportedAttempts(j), 1, `${name} job ${j.id} has one result`);
        const i = Number(j.stdoutTail?.split('-')[1]);
        assert.equal(j.stdoutTail, `${name}-${i}\n`);
        if (j.attempts.at(-1)!.via !== 'local') delegated++;
      }
    }
    assert.deepEqual(watch.overlaps, []);

    // Priority at hub 0: a job taken from a leaf while one of a higher-priority leaf was still waiting would break it.
    const order = [leafName(24), leafName(0), leafName(4)];
    const byH0 = (name: string) => ended.get(name)!.filter((j) => j.attempts.at(-1)!.via === h0.serverId);
    const lastStart = (name: string) => Math.max(...ended.get(name)!.map((j) => j.attempts[0]!.startedAt));
    for (let p = 1; p < order.length; p++) {
      for (const j of byH0(order[p]!)) {
        for (const higher of order.slice(0, p)) {
          // A second of slack: the higher leaf's own worker may take its last job in the same moment.
          assert.ok(j.attempts.at(-1)!.startedAt + 1000 >= lastStart(higher), `hub 0 took ${order[p]}'s job ${j.id} while ${higher} still had one waiting`);
        }
      }
    }
    assert.ok(byH0(leafName(24)).length >= 1, 'hub 0 borrowed from its first-priority (walled) leaf');

    // No starvation, within the stated bound.
    const shares: Record<string, { workers: number; firstStartS: number; lastEndS: number; boundS: number }> = {};
    for (const [name, jobs] of ended) {
      const { at } = submitted.get(name)!;
      const firstStartS = (Math.min(...jobs.map((j) => j.attempts[0]!.startedAt)) - at) / 1000;
      const lastEndS = (Math.max(...jobs.map((j) => j.attempts.at(-1)!.endedAt!)) - at) / 1000;
      const boundS = jobs.length * JOB_S + SLACK_S;
      shares[name] = { workers: new Set(jobs.map((j) => j.attempts.at(-1)!.workerName)).size, firstStartS, lastEndS, boundS };
      assert.ok(firstStartS <= START_BOUND_S, `${name}'s first job started ${firstStartS} s after submission`);
      assert.ok(lastEndS <= boundS, `${name}'s jobs took ${lastEndS} s, more than ${boundS} s`);
    }
    assert.ok(shares[hubName(1)]!.workers >= 3, `hub 1's jobs ran on ${shares[hubName(1)]!.workers} workers; its leaves and fellow hubs borrow`);

    // Figures: messages per delegated job, memory per server, worker and link.
    const framesAfter = await Promise.all([...sites.values()].map(async (s) => framesOf(await metricsOf(s))));
    const frames = framesAfter.reduce((a, b) => a + b, 0) - framesBefore.reduce((a, b) => a + b, 0);
    const rss = [...sites.values()].map((s) => ({ name: s.name, kb: rssKb(s.child.pid), links: 0 }));
    const views = await Promise.all([...sites.values()].map((s) => s.admin.peers()));
    views.forEach((v, i) => (rss[i]!.links = v.connected.length));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    const hubRss = rss.filter((r) => r.name.startsWith('h'));
    const leafRss = rss.filter((r) => r.name.startsWith('l'));
    const perLinkKb = (mean(hubRss.map((r) => r.kb)) - mean(leafRss.map((r) => r.kb))) / (mean(hubRss.map((r) => r.links)) - mean(leafRss.map((r) => r.links)));
    Object.assign(figures, {
      jobs: [...ended.values()].reduce((n, js) => n + js.length, 0),
      delegated,
      framesDuringJobs: frames,
      framesPerDelegatedJob: delegated > 0 ? frames / delegated : null,
      serverRssMbMean: mean(rss.map((r) => r.kb)) / 1024,
      hubRssMbMean: mean(hubRss.map((r) => r.kb)) / 1024,
      leafRssMbMean: mean(leafRss.map((r) => r.kb)) / 1024,
      workerRssMbMean: mean(workers.map((w) => rssKb(w.child.pid))) / 1024,
      rssKbPerLink: perLinkKb,
      shares,
    });
    assert.ok(delegated >= 10, `only ${delegated} jobs were delegated`);
  });
});
