/**
 * `cpcc save` on one server and `cpcc load` on another give the same
 * project: jobs with their states, attempts, results and files, values, and
 * the history of archived jobs; what was queued runs on the new server.
 * A damaged or unsuitable archive is refused with its code and creates
 * nothing, and a loaded project survives a restart.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { extract } from 'tar-stream';
import { Agent, request } from 'undici';
import { LEFT_BEHIND } from '../../src/core/commands.js';
import { API_PREFIX, type JobView, type ProjectLoadReply, type ProjectManifest, type ValueView } from '../../src/core/wire.js';
import { newId } from '../../src/server/jobs/ids.js';
import { tarHeader, tarSize } from '../../src/server/files/project-archive.js';
import {
  adminPasswordOf,
  cleanup,
  cpccHome,
  cpcc,
  cpccOk,
  loginAdmin,
  readJournalRecords,
  resultOf,
  spawnServer,
  startTestServer,
  tempDir,
  type ServerProcess,
  type SimWorker,
  type TestServer,
} from '../helpers/server.js';

after(cleanup);

const ok = cpccOk;

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** The entries of a tar, in order. */
async function untar(bytes: Buffer): Promise<[string, Buffer][]> {
  const out: [string, Buffer][] = [];
  const ex = extract();
  Readable.from([bytes]).pipe(ex);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const c of entry as unknown as AsyncIterable<Buffer>) chunks.push(c);
    out.push([entry.header.name, Buffer.concat(chunks)]);
  }
  return out;
}

