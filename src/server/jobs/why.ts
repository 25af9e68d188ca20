import { usedOnlyBy } from '../../core/commands.js';
import type { WhyReason, WhyView } from '../../core/job-reports.js';
import type { Model } from '../../core/model.js';
import { FINAL_STATES, type Job, type Resources } from '../../core/types.js';

/** Dependencies named one by one; more are counted. */
const MAX_NAMED_DEPENDENCIES = 20;

const fits = (have: Resources, asked: Resources) => have.cores >= asked.cores && have.memoryMb >= asked.memoryMb;
const sizeText = (r: Resources) => `${r.cores} core${r.cores === 1 ? '' : 's'}, ${r.memoryMb} MB`;

/**
 * Why a job is not running, from the model and what lending peers offer
 * (`offers`: the free room their workers last asked for work with): it waits
 * for dependencies, no worker is big enough, an earlier attempt is still
 * stopping, or it waits for room and its turn. Several may hold at once.
 */
export function explain(m: Model, job: Job, archived: boolean, offers: readonly Resources[]): WhyView {
  const base = { id: job.id, state: job.state };
  if (archived || FINAL_STATES.has(job.state)) {
    return { ...base, summary: `it is not waiting: it ended (${job.state}${job.reason ? `: ${job.reason}` : ''})`, reasons: [] };
  }
  if (job.state === 'running') {
    const lease = m.leases.get(job.id);
    const where = lease ? (m.workers.get(lease.workerId)?.name ?? lease.workerId) : undefined;
    return { ...base, summary: `it is running${where ? ` on worker ${where}${lease!.via === 'local' ? '' : ` via ${lease!.via}`}` : ''}`, reasons: [] };
  }
  const reasons: WhyReason[] = [];
  if (job.state === 'waiting') {
    const open = job.spec.after.map((id) => m.job(id)).filter((d): d is Job => d !== undefined && d.state !== 'done');
    reasons.push({
      kind: 'dependencies',
      count: open.length,
      jobs: open.slice(0, MAX_NAMED_DEPENDENCIES).map((d) => ({ id: d.id, ...(d.spec.name !== undefined ? { name: d.spec.name } : {}), state: d.state })),
    });
  }
  const held = m.heldBy(job);
  if (held) {
    const a = job.attempts.find((x) => x.n === held.attempt);
    reasons.push({ kind: 'old-attempt', attempt: held.attempt, worker: m.workers.get(held.workerId)?.name ?? a?.workerName ?? held.workerId, via: held.via });
  }

  // Workers bound to one user take only the jobs of projects that user alone uses.
  const workers = [...m.workers.values()].filter((w) => w.onlyUser === undefined || usedOnlyBy(m, job.project, w.onlyUser));
  const asked = job.spec.resources;
  const offered = [...workers.map((w) => w.resources), ...offers];
  if (offered.length === 0) reasons.push({ kind: 'no-workers' });
  else if (!offered.some((r) => fits(r, asked))) {
    const largest = offered.reduce((a, r) => ({ cores: Math.max(a.cores, r.cores), memoryMb: Math.max(a.memoryMb, r.memoryMb) }), { cores: 0, memoryMb: 0 });
    reasons.push({ kind: 'no-worker-fits', asked, largest, workers: workers.length, peers: offers.length });
  } else if (job.state === 'queued' && !held) {
    const fitting = workers.filter((w) => fits(w.resources, asked));
    let freeNow: Resources | null = null;
    for (const w of fitting) {
      const free = m.freeOf(w.id);
      if (freeNow === null || free.cores > freeNow.cores || (free.cores === freeNow.cores && free.memoryMb > freeNow.memoryMb)) freeNow = free;
    }
    for (const r of offers) if (fits(r, asked) && (freeNow === null || r.cores > freeNow.cores)) freeNow = r;
    let ahead = 0;
    for (const id of m.jobIdsOf(job.project)) {
      const o = m.job(id)!;
      if (o.state !== 'queued' || o.id === job.id) continue;
      if (o.spec.priority > job.spec.priority || (o.spec.priority === job.spec.priority && o.seq < job.seq)) ahead++;
    }
    let others = 0;
    for (const p of m.projects.keys()) if (p !== job.project) others += m.liveCountsOf(p).queued;
    reasons.push({ kind: 'waiting-for-room', fitting: fitting.length + offers.filter((r) => fits(r, asked)).length, freeNow, ahead, others });
  }
  return { ...base, summary: summaryOf(reasons), reasons };
}

/** The reasons as one line, the one that matters most first. */
export function summaryOf(reasons: readonly WhyReason[]): string {
  const parts = reasons.map((r): string => {
    switch (r.kind) {
      case 'dependencies':
        return r.count === 0 ? 'its dependencies are done; it is queued next' : `waits for ${r.count} dependenc${r.count === 1 ? 'y' : 'ies'} (${r.jobs.map((d) => `${d.id.slice(0, 8)} ${d.state}`).join(', ')}${r.count > r.jobs.length ? ', …' : ''})`;
      case 'no-worker-fits':
        return `no worker fits: it asks ${sizeText(r.asked)}; the largest offered is ${r.largest ? sizeText(r.largest) : 'none'} (${r.workers} worker${r.workers === 1 ? '' : 's'}, ${r.peers} peer offer${r.peers === 1 ? '' : 's'})`;
      case 'no-workers':
        return 'no worker is connected that may run it, and no peer offers room';
      case 'old-attempt':
        return `waits for attempt ${r.attempt} to stop on worker ${r.worker}${r.via === 'local' ? '' : ` via ${r.via}`}`;
      case 'waiting-for-room':
        return `waits for room and its turn: ${r.fitting} worker${r.fitting === 1 ? '' : 's'} big enough (most free now ${r.freeNow ? sizeText(r.freeNow) : 'none'}); ${r.ahead} queued job${r.ahead === 1 ? '' : 's'} of its project go first, ${r.others} of other projects take turns with it`;
    }
  });
  return parts.join('; ') || 'nothing holds it: it should be handed out at the next claim';
}
