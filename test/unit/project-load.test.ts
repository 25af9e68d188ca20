/**
 * Loading a saved project into a model: one `project-loaded` event gives the
 * jobs the states their dependencies allow, holds the files exactly as if
 * the jobs had been submitted and run here, and rebuilds the same state from
 * a snapshot and from replay.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LEFT_BEHIND, loadedFiles, planLoadProject, type ProjectToLoad } from '../../src/core/commands.js';
import type { LoadedJob } from '../../src/core/events.js';
import { Model, type ModelSnapshot } from '../../src/core/model.js';
import type { Job } from '../../src/core/types.js';
import { World, exited, replay, spec, throwsCode } from '../helpers/core.js';

const sha = (c: string) => c.repeat(64);
const OUT = { name: 'out.txt', sha256: sha('a'), size: 10 };
const UPLOADED = { name: 'in.dat', sha256: sha('b'), size: 20 };
const CONF = { sha256: sha('c'), size: 30 };

/** What a saved project carries of a job: everything but its project and submission number. */
function saved(job: Job): LoadedJob {
  const { project: _p, seq: _s, ...rest } = structuredClone(job);
  return rest;
}

function holdings(model: Model, project: string): [string, number, number][] {
  return model.files
    .toSnapshot()
    .holdings.filter(([p]) => p === project)
    .map(([, s, size, refs]): [string, number, number] => [s, size, refs])
    .sort();
}

/** A project with a job of each kind: done with an output and a value, failed, archived, running, queued on an output, waiting. */
function source() {
  const w = new World();
  w.project('src');
  w.worker('w1');
  w.apply({ t: 'value-set', at: w.tick(), project: 'src', name: 'steps', value: { text: '5000', at: w.now } });
  w.apply({ t: 'value-set', at: w.tick(), project: 'src', name: 'conf', value: { ...CONF, at: w.now } });
  const [done, failed, archived] = w.submit('src', [
    spec({ outputs: [{ glob: '*.txt', to: 'best' }] }),
    spec({ argv: ['false'] }),
    spec({ inputs: [UPLOADED, { name: 'conf', value: 'conf' }] }),
  ]);
  assert.equal(w.claim('w1', 3).length, 3);
  w.finish(done!, exited(0, { outputs: [OUT] }));
  w.finish(failed!, 1);
  w.finish(archived!, 0);
  const archivedCopy = saved(w.job(archived!));
  w.archive([archived!]);
  const running = w.one('src');
  assert.deepEqual(w.claimIds('w1', 1), [running]);
  const [queued, waiting] = w.submit('src', [
    { key: 'q', spec: spec({ after: [done!], inputs: [{ name: 'x', job: done!, output: 'out.txt' }] }) },
    { spec: spec({ after: ['q'], inputs: [{ name: 'b', value: 'best' }] }) },
  ]);
  assert.equal(w.state(queued!), 'queued');
  assert.equal(w.state(waiting!), 'waiting');
  const jobs = [...w.model.jobIdsOf('src')].map((id) => saved(w.job(id)));
  jobs.push(archivedCopy);
  const p = w.model.project('src');
  const toLoad: ProjectToLoad = { name: 'copy', owner: 'bob', createdAt: p.createdAt, values: structuredClone(p.values!), jobs };
  return { w, toLoad, ids: { done: done!, failed: failed!, archived: archived!, running: running!, queued: queued!, waiting: waiting! } };
}

