/**
 * A simulated federation of up to thousands of servers, in one process, on a
 * simulated clock: how fair delegation stays and how its messages grow with
 * the number of links.
 *
 * Real: each server's job state is a real Model (src/core/model.ts), jobs are
 * handed out by the real planClaim (for local and for a peer's worker alike),
 * a borrower asks its peers in its priority order and only those whose
 * announced shapes fit (anyFits, as Delegation.ask does), and a server
 * announces its work only when its set of queued shapes changes (as
 * WorkAnnouncer does). Modelled: links are one-way latencies, each message
 * arriving after its link's latency; a worker is one one-core slot; a job
 * runs for its duration; lease renewals and control calls are counted as
 * real delegation sends them (one call and its answer per home a borrower
 * holds attempts of, every third of a lease and every 25 s) without being
 * simulated one by one.
 *
 *   node dist/bench/federation-sim.js [--servers 1000] [--seed 1]
 *
 * prints one JSON line per federation size (servers/8 … servers).
 */
import { planClaim } from '../src/core/commands.js';
import { Model } from '../src/core/model.js';
import type { Resources } from '../src/core/types.js';
import { anyFits, type Shape } from '../src/federation/link.js';

export interface SimOptions {
  servers: number;
  /** One in this many servers is a hub; hubs are linked to every hub, leaves to two hubs. */
  hubEvery: number;
  /** Share of servers that get jobs. */
  homeShare: number;
  jobsPerHome: number;
  jobS: number;
  /** Homes submit at random moments in this window. */
  submitWindowS: number;
  /** Lease length, as a home's hello tells it (twice the default 120 s heartbeat). */
  leaseS: number;
  seed: number;
}

export interface SimResult {
  servers: number;
  hubs: number;
  links: number;
  homes: number;
  jobs: number;
  delegated: number;
  /** JSON frames over all links: hellos, work notices, claims, results, renewals, control calls, and their answers. */
  messages: number;
  messagesPerLink: number;
  /** Frames for work (claims, results, renewals, control) divided by delegated jobs. */
  messagesPerDelegatedJob: number;
  /** Claims answered with nothing (the home's last job went to another first). */
  emptyClaims: number;
  workNotices: number;
  /** Per home: makespan alone (jobs × duration) over the makespan here; above 1 means helped. */
  speedupMin: number;
  speedupMedian: number;
  speedupMax: number;
  /**
   * Jain's index of the speed-ups of like homes (1: all helped alike): leaves
   * (reached by two hubs' workers) and hubs (reached by every hub and their
   * leaves) are compared among themselves, since their reach differs tenfold.
   */
  jainLeafHomes: number;
  jainHubHomes: number;
  /** Longest a job waited from submission to start, in simulated seconds. */
  maxWaitS: number;
  /** Every job ran exactly once. */
  exactlyOnce: boolean;
  wallMs: number;
}

/** Jain's fairness index: 1 when all are equal, 1/n when one has everything. */
function jain(xs: number[]): number {
  if (xs.length === 0) return 1;
  const sum = xs.reduce((a, b) => a + b, 0);
  return (sum * sum) / (xs.length * xs.reduce((a, b) => a + b * b, 0));
}

const ONE_CORE: Resources = { cores: 1, memoryMb: 0 };
const CONTROL_WAIT_S = 25;

/** xorshift: the same federation for the same seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** A binary heap of timed events; ties go in the order they were scheduled. */
class Timeline {
  private heap: { at: number; seq: number; run: () => void }[] = [];
  private seq = 0;
  now = 0;

  at(at: number, run: () => void): void {
    const item = { at, seq: this.seq++, run };
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.before(h[p]!, item)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = item;
  }

  run(): void {
    const h = this.heap;
    while (h.length > 0) {
      const top = h[0]!;
      const last = h.pop()!;
      if (h.length > 0) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= h.length) break;
          const r = l + 1;
          const c = r < h.length && this.before(h[r]!, h[l]!) ? r : l;
          if (this.before(last, h[c]!)) break;
          h[i] = h[c]!;
          i = c;
        }
        h[i] = last;
      }
      this.now = top.at;
      top.run();
    }
  }

  private before(a: { at: number; seq: number }, b: { at: number; seq: number }): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }
}

interface Server {
  id: number;
  model: Model;
  worker: string;
  /** Peers in this server's priority order (nearest first, as an admin would set them). */
  peers: { id: number; latencyMs: number }[];
  /** What each peer last announced, as it arrived here. */
  known: Map<number, Shape[]>;
  lastAnnounced: string;
  busy: boolean;
  /** A borrow round is going on (asking peers one after the other). */
  asking: boolean;
  submittedAt: Map<string, number>;
}

