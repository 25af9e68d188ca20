import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { v7 as uuidv7 } from 'uuid';
import { ArchiveStore, uuidV7Millis, type ArchivedJob } from '../../src/persistence/archive-store.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cpc-archive-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let n = 0;
function freshStore(): ArchiveStore<Job> {
  return new ArchiveStore<Job>(path.join(root, `a${++n}`));
}

interface Job extends ArchivedJob {
  state: string;
  exit?: number;
}

const DAY = 86_400_000;
const T0 = Date.UTC(2024, 4, 1, 12);

/** Ids in increasing order, spread over `days` days. */
function ids(count: number, days = 1): string[] {
  return Array.from({ length: count }, (_, i) => uuidv7({ msecs: T0 + Math.floor((i * days) / count) * DAY + i }));
}

describe('archive store', () => {
  it('decodes the creation time of a UUID v7', () => {
    assert.equal(uuidV7Millis(uuidv7({ msecs: T0 })), T0);
    assert.equal(uuidV7Millis('not-a-uuid'), null);
    assert.equal(uuidV7Millis('6ba7b810-9dad-11d1-80b4-00c04fd430c8'), null);
  });

  it('stores jobs in per-project day files and finds them again', async () => {
    const store = freshStore();
    const [a, b, c] = ids(3, 3);
    await store.append([
      { id: a!, project: 'alpha', state: 'done' },
      { id: b!, project: 'alpha', state: 'failed' },
      { id: c!, project: 'beta.1', state: 'done' },
    ]);
    assert.deepEqual(fs.readdirSync(path.join(store.dir, 'alpha')).sort(), ['2024-05-01.ndjson', '2024-05-02.ndjson']);
    assert.deepEqual(await store.get(a!, 'alpha'), { id: a, project: 'alpha', state: 'done' });
    assert.deepEqual(await store.get(c!), { id: c, project: 'beta.1', state: 'done' });
    assert.equal(await store.get(c!, 'alpha'), null);
    assert.equal(await store.get(uuidv7(), 'alpha'), null);
    assert.equal(await store.get('nope'), null);
  });

  it('keeps dangerous project names inside its folder', async () => {
    const store = freshStore();
    const [a, b] = ids(2);
    await store.append([
      { id: a!, project: '..', state: 'done' },
      { id: b!, project: 'x/y', state: 'done' },
    ]);
    assert.deepEqual(fs.readdirSync(store.dir).sort(), ['%2E.', 'x%2Fy']);
    assert.equal((await store.get(a!, '..'))?.id, a);
    await store.removeProject('..');
    assert.deepEqual(fs.readdirSync(store.dir), ['x%2Fy']);
  });

  it('rejects jobs without a UUID v7 id', async () => {
    await assert.rejects(freshStore().append([{ id: 'job-1', project: 'p', state: 'done' }]), TypeError);
  });

  it('lists in id order, pages, filters by state and returns the last version of each job', async () => {
    const store = freshStore();
    const all = ids(50, 5);
    // Finished out of creation order, as jobs do.
    const shuffled = [...all].reverse();
    await store.append(shuffled.map((id, i) => ({ id, project: 'p', state: i % 2 ? 'done' : 'failed' })));
    // A job archived twice: the later line wins.
    await store.append([{ id: all[0]!, project: 'p', state: 'done', exit: 0 }]);

    const first = await store.list('p', { limit: 20 });
    assert.deepEqual(
      first.map((j) => j.id),
      all.slice(0, 20),
    );
    assert.deepEqual(first[0], { id: all[0], project: 'p', state: 'done', exit: 0 });

    const pages: string[] = [];
    let afterId: string | undefined;
    for (;;) {
      const page = await store.list('p', { limit: 7, afterId });
      if (page.length === 0) break;
      pages.push(...page.map((j) => j.id));
      afterId = page[page.length - 1]!.id;
    }
    assert.deepEqual(pages, all);

    const done = await store.list('p', { limit: 100, state: 'done' });
    assert.ok(done.every((j) => j.state === 'done'));
    const counts = await store.count('p');
    assert.equal(done.length, counts.done);
    assert.equal(counts.done! + counts.failed!, 50);
    assert.deepEqual(await store.list('p', { limit: 0 }), []);
    assert.deepEqual(await store.list('missing', { limit: 10 }), []);
    assert.deepEqual(await store.count('missing'), {});
  });

  it('returns the last line for a job archived twice', async () => {
    const store = freshStore();
    const [id] = ids(1);
    await store.append([{ id: id!, project: 'p', state: 'running' }]);
    await store.append([{ id: id!, project: 'p', state: 'done' }]);
    assert.equal((await store.get(id!, 'p'))?.state, 'done');
    assert.deepEqual(await store.count('p'), { done: 1 });
  });

  it('ignores a torn last line and does not glue the next append to it', async () => {
    const store = freshStore();
    const [a, b, c] = ids(3);
    await store.append([{ id: a!, project: 'p', state: 'done' }]);
    const file = path.join(store.dir, 'p', '2024-05-01.ndjson');
    fs.appendFileSync(file, `{"id":"${b}","project":"p","sta`);

    // A new store, as after a restart.
    const reopened = new ArchiveStore<Job>(store.dir);
    assert.equal(await reopened.get(b!, 'p'), null);
    assert.deepEqual((await reopened.list('p', { limit: 10 })).map((j) => j.id), [a]);
    await reopened.append([{ id: c!, project: 'p', state: 'done' }]);
    assert.equal((await reopened.get(c!, 'p'))?.state, 'done');
    assert.deepEqual((await reopened.list('p', { limit: 10 })).map((j) => j.id), [a, c]);
    assert.deepEqual(await reopened.count('p'), { done: 2 });
  });

  it('reads day files bigger than its read buffer', async () => {
    const store = freshStore();
    const many = ids(3000);
    const pad = 'x'.repeat(1000);
    await store.append(many.map((id) => ({ id, project: 'big', state: 'done', pad })));
    assert.equal((await store.get(many[2500]!, 'big'))?.id, many[2500]);
    const page = await store.list('big', { limit: 5, afterId: many[2990] });
    assert.deepEqual(page.map((j) => j.id), many.slice(2991, 2996));
    assert.deepEqual(await store.count('big'), { done: 3000 });
  });

  it('removes a project', async () => {
    const store = freshStore();
    const [a] = ids(1);
    await store.append([{ id: a!, project: 'gone', state: 'done' }]);
    await store.removeProject('gone');
    assert.equal(await store.get(a!, 'gone'), null);
    assert.deepEqual(await store.count('gone'), {});
    await store.removeProject('never-existed');
    await store.append([{ id: a!, project: 'gone', state: 'done' }]);
    assert.equal((await store.get(a!))?.state, 'done');
  });
});