/** A tar of these entries, as the server writes them. */
function tar(entries: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, data] of entries) {
    parts.push(tarHeader(name, data.length, 0), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  const out = Buffer.concat(parts);
  assert.equal(out.length, tarSize(entries.map(([, d]) => ({ size: d.length }))));
  return out;
}

/** Every job of a project, live and archived, by id. */
async function allJobs(ts: TestServer, project: string): Promise<Map<string, JobView>> {
  const live = (await ts.admin.jobs(project, { limit: 1000 })).jobs;
  const archived = (await ts.admin.jobs(project, { limit: 1000, archived: true })).jobs;
  return new Map([...archived, ...live].map((j) => [j.id, j]));
}

function holdings(ts: TestServer, project: string): [string, number, number][] {
  return ts.server.model.files
    .toSnapshot()
    .holdings.filter(([p]) => p === project)
    .map(([, s, size, refs]): [string, number, number] => [s, size, refs])
    .sort();
}

/** Claims exactly the jobs given (by their order in the queue) and returns their attempt numbers. */
async function claim(w: SimWorker, n: number): Promise<{ id: string; attempt: number }[]> {
  const reply = await w.client.claim(w.workerId, { waitS: 0, max: n });
  assert.equal(reply.jobs.length, n);
  return reply.jobs.map((j) => ({ id: j.id, attempt: j.attempt }));
}

describe('save a project on one server and load it on another', () => {
  let a: TestServer;
  let b: TestServer;
  let data: string;
  let tarFile: string;
  const ids: Record<string, string> = {};
  const output = Buffer.from('the result of a long simulation\n'.repeat(100));
  let beat: NodeJS.Timeout | undefined;
  after(() => clearInterval(beat));
  const conf = Buffer.from('temperature 300\n');
  const RETRY = { oom: { factor: 2, maxMemoryMb: 4096 }, attempts: 2 };

  before(async () => {
    [a, b] = await Promise.all([startTestServer(), startTestServer()]);
    data = await tempDir('cpc-save-');
    await a.admin.createProject('orig');
    const api = a.admin;
    await api.sendBytes(`/projects/orig/files/${sha256(conf)}`, Readable.from([conf]), conf.length);
    await api.setValue('orig', 'conf', { sha256: sha256(conf), size: conf.length });
    await api.setValue('orig', 'steps', { text: '5000' });
    const w = await a.worker({ name: 'sim-a' });

    // Done with a kept output (also stored as a value), failed, and one to be archived.
    const first = await api.submit('orig', [
      { name: 'simulate', argv: ['simulate'], outputs: [{ glob: '*.dat', to: 'best' }] },
      { name: 'broken', argv: ['false'] },
      { name: 'old', argv: ['true'], inputs: [{ name: 'conf', value: 'conf' }] },
    ]);
    [ids.done, ids.failed, ids.archived] = first.ids;
    const claims = await claim(w, 3);
    const attemptOf = (id: string) => claims.find((c) => c.id === id)!.attempt;
    const stored = await w.client.sendBytes(`/workers/${w.workerId}/files/${sha256(output)}`, Readable.from([output]), output.length, {
      job: ids.done!,
      attempt: attemptOf(ids.done!),
    });
    assert.deepEqual(stored, { sha256: sha256(output), size: output.length, created: true });
    await w.client.result(w.workerId, resultOf(ids.done!, attemptOf(ids.done!), { stdout: 'simulated\n', outputs: [{ name: 'run.dat', sha256: sha256(output), size: output.length }] }));
    await w.client.result(w.workerId, resultOf(ids.failed!, attemptOf(ids.failed!), { exitCode: 3, stderr: 'no such thing\n' }));
    await w.client.result(w.workerId, resultOf(ids.archived!, attemptOf(ids.archived!)));
    await a.server.ctx.store.archiveJobs([ids.archived!], Date.now());
    assert.equal(a.server.model.job(ids.archived!), undefined, 'archived');

    // Running when saved; queued on the kept output; waiting on that.
    [ids.running] = (await api.submit('orig', [{ name: 'long', argv: ['sleep', '1000'] }])).ids;
    const [long] = await claim(w, 1);
    assert.deepEqual([long!.id], [ids.running]);
    // Still running when saved and compared, however slowly cpcc starts: its lease is kept.
    beat = setInterval(() => void w.client.heartbeat(w.workerId, { attempts: [{ jobId: long!.id, attempt: long!.attempt }] }).catch(() => undefined), 250);
    const later = await api.submit('orig', [
      { key: 'analyse', name: 'analyse', argv: ['analyse'], inputs: [{ name: 'in.dat', job: ids.done!, output: 'run.dat' }], outputs: [{ glob: 'report' }] },
      { name: 'report', argv: ['report'], after: ['analyse'], inputs: [{ name: 'b.dat', value: 'best' }] },
    ]);
    [ids.queued, ids.waiting] = later.ids;
    // The project's default retry with more travels with it (its jobs keep their own specs).
    await api.setProjectRetry('orig', RETRY);
    tarFile = join(data, 'orig.tar');
  });

  it('saves with cpcc save and loads with cpcc load under another name, the same project', async () => {
    const homeA = await cpccHome(a, 'orig');
    // The default file name is PROJECT.tar in the current folder.
    await ok(cpcc(homeA, ['save', 'orig'], { cwd: data }));
    assert.ok(readdirSync(data).includes('orig.tar'));
    assert.deepEqual(readdirSync(data).filter((n) => n.endsWith('.partial')), []);
    const entries = await untar(readFileSync(tarFile));
    assert.deepEqual(entries.slice(0, 2).map(([n]) => n), ['cpc-project.json', 'jobs.ndjson']);
    const manifest = JSON.parse(entries[0]![1].toString()) as ProjectManifest;
    assert.equal(manifest.serverId, a.server.serverId);
    assert.equal(manifest.jobs, 6);
    assert.deepEqual(manifest.retry, RETRY);
    assert.deepEqual(manifest.files.map((f) => f.sha256), [sha256(conf), sha256(output)].sort());
    for (const f of manifest.files) {
      const [, bytes] = entries.find(([n]) => n === `files/${f.sha256}`)!;
      assert.equal(sha256(bytes), f.sha256);
    }

    const homeB = await cpccHome(b, 'copy');
    const loaded = JSON.parse(await ok(cpcc(homeB, ['load', tarFile, 'copy', '--json'])));
    assert.equal(loaded.project.name, 'copy');
    assert.equal(loaded.project.owner, 'cpc-admin');
    assert.deepEqual(loaded.project.retry, RETRY);
    assert.equal(loaded.jobs, 6);
    assert.equal(loaded.files, 2);

    const before = await allJobs(a, 'orig');
    const afterLoad = await allJobs(b, 'copy');
    assert.deepEqual([...afterLoad.keys()].sort(), [...before.keys()].sort());
    for (const [id, was] of before) {
      const now = afterLoad.get(id)!;
      const { project: _p1, updatedAt: _u1, archived: _a1, ...x } = was;
      const { project: _p2, updatedAt: _u2, archived: _a2, ...y } = now;
      if (id === ids.running) {
        assert.equal(now.state, 'queued');
        assert.equal(now.reason, LEFT_BEHIND);
        assert.equal(now.attempts.length, 1);
        assert.equal(now.attempts[0]!.how, 'worker-lost');
        assert.deepEqual({ ...y, state: 'running', reason: was.reason, attempts: was.attempts }, x);
      } else {
        assert.deepEqual(y, x, `job ${id} (${was.state})`);
      }
    }
    assert.equal(afterLoad.get(ids.archived!)!.state, 'done');
    assert.equal(afterLoad.get(ids.failed!)!.exitCode, 3);
    assert.equal(afterLoad.get(ids.waiting!)!.state, 'waiting');
    const values = (s: TestServer, p: string) => s.admin.values(p).then((r) => r.values as ValueView[]);
    assert.deepEqual(await values(b, 'copy'), await values(a, 'orig'));
    assert.deepEqual(b.server.model.countsOf('copy'), { ...a.server.model.countsOf('orig'), running: 0, queued: 2 });
    // The files are held here exactly as there (the archived job still holds its own there).
    assert.deepEqual(holdings(b, 'copy'), holdings(a, 'orig'));

    // Byte for byte, through the job and through the value.
    const back = join(data, 'back.dat');
    await ok(cpcc(homeB, ['getf', ids.done!, 'run.dat', '-o', back]));
    assert.deepEqual(readFileSync(back), output);
    const confBack = join(data, 'conf.back');
    await ok(cpcc(homeB, ['getf', '@conf', '-o', confBack]));
    assert.deepEqual(readFileSync(confBack), conf);
  });

  it('loads a copy beside the original with --new-ids: new ids, and the references between its jobs follow them', async () => {
    const homeA = await cpccHome(a, 'orig');
    const refused = await cpcc(homeA, ['load', tarFile, 'twin']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /JOB_EXISTS/);
    assert.equal(a.server.model.projects.has('twin'), false);

    const loaded = JSON.parse(await ok(cpcc(homeA, ['load', tarFile, 'twin', '--new-ids', '--json'])));
    assert.equal(loaded.jobs, 6);
    const orig = await allJobs(a, 'orig');
    const twin = await allJobs(a, 'twin');
    assert.equal(twin.size, 6);
    for (const id of twin.keys()) assert.ok(!orig.has(id), `the copy reuses id ${id}`);
    const byName = new Map([...twin.values()].map((j) => [j.name, j]));
    const twinOf = (id: string) => byName.get(orig.get(id)!.name!)!;
    for (const [id, was] of orig) {
      const now = twinOf(id);
      assert.equal(now.state, id === ids.running ? 'queued' : was.state, `${was.name}`);
      assert.deepEqual(now.argv, was.argv);
    }
    // The dependency and the input from a job name the copy's jobs, not the original's.
    assert.deepEqual(twinOf(ids.waiting!).after, [twinOf(ids.queued!).id]);
    assert.deepEqual(twinOf(ids.queued!).inputs, [{ name: 'in.dat', job: twinOf(ids.done!).id, output: 'run.dat' }]);
    // The original is untouched.
    assert.deepEqual([...(await allJobs(a, 'orig')).keys()].sort(), [...orig.keys()].sort());
  });

  it('runs the queued jobs on the new server, and the waiting one after them', async () => {
    const w = await b.worker({ name: 'sim-b' });
    const reply = await w.client.claim(w.workerId, { waitS: 0, max: 10 });
    assert.deepEqual(reply.jobs.map((j) => j.id).sort(), [ids.queued!, ids.running!].sort());
    const analyse = reply.jobs.find((j) => j.id === ids.queued)!;
    assert.deepEqual(analyse.inputs, [{ name: 'in.dat', sha256: sha256(output), size: output.length }]);
    const input = await w.client.fetchBytes(`/workers/${w.workerId}/files/${sha256(output)}`, { job: analyse.id, attempt: analyse.attempt });
    const chunks: Buffer[] = [];
    for await (const c of input.body) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), output);
    await w.client.result(w.workerId, resultOf(analyse.id, analyse.attempt));
    const left = reply.jobs.find((j) => j.id === ids.running)!;
    assert.equal(left.attempt, 2, 'the attempt left behind keeps its number');
    await w.client.result(w.workerId, resultOf(left.id, left.attempt));
    assert.equal((await b.admin.job(ids.queued!)).state, 'done');
    assert.equal((await b.admin.job(ids.waiting!)).state, 'queued');
  });

  it('keeps the loaded project across a clean restart (snapshot)', async () => {
    const before = await allJobs(b, 'copy');
    const held = holdings(b, 'copy');
    const home = b.home;
    await b.server.close();
    b = await startTestServer({ home });
    assert.deepEqual(await allJobs(b, 'copy'), before);
    assert.deepEqual(holdings(b, 'copy'), held);
    assert.equal((await b.admin.project('copy')).owner, 'cpc-admin');
    assert.deepEqual((await b.admin.project('copy')).retry, RETRY);
  });

  it('keeps the loaded project when the server is killed and replays its journal', async () => {
    const home = await tempDir('cpc-load-crash-');
    let proc = await spawnServer(home);
    const login = async (p: ServerProcess) => loginAdmin(p.info.url, p.caPem, adminPasswordOf(home));
    let api = await login(proc);
    const body = readFileSync(tarFile);
    const r = await api.sendBytes<ProjectLoadReply>('/projects/crash/import', Readable.from([body]), body.length, undefined, 'POST');
    assert.equal(r.jobs, 6);
    const jobsOf = async () => (await api.jobs('crash', { limit: 1000 })).jobs.map((j) => [j.id, j.state, j.reason, j.attempts.length, j.files ?? []]);
    const before = await jobsOf();
    const values = (await api.values('crash')).values;
    await proc.stop('SIGKILL');
    // One event made the whole project, and that is what start-up replays.
    assert.equal(readJournalRecords(home).filter((e) => e.t === 'project-loaded').length, 1);
    proc = await spawnServer(home);
    api = await login(proc);
    assert.deepEqual(await jobsOf(), before);
    assert.deepEqual((await api.values('crash')).values, values);
    assert.deepEqual((await api.project('crash')).retry, RETRY);
    const back = await api.fetchBytes(`/jobs/${ids.done}/outputs/run.dat`);
    const chunks: Buffer[] = [];
    for await (const c of back.body) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), output);
    await proc.stop('SIGTERM');
  });

  it('refuses a damaged or unsuitable archive with its code, and creates nothing', async () => {
    const c = await startTestServer();
    await c.admin.createProject('taken');
    const agent = new Agent({ connect: { ca: c.server.caPem, checkServerIdentity: () => undefined } });
    const load = async (project: string, body: Buffer) => {
      const res = await request(`${c.server.url}${API_PREFIX}/projects/${project}/import`, {
        method: 'POST',
        body,
        headers: { authorization: `Bearer ${c.admin.token}`, 'content-type': 'application/x-tar', 'content-length': String(body.length) },
        dispatcher: agent,
      });
      const json = (await res.body.json()) as { error?: { code: string; message: string } };
      return { status: res.statusCode, code: json.error?.code, message: json.error?.message };
    };
    const good = readFileSync(tarFile);
    const entries = await untar(good);
    const nothing = () => {
      assert.deepEqual([...c.server.model.projects.keys()], ['taken']);
      assert.deepEqual(c.server.model.files.toSnapshot().holdings, []);
      assert.equal(c.server.model.jobs.size, 0);
    };

    // Cut in the middle of a file: the archive ends early.
    const fileStart = good.indexOf(Buffer.from('files/')) + 512;
    const cut = await load('t1', good.subarray(0, fileStart + 100));
    assert.equal(cut.code, 'TRANSFER_INCOMPLETE', cut.message);
    // Cut between entries: a file the manifest lists did not arrive.
    const noFiles = await load('t2', tar(entries.slice(0, 2)));
    assert.equal(noFiles.code, 'TRANSFER_INCOMPLETE', noFiles.message);
    nothing();

    // Bytes that do not match their name.
    const bad = entries.map(([n, d]): [string, Buffer] => {
      if (!n.startsWith('files/')) return [n, d];
      const copy = Buffer.from(d);
      copy[0] = copy[0]! ^ 0xff;
      return [n, copy];
    });
    const mismatch = await load('t3', tar(bad));
    assert.equal(mismatch.code, 'CHECKSUM_MISMATCH', mismatch.message);
    nothing();

    // A project of that name exists: refused before a byte is read.
    const exists = await load('taken', good);
    assert.equal(exists.code, 'PROJECT_EXISTS');
    assert.equal(exists.status, 409);

    // A garbled manifest, a manifest that does not fit, a job record that does not fit, not a tar at all.
    const withManifest = (text: string) => tar([['cpc-project.json', Buffer.from(text)], ...entries.slice(1)]);
    const garbled = await load('t4', withManifest('{"format": "cpc-project", "vers'));
    assert.equal(garbled.code, 'INVALID_JSON', garbled.message);
    const manifest = JSON.parse(entries[0]![1].toString()) as Record<string, unknown>;
    const wrong = await load('t5', withManifest(JSON.stringify({ ...manifest, owner: 42 })));
    assert.equal(wrong.code, 'INVALID_FIELD', wrong.message);
    assert.match(wrong.message!, /cpc-project\.json\.owner/);
    const proto = await load('t5b', withManifest(JSON.stringify(manifest).replace('"values":{', '"values":{"__proto__":{"text":"x","at":1},')));
    assert.equal(proto.code, 'INVALID_FIELD', proto.message);
    const newer = await load('t6', withManifest(JSON.stringify({ ...manifest, version: 2 })));
    assert.equal(newer.code, 'BAD_REQUEST', newer.message);
    const lines = entries[1]![1].toString().split('\n');
    lines[1] = lines[1]!.replace('"state":"', '"state":"exploded-');
    const badJob = await load('t7', tar([entries[0]!, ['jobs.ndjson', Buffer.from(lines.join('\n'))], ...entries.slice(2)]));
    assert.equal(badJob.code, 'INVALID_FIELD', badJob.message);
    assert.match(badJob.message!, /jobs\.ndjson line 2/);
    const notTar = await load('t8', Buffer.from('this is not a tar archive at all'.repeat(40)));
    assert.equal(notTar.code, 'BAD_REQUEST', notTar.message);
    nothing();

    // The jobs keep their ids, so the same archive cannot be loaded twice on one server, even once archived there.
    assert.equal((await load('once', good)).status, 200);
    const twice = await load('twice', good);
    assert.equal(twice.code, 'JOB_EXISTS', twice.message);
    const live = [...c.server.model.jobs.keys()];
    await c.server.ctx.store.archiveJobs(live.filter((id) => ['done', 'failed'].includes(c.server.model.job(id)!.state)), Date.now());
    const again = await load('again', good);
    assert.equal(again.code, 'JOB_EXISTS', again.message);
    assert.deepEqual([...c.server.model.projects.keys()].sort(), ['once', 'taken']);
    await agent.close();
  });

  it('saves and loads an empty project; refuses a load past the project quota; a user may not save a project they cannot see', async () => {
    const small = await startTestServer({ projectQuotaBytes: 1000 });
    await small.admin.createProject('empty');
    const { body, size } = await small.admin.fetchBytes('/projects/empty/export');
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    const bytes = Buffer.concat(chunks);
    assert.equal(bytes.length, size);
    assert.deepEqual((await untar(bytes)).map(([n, d]) => [n, d.length > 0]), [['cpc-project.json', true], ['jobs.ndjson', false]]);
    const r0 = await small.admin.sendBytes<ProjectLoadReply>('/projects/empty2/import', Readable.from([bytes]), bytes.length, undefined, 'POST');
    assert.deepEqual([r0.project.name, r0.jobs, r0.files], ['empty2', 0, 0]);

    const file = join(data, 'orig-copy.tar');
    writeFileSync(file, readFileSync(tarFile));
    const home = await cpccHome(small, 'x');
    const r = await cpcc(home, ['load', file, 'big']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /QUOTA_EXCEEDED|quota/);
    assert.equal(small.server.model.projects.has('big'), false);
    await small.admin.addUser('eve', 'eve-password');
    const eve = small.anonymous();
    eve.token = (await eve.login('eve', 'eve-password')).token;
    await small.admin.createProject('private');
    const denied = await eve.fetchBytes('/projects/private/export').catch((e: { code: string }) => e);
    assert.equal((denied as { code: string }).code, 'PROJECT_NOT_FOUND');
  });
});

