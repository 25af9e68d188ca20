/**
 * Files in the core: names that stay inside a work folder, output patterns,
 * the reference counts behind quotas and collection, and how inputs,
 * outputs and project values move through the model and its replay.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planSetValue, planSubmit } from '../../src/core/commands.js';
import { FileRegistry, checkFileName, checkValueName, globToRegExp, matchesGlob } from '../../src/core/files.js';
import { Model } from '../../src/core/model.js';
import { World, exited, replay, res, spec, throwsCode } from '../helpers/core.js';

const sha = (c: string) => c.repeat(64);
const file = (name: string, c: string, size = 10) => ({ name, sha256: sha(c), size });

describe('file and value names', () => {
  it('takes relative paths and refuses what could leave the work folder', () => {
    for (const ok of ['a', 'in/data.bin', 'x.y.z', 'deep/er/still']) assert.equal(checkFileName(ok), ok);
    for (const bad of ['', '/etc/passwd', '../x', 'a/../../b', 'a//b', './a', 'a/', 'a\0b', 'C:evil', 'a\\b', 'x'.repeat(1025)]) {
      throwsCode(() => checkFileName(bad), 'INVALID_PATH');
    }
  });

  it('takes Copernicus-style value names and refuses reserved and odd ones', () => {
    for (const ok of ['fe.out.conf', 'runs/3/result', '_x', 'a-b']) assert.equal(checkValueName(ok), ok);
    for (const bad of ['__proto__', 'constructor', 'toString', 'a:b', '.hidden', 'a/../b', '', 'with space']) throwsCode(() => checkValueName(bad), 'INVALID_PATH');
  });

  it('matches output patterns: * and ? within a folder, ** across folders', () => {
    assert.equal(matchesGlob('*.txt', 'a.txt'), true);
    assert.equal(matchesGlob('*.txt', 'd/a.txt'), false);
    assert.equal(matchesGlob('**/*.txt', 'a.txt'), true);
    assert.equal(matchesGlob('**/*.txt', 'd/e/a.txt'), true);
    assert.equal(matchesGlob('out/**', 'out/x/y'), true);
    assert.equal(matchesGlob('f?.dat', 'f1.dat'), true);
    assert.equal(matchesGlob('f?.dat', 'f10.dat'), false);
    assert.equal(matchesGlob('a+b(1).txt', 'a+b(1).txt'), true, 'everything else is literal');
    throwsCode(() => globToRegExp('../*'), 'INVALID_PATH');
  });
});