describe('project-loaded', () => {
  it('loads every job in the state its dependencies allow, with the files held as where it was saved', () => {
    const { w: a, toLoad, ids } = source();
    // Saved order need not be dependency order.
    toLoad.jobs.reverse();
    const b = new World();
    b.now = a.now + 60_000;
    const event = planLoadProject(b.model, toLoad, b.tick());
    b.apply(event);

    const job = (id: string) => b.model.job(id)!;
    assert.equal(job(ids.done).state, 'done');
    assert.deepEqual(job(ids.done).outputs, [OUT]);
    assert.equal(job(ids.failed).state, 'failed');
    assert.equal(job(ids.archived).state, 'done');
    assert.equal(job(ids.queued).state, 'queued');
    assert.deepEqual(job(ids.queued).inputs, [{ name: 'x', sha256: OUT.sha256, size: OUT.size }]);
    assert.equal(job(ids.waiting).state, 'waiting');
    const left = job(ids.running);
    assert.equal(left.state, 'queued');
    assert.equal(left.reason, LEFT_BEHIND);
    assert.equal(left.attempts.length, 1);
    assert.equal(left.attempts[0]!.how, 'worker-lost');
    assert.equal(left.lost, 0, 'an attempt left behind is not counted as lost');
    assert.deepEqual(b.model.countsOf('copy'), { waiting: 1, queued: 2, running: 0, done: 2, failed: 1, cancelled: 0 });
    assert.equal(b.model.project('copy').owner, 'bob');
    assert.deepEqual(b.model.project('copy').values, a.model.project('src').values);
    // The same references as on the server it came from (where the archived job still holds its files).
    assert.deepEqual(holdings(b.model, 'copy'), holdings(a.model, 'src'));
    assert.equal(b.model.files.bytesOf('copy'), OUT.size + UPLOADED.size + CONF.size);
    assert.deepEqual(new Set(loadedFiles(toLoad).map((f) => f.sha256)), new Set([OUT.sha256, UPLOADED.sha256, CONF.sha256]));

    // A snapshot and a replay of the journal rebuild the same state.
    const snap = JSON.parse(JSON.stringify(b.model.toSnapshot())) as ModelSnapshot;
    const restored = Model.fromSnapshot(snap);
    assert.deepEqual(restored.toSnapshot(), b.model.toSnapshot());
    assert.deepEqual(replay(b.events).toSnapshot(), b.model.toSnapshot());

    // Work goes on: the queued jobs run here, and the waiting one follows.
    for (const model of [b.model, restored]) {
      const w = new World(model);
      w.now = b.now;
      w.worker('w9');
      assert.deepEqual(new Set(w.claimIds('w9')), new Set([ids.queued, ids.running]));
      w.finish(ids.queued, 0);
      assert.equal(w.state(ids.waiting), 'queued');
      assert.deepEqual(w.job(ids.waiting).inputs, [{ name: 'b', sha256: OUT.sha256, size: OUT.size }]);
      assert.equal(w.job(ids.running).attempts.at(-1)!.n, 2);
    }
  });

  it('settles unfinished jobs against their dependencies as a submit would', () => {
    const base = (id: string, over: Partial<LoadedJob>): LoadedJob => ({
      id,
      spec: spec(),
      state: 'done',
      reason: 'exit code 0',
      createdAt: 1,
      updatedAt: 1,
      attempts: [],
      failures: 0,
      lost: 0,
      ...over,
    });
    const b = new World();
    b.apply(
      planLoadProject(
        b.model,
        {
          name: 'p',
          owner: 'bob',
          createdAt: 1,
          values: { v: { text: 'hi', at: 1 } },
          jobs: [
            base('w-on-failed', { state: 'waiting', reason: 'waiting for 1 dependency', spec: spec({ after: ['f'] }) }),
            base('f', { state: 'failed', reason: 'exit code 1' }),
            base('after-that', { state: 'waiting', reason: 'waiting for 1 dependency', spec: spec({ after: ['w-on-failed'] }) }),
            base('ready-now', { state: 'waiting', reason: 'waiting', spec: spec({ after: ['d'], inputs: [{ name: 'v', value: 'v' }] }) }),
            base('d', {}),
            base('needs-missing', { state: 'queued', reason: 'ready', spec: spec({ inputs: [{ name: 'n', value: 'nope' }] }) }),
          ],
        },
        b.tick(),
      ),
    );
    const st = (id: string) => [b.state(id), b.job(id).reason];
    assert.deepEqual(st('w-on-failed'), ['cancelled', 'dependency f failed']);
    assert.deepEqual(st('after-that'), ['cancelled', 'dependency w-on-failed cancelled']);
    assert.deepEqual(st('ready-now'), ['queued', 'dependencies done']);
    assert.deepEqual(b.job('ready-now').inputs, [{ name: 'v', text: 'hi' }]);
    assert.deepEqual(st('needs-missing'), ['failed', "input 'n': project value 'nope' is not set"]);
  });

  it('refuses what it cannot load, and changes nothing', () => {
    const { w: a, toLoad, ids } = source();
    const before = JSON.stringify(a.model.toSnapshot());
    throwsCode(() => planLoadProject(a.model, toLoad, a.now), 'JOB_EXISTS');
    throwsCode(() => planLoadProject(a.model, { ...toLoad, name: 'src' }, a.now), 'PROJECT_EXISTS');
    throwsCode(() => planLoadProject(a.model, { ...toLoad, name: '../x' }, a.now), 'INVALID_FIELD');
    const b = new Model();
    const alter = (id: string, change: (j: LoadedJob) => void): ProjectToLoad => {
      const copy = structuredClone(toLoad);
      change(copy.jobs.find((j) => j.id === id)!);
      return copy;
    };
    throwsCode(() => planLoadProject(b, alter(ids.waiting, (j) => j.spec.after.push('elsewhere')), 1), 'UNKNOWN_DEPENDENCY');
    throwsCode(() => planLoadProject(b, alter(ids.done, (j) => j.spec.after.push(ids.waiting)), 1), 'DEPENDENCY_CYCLE');
    throwsCode(() => planLoadProject(b, alter(ids.queued, (j) => (j.spec.after = [])), 1), 'INVALID_FIELD');
    throwsCode(() => planLoadProject(b, alter(ids.done, (j) => (j.attempts[0]!.n = 3)), 1), 'INVALID_FIELD');
    throwsCode(() => planLoadProject(b, alter(ids.done, (j) => (j.spec.outputs = [{ glob: '../*' }])), 1), 'INVALID_PATH');
    throwsCode(() => planLoadProject(b, { ...toLoad, jobs: [...toLoad.jobs, toLoad.jobs[0]!] }, 1), 'INVALID_FIELD');
    // What the job was queued with (a worker writes these names into its folder) and what it kept
    // are held to a submit's rules too.
    const queuedWith = (inputs: LoadedJob['inputs']) => alter(ids.queued, (j) => (j.inputs = inputs));
    assert.ok(toLoad.jobs.find((j) => j.id === ids.queued)!.inputs?.length, 'the queued job was saved with its resolved inputs');
    throwsCode(() => planLoadProject(b, queuedWith([{ name: '../../.ssh/authorized_keys', text: 'ssh-ed25519 AAAA' }]), 1), 'INVALID_PATH');
    throwsCode(() => planLoadProject(b, queuedWith([{ name: '/etc/cron.d/x', sha256: sha('a'), size: 10 }]), 1), 'INVALID_PATH');
    throwsCode(() => planLoadProject(b, queuedWith([{ name: 'not-in-the-spec', text: 'x' }]), 1), 'INVALID_FIELD');
    throwsCode(() => planLoadProject(b, queuedWith([{ name: 'x', text: 'x' }, { name: 'x', text: 'y' }]), 1), 'INVALID_FIELD');
    throwsCode(() => planLoadProject(b, queuedWith([{ name: 'x', sha256: 'ABC', size: 1 }]), 1), 'INVALID_FIELD');
    throwsCode(() => planLoadProject(b, alter(ids.done, (j) => (j.outputs = [{ ...OUT, name: '../out.txt' }])), 1), 'INVALID_PATH');
    throwsCode(() => planLoadProject(b, alter(ids.done, (j) => (j.attempts[0]!.outputs = [{ ...OUT, name: 'a\0b' }])), 1), 'INVALID_PATH');
    assert.equal(JSON.stringify(a.model.toSnapshot()), before);
    assert.equal(b.projects.size, 0);
  });
});