describe('saving and loading a large file', () => {
  it('streams it both ways without either server holding it in memory', async () => {
    const MiB = 1024 * 1024;
    const size = 160 * MiB;
    const [a, b] = await Promise.all([startTestServer(), startTestServer()]);
    const data = await tempDir('cpc-save-big-');
    const src = join(data, 'big.bin');
    const hash = createHash('sha256');
    const fh = await open(src, 'w');
    const slice = Buffer.alloc(MiB);
    for (let i = 0; i < size / MiB; i++) {
      slice.fill(i & 0xff);
      slice.writeUInt32LE(i, 0);
      await fh.write(slice);
      hash.update(slice);
    }
    await fh.close();
    const sum = hash.digest('hex');
    await a.admin.createProject('big');
    await a.admin.sendBytes(`/projects/big/files/${sum}`, createReadStream(src), size);
    await a.admin.setValue('big', 'blob', { sha256: sum, size });

    global.gc?.();
    const base = process.memoryUsage().rss;
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const file = join(data, 'big.tar');
    try {
      await ok(cpcc(await cpccHome(a, 'big'), ['save', 'big', file]));
      await ok(cpcc(await cpccHome(b, 'big'), ['load', file, 'big']));
    } finally {
      clearInterval(sampler);
    }
    // Both servers run in this process; a file held whole would show as its size.
    assert.ok(peak - base < size / 2, `memory grew by ${Math.round((peak - base) / MiB)} MiB for a ${size / MiB} MiB file`);
    const back = join(data, 'back.bin');
    await ok(cpcc(await cpccHome(b, 'big'), ['getf', '@blob', '-o', back]));
    const again = createHash('sha256');
    for await (const c of createReadStream(back)) again.update(c as Buffer);
    assert.equal(again.digest('hex'), sum);
  });
});