export function simulate(opts: SimOptions): SimResult {
  const wall0 = performance.now();
  const random = rng(opts.seed);
  const t = new Timeline();
  const servers: Server[] = [];
  const hubs: number[] = [];
  for (let i = 0; i < opts.servers; i++) {
    const model = new Model();
    model.apply({ t: 'project-created', at: 0, name: 'p', owner: 'u' });
    const worker = `w${i}`;
    model.apply({ t: 'worker-registered', at: 0, id: worker, name: worker, host: `h${i}`, resources: ONE_CORE, labels: [], tokenId: 't' });
    servers.push({ id: i, model, worker, peers: [], known: new Map(), lastAnnounced: '', busy: false, asking: false, submittedAt: new Map() });
    if (i % opts.hubEvery === 0) hubs.push(i);
  }
  let links = 0;
  const link = (a: number, b: number, latencyMs: number) => {
    servers[a]!.peers.push({ id: b, latencyMs });
    servers[b]!.peers.push({ id: a, latencyMs });
    links++;
  };
  for (let i = 0; i < hubs.length; i++) for (let k = i + 1; k < hubs.length; k++) link(hubs[i]!, hubs[k]!, 10 + random() * 50);
  for (const s of servers) {
    if (s.id % opts.hubEvery === 0) continue;
    const first = hubs[Math.floor(random() * hubs.length)]!;
    let second = hubs[Math.floor(random() * hubs.length)]!;
    if (hubs.length > 1) while (second === first) second = hubs[Math.floor(random() * hubs.length)]!;
    link(s.id, first, 2 + random() * 40);
    if (second !== first) link(s.id, second, 2 + random() * 40);
  }
  for (const s of servers) s.peers.sort((a, b) => a.latencyMs - b.latencyMs);
  const latency = (a: number, b: number) => servers[a]!.peers.find((p) => p.id === b)!.latencyMs;

  let messages = 2 * links; // each link's two hellos
  let workMessages = 0;
  let workNotices = 0;
  let emptyClaims = 0;
  let delegated = 0;
  const ran = new Map<string, number>();
  const waits: number[] = [];
  const leaseMs = opts.leaseS * 1000;
  const jobMs = opts.jobS * 1000;

  /** As WorkAnnouncer: a notice to every peer when the set of queued shapes changed. */
  const announce = (s: Server) => {
    const shapes = s.model.ready.shapes();
    const key = shapes.map((x) => `${x.resources.cores}:${x.resources.memoryMb}`).sort().join(',');
    if (key === s.lastAnnounced) return;
    s.lastAnnounced = key;
    for (const p of s.peers) {
      messages++;
      workNotices++;
      t.at(t.now + p.latencyMs, () => {
        const peer = servers[p.id]!;
        peer.known.set(s.id, shapes);
        if (shapes.length > 0) wake(peer);
      });
    }
  };

  const start = (home: Server, runner: Server, claims: [string, number][], via: string) => {
    runner.busy = true;
    const [jobId, attempt] = claims[0]!;
    ran.set(jobId, (ran.get(jobId) ?? 0) + 1);
    waits.push(t.now - home.submittedAt.get(jobId)!);
    const remote = home !== runner;
    if (remote) {
      delegated++;
      // Renewals every third of a lease, and control calls every CONTROL_WAIT_S, each a call and its answer.
      const extra = 2 * Math.floor(jobMs / (leaseMs / 3)) + 2 * Math.floor(opts.jobS / CONTROL_WAIT_S);
      messages += extra;
      workMessages += extra;
    }
    t.at(t.now + jobMs, () => {
      const finish = () => {
        home.model.apply({
          t: 'attempt-finished',
          at: t.now,
          jobId,
          attempt,
          how: 'exited',
          exitCode: 0,
          signal: null,
          durationMs: jobMs,
          stdoutTail: '',
          stderrTail: '',
          stdoutBytes: 0,
          stderrBytes: 0,
        });
        announce(home);
      };
      if (remote) {
        // The result goes home (a call), home answers; the worker is free at once (the outbox delivers).
        messages += 2;
        workMessages += 2;
        t.at(t.now + latency(runner.id, home.id), finish);
      } else finish();
      runner.busy = false;
      wake(runner);
      if (home !== runner) wake(home);
    });
    void via;
  };

  /** An idle worker: its own server's jobs first, then its peers' in priority order. */
  const wake = (s: Server) => {
    if (s.busy || s.asking) return;
    const local = planClaim(s.model, s.worker, 'local', t.now, leaseMs, 1);
    if (local) {
      s.model.apply(local);
      announce(s);
      start(s, s, local.claims, 'local');
      return;
    }
    const candidates = s.peers.filter((p) => anyFits(s.known.get(p.id) ?? [], ONE_CORE));
    if (candidates.length === 0) return;
    s.asking = true;
    const askNext = (i: number) => {
      if (i >= candidates.length) {
        s.asking = false;
        return;
      }
      const p = candidates[i]!;
      const home = servers[p.id]!;
      messages += 2;
      workMessages += 2;
      // The claim reaches home after one latency; its answer comes back after another.
      t.at(t.now + p.latencyMs, () => {
        const claim = planClaim(home.model, s.worker, `peer-${s.id}`, t.now, leaseMs, 1, { free: ONE_CORE, workerName: s.worker });
        if (claim) {
          home.model.apply(claim);
          announce(home);
        }
        t.at(t.now + p.latencyMs, () => {
          if (!claim) {
            emptyClaims++;
            askNext(i + 1);
            return;
          }
          s.asking = false;
          start(home, s, claim.claims, `peer-${s.id}`);
        });
      });
    };
    askNext(0);
  };

  // Homes, and when each submits its jobs.
  const homes = servers.filter(() => random() < opts.homeShare);
  for (const home of homes) {
    t.at(random() * opts.submitWindowS * 1000, () => {
      const jobs = Array.from({ length: opts.jobsPerHome }, (_, k) => ({
        id: `s${home.id}-j${k}`,
        spec: { argv: ['true'], env: {}, resources: ONE_CORE, priority: 0, maxRetries: 0, timeoutS: null, after: [] },
      }));
      home.model.apply({ t: 'jobs-submitted', at: t.now, project: 'p', jobs });
      for (const j of jobs) home.submittedAt.set(j.id, t.now);
      announce(home);
      wake(home);
    });
  }
  t.run();

  const jobs = homes.length * opts.jobsPerHome;
  const speedupOf = (home: Server) => {
      let first = Infinity;
      let last = 0;
      for (const job of home.model.jobs.values()) {
        for (const a of job.attempts) {
          first = Math.min(first, home.submittedAt.get(job.id)!);
          last = Math.max(last, a.endedAt ?? 0);
        }
      }
      return (opts.jobsPerHome * jobMs) / (last - first);
  };
  const speedups = homes.map(speedupOf).sort((a, b) => a - b);
  const isHub = (s: Server) => s.id % opts.hubEvery === 0;
  const done = [...servers].reduce((n, s) => n + [...s.model.jobs.values()].filter((j) => j.state === 'done').length, 0);
  return {
    servers: opts.servers,
    hubs: hubs.length,
    links,
    homes: homes.length,
    jobs,
    delegated,
    messages,
    messagesPerLink: messages / links,
    messagesPerDelegatedJob: delegated > 0 ? workMessages / delegated : 0,
    emptyClaims,
    workNotices,
    speedupMin: speedups[0] ?? 0,
    speedupMedian: speedups[Math.floor(speedups.length / 2)] ?? 0,
    speedupMax: speedups.at(-1) ?? 0,
    jainLeafHomes: jain(homes.filter((h) => !isHub(h)).map(speedupOf)),
    jainHubHomes: jain(homes.filter(isHub).map(speedupOf)),
    maxWaitS: Math.max(0, ...waits) / 1000,
    exactlyOnce: done === jobs && ran.size === jobs && [...ran.values()].every((n) => n === 1),
    wallMs: performance.now() - wall0,
  };
}

export const DEFAULT_SIM: SimOptions = {
  servers: 1000,
  hubEvery: 25,
  homeShare: 0.1,
  jobsPerHome: 40,
  jobS: 10,
  submitWindowS: 60,
  leaseS: 240,
  seed: 1,
};

if (process.argv[1]?.endsWith('federation-sim.js')) {
  const arg = (name: string) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : undefined);
  const top = arg('--servers') ?? DEFAULT_SIM.servers;
  const seed = arg('--seed') ?? DEFAULT_SIM.seed;
  for (const servers of [top / 8, top / 4, top / 2, top].map(Math.round)) {
    const r = simulate({ ...DEFAULT_SIM, servers, seed });
    const rounded = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'number' ? Math.round(v * 1000) / 1000 : v]));
    console.log(JSON.stringify(rounded));
  }
}