describe('file references', () => {
  it('counts each content once per project for the quota, and frees it with its last reference', () => {
    const r = new FileRegistry();
    r.hold('p', { sha256: sha('a'), size: 100 });
    r.hold('p', { sha256: sha('a'), size: 100 });
    r.hold('p', { sha256: sha('b'), size: 50 });
    r.hold('q', { sha256: sha('a'), size: 100 });
    assert.equal(r.bytesOf('p'), 150);
    assert.equal(r.bytesWith('p', [{ sha256: sha('a'), size: 100 }, { sha256: sha('c'), size: 7 }, { sha256: sha('c'), size: 7 }]), 157);
    r.release('p', { sha256: sha('a') });
    assert.equal(r.bytesOf('p'), 150, 'one reference is left');
    r.release('p', { sha256: sha('a') });
    assert.equal(r.bytesOf('p'), 50);
    assert.equal(r.isHeld(sha('a')), true, 'q still holds it');
    r.dropProject('q');
    assert.equal(r.isHeld(sha('a')), false);
    const copy = FileRegistry.fromSnapshot(JSON.parse(JSON.stringify(r.toSnapshot())));
    assert.deepEqual(copy.toSnapshot(), r.toSnapshot());
  });

  it('lets a project name only what it refers to or sent itself, until the collector removes it', () => {
    const w = new World();
    w.project('p');
    w.project('q');
    const files = w.model.files;
    w.apply({ t: 'value-set', at: w.tick(), project: 'p', name: 'v', value: { sha256: sha('a'), size: 5, at: w.now } });
    w.apply({ t: 'file-received', at: w.tick(), project: 'p', sha256: sha('b'), size: 6 });
    w.apply({ t: 'file-received', at: w.tick(), project: 'nobody', sha256: sha('c'), size: 7 });
    assert.equal(files.sizeFor('p', sha('a')), 5, 'referred to');
    assert.equal(files.sizeFor('p', sha('b')), 6, 'sent');
    assert.equal(files.sizeFor('q', sha('a')), null, "another project's");
    assert.equal(files.sizeFor('q', sha('b')), null);
    assert.equal(files.sizeFor('nobody', sha('c')), null, 'a project that does not exist holds nothing');
    assert.equal(files.isHeld(sha('b')), false, 'sending keeps nothing from the collector');
    assert.deepEqual([...files.sentOnly()], [sha('b')]);
    w.apply({ t: 'file-received', at: w.tick(), project: 'q', sha256: sha('b'), size: 6 });
    assert.equal(files.sizeFor('q', sha('b')), 6);
    const journal = replay(w.events);
    const snapshot = Model.fromSnapshot(JSON.parse(JSON.stringify(w.model.toSnapshot())));
    for (const m of [journal, snapshot]) assert.deepEqual(m.files.toSnapshot(), files.toSnapshot());
    w.apply({ t: 'files-collected', at: w.tick(), sha256s: [sha('b')] });
    assert.equal(files.sizeFor('p', sha('b')), null);
    assert.equal(files.sizeFor('q', sha('b')), null);
    w.apply({ t: 'file-received', at: w.tick(), project: 'q', sha256: sha('b'), size: 6 });
    assert.equal(files.sizeFor('p', sha('b')), null, 'sent again by someone else: not p’s again');
    w.apply({ t: 'project-removed', at: w.tick(), name: 'q' });
    assert.equal(files.sizeFor('q', sha('b')), null);
    assert.deepEqual([...files.sentOnly()], []);
  });
});