describe('loading checks every name a loaded job carries', () => {
  it('refuses a queued job whose resolved input names a path outside its folder, and changes nothing', async () => {
    const ts = await startTestServer();
    const load = (project: string, inputName: string, jobName = 'reader') => {
      const job = {
        id: newId(),
        spec: { name: jobName, argv: ['cat', 'in.txt'], env: {}, resources: { cores: 1, memoryMb: 0 }, priority: 0, maxRetries: 0, timeoutS: null, after: [], inputs: [{ name: 'in.txt', value: 'v' }] },
        state: 'queued',
        reason: 'dependencies done',
        createdAt: 1,
        updatedAt: 1,
        attempts: [],
        failures: 0,
        lost: 0,
        // What it was queued with: the names a worker writes into the job's folder.
        inputs: [{ name: inputName, text: 'ssh-ed25519 AAAA attacker\n' }],
      };
      const manifest = { format: 'cpc-project', version: 1, project: 'p', owner: 'x', members: [], createdAt: 1, values: { v: { text: 'hello', at: 1 } }, serverId: 's', savedAt: 1, jobs: 1, files: [] };
      const body = tar([
        ['cpc-project.json', Buffer.from(JSON.stringify(manifest))],
        ['jobs.ndjson', Buffer.from(JSON.stringify(job) + '\n')],
      ]);
      return ts.admin.sendBytes<ProjectLoadReply>(`/projects/${project}/import`, Readable.from([body]), body.length, undefined, 'POST');
    };
    const seq = ts.server.ctx.store.seq;
    for (const name of ['../../../root/.ssh/authorized_keys', '/etc/cron.d/job', 'elsewhere.txt']) {
      const refused = (await load('bad', name).catch((e: unknown) => e)) as { code?: string; status?: number };
      assert.equal(refused.code, name === 'elsewhere.txt' ? 'INVALID_FIELD' : 'INVALID_PATH', name);
      assert.equal(refused.status, 400);
    }
    // A job name that would act on the terminal of whoever lists the project.
    const named = (await load('bad', 'in.txt', 'x\x1b]0;owned\x07\x1b[2J').catch((e: unknown) => e)) as { code?: string; status?: number };
    assert.equal(named.code, 'CONTROL_CHARACTERS');
    assert.equal(named.status, 400);
    assert.equal(ts.server.ctx.store.seq, seq, 'nothing was journaled');
    assert.equal(ts.server.model.projects.has('bad'), false);
    // The same archive with the name its spec gives loads.
    const ok = await load('good', 'in.txt');
    assert.equal(ok.jobs, 1);
    assert.equal((await ts.admin.jobs('good')).jobs[0]!.state, 'queued');
  });
});