describe('inputs, outputs and values in the model', () => {
  function world(): World {
    const w = new World();
    w.project('p');
    w.worker('w1', res(4, 8192));
    return w;
  }

  it('an input from another job makes it a dependency and is resolved when the job is queued', () => {
    const w = world();
    const a = w.one('p', { outputs: [{ glob: '*.out' }] });
    const b = w.one('p', { inputs: [{ name: 'in.dat', job: a, output: 'r.out' }] });
    assert.deepEqual(w.job(b).spec.after, [a]);
    assert.equal(w.state(b), 'waiting');
    w.claim('w1', 1);
    w.finish(a, exited(0, { outputs: [file('r.out', 'a', 42)] }));
    assert.equal(w.state(b), 'queued');
    assert.deepEqual(w.job(b).inputs, [{ name: 'in.dat', sha256: sha('a'), size: 42 }]);
    assert.equal(w.model.files.bytesOf('p'), 42);
  });

  it('fails a job whose input does not exist when it is due, and cancels what waits on it', () => {
    const w = world();
    const a = w.one('p');
    const b = w.one('p', { inputs: [{ name: 'x', job: a, output: 'missing' }] });
    const c = w.one('p', { after: [b] });
    w.claim('w1', 1);
    w.finish(a, 0);
    assert.equal(w.state(b), 'failed');
    assert.match(w.job(b).reason, /input 'x': job .* kept no output named 'missing'/);
    assert.equal(w.state(c), 'cancelled');
    const v = w.one('p', { inputs: [{ name: 'y', value: 'nope' }] });
    assert.equal(w.state(v), 'failed');
    assert.match(w.job(v).reason, /project value 'nope' is not set/);
  });

  it('takes a project value as it is when the job is queued; a text value becomes text', () => {
    const w = world();
    w.apply(planSetValue(w.model, 'p', 'steps', { text: '100', at: w.now }, w.tick()));
    w.apply(planSetValue(w.model, 'p', 'conf', { sha256: sha('c'), size: 5, at: w.now }, w.tick()));
    const j = w.one('p', { inputs: [{ name: 's', value: 'steps' }, { name: 'c', value: 'conf' }] });
    assert.deepEqual(w.job(j).inputs, [{ name: 's', text: '100' }, { name: 'c', sha256: sha('c'), size: 5 }]);
    // Changing the value later does not change what the queued job gets; its file stays held by the job.
    w.apply(planSetValue(w.model, 'p', 'conf', null, w.tick()));
    assert.equal(w.model.files.isHeld(sha('c')), true);
    throwsCode(() => planSetValue(w.model, 'p', 'conf', null, w.now), 'VALUE_NOT_FOUND');
  });

  it('keeps the outputs of the latest attempt, and --output-to stores the first match when the job is done', () => {
    const w = world();
    const j = w.one('p', { maxRetries: 1, outputs: [{ glob: '*.gro', to: 'best' }] });
    w.claim('w1', 1);
    w.finish(j, exited(1, { outputs: [file('a.gro', 'd')] }));
    assert.equal(w.model.projects.get('p')!.values?.best, undefined, 'a failed attempt sets no value');
    w.claim('w1', 1);
    w.finish(j, exited(0, { outputs: [file('z.gro', 'f'), file('b.gro', 'e')] }));
    assert.deepEqual(w.job(j).outputs?.map((f) => f.name), ['z.gro', 'b.gro']);
    assert.deepEqual(w.model.projects.get('p')!.values?.best, { sha256: sha('e'), size: 10, at: w.now, job: j });
    assert.equal(w.model.files.isHeld(sha('d')), false, 'the first attempt’s outputs were let go');
    // Archived, the outputs stay reachable for later jobs.
    w.archive([j]);
    assert.deepEqual(w.model.outputsOf(j)?.map((f) => f.name), ['z.gro', 'b.gro']);
    const k = w.one('p', { inputs: [{ name: 'in', job: j, output: 'b.gro' }] });
    assert.equal(w.state(k), 'queued');
  });

  it('rebuilds the same references from a snapshot and from the journal', () => {
    const w = world();
    const a = w.one('p', { inputs: [file('up.bin', 'a', 7)], outputs: [{ glob: '**', to: 'last' }] });
    w.claim('w1', 1);
    w.finish(a, exited(0, { outputs: [file('o/1', 'b', 9)] }));
    w.archive([a]);
    const fromJournal = replay(w.events);
    const fromSnapshot = Model.fromSnapshot(JSON.parse(JSON.stringify(w.model.toSnapshot())));
    for (const m of [fromJournal, fromSnapshot]) {
      assert.deepEqual(m.files.toSnapshot(), w.model.files.toSnapshot());
      assert.deepEqual(m.outputsOf(a), w.model.outputsOf(a));
      assert.deepEqual(m.projects.get('p')!.values, w.model.projects.get('p')!.values);
    }
    assert.equal(w.model.files.bytesOf('p'), 16);
    w.apply({ t: 'project-removed', at: w.tick(), name: 'p' });
    assert.equal(w.model.files.isHeld(sha('a')), false);
    assert.equal(w.model.outputsOf(a), undefined);
  });

  it('refuses bad inputs and outputs at submission', () => {
    const w = world();
    const submit = (over: Parameters<typeof spec>[0]) => planSubmit(w.model, 'p', [{ spec: spec(over) }], ['j-x'], w.now);
    throwsCode(() => submit({ inputs: [file('../x', 'a')] }), 'INVALID_PATH');
    throwsCode(() => submit({ inputs: [file('x', 'a'), file('x', 'b')] }), 'INVALID_FIELD');
    throwsCode(() => submit({ inputs: [{ name: 'x', sha256: 'ABC', size: 1 }] }), 'INVALID_FIELD');
    throwsCode(() => submit({ inputs: [{ name: 'x', job: 'nope', output: 'y' }] }), 'UNKNOWN_DEPENDENCY');
    throwsCode(() => submit({ outputs: [{ glob: '/abs' }] }), 'INVALID_PATH');
    throwsCode(() => submit({ outputs: [{ glob: 'a', to: 'v' }, { glob: 'b', to: 'v' }] }), 'INVALID_FIELD');
    throwsCode(() => submit({ outputs: [{ glob: 'a', to: '__proto__' }] }), 'INVALID_PATH');
  });
});
