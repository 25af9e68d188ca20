/**
 * Files as researchers use them: uploaded with `cpcc submit --input`, fetched
 * by a real cpc-worker into the job's folder, kept with `--output`, passed
 * from job to job and into project values, and downloaded with `getf`.
 * Also what must be refused, and that a cut-off upload leaves nothing visible.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { API_PREFIX, type JobView } from '../../src/core/wire.js';
import { cleanup, cpcc, cpccHome, cpccOk, makeClient, spawnWorker, startTestServer, tempDir, until, type TestServer } from '../helpers/server.js';

after(cleanup);

const ok = cpccOk;
const MiB = 1024 * 1024;

/** A file of `size` bytes that is not all one byte, written in slices. */
async function makeFile(path: string, size: number): Promise<string> {
  const fh = await open(path, 'w');
  const hash = createHash('sha256');
  const slice = Buffer.alloc(Math.min(size, MiB));
  for (let i = 0; i < slice.length; i++) slice[i] = (i * 31 + 7) & 0xff;
  for (let written = 0, n = 0; written < size; n++) {
    const part = slice.subarray(0, Math.min(slice.length, size - written));
    // Each slice differs from the last, so no two are the same content.
    if (part.length >= 4) part.writeUInt32LE(n, 0);
    await fh.write(part);
    hash.update(part);
    written += part.length;
  }
  await fh.close();
  return hash.digest('hex');
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function finished(ts: TestServer, id: string, timeoutMs = 120_000): Promise<JobView> {
  return until(`job ${id} to finish`, async () => {
    const j = await ts.admin.job(id);
    return ['done', 'failed', 'cancelled'].includes(j.state) ? j : null;
  }, { timeoutMs });
}

describe('files through one server with a real worker', () => {
  let ts: TestServer;
  let home: string;
  let data: string;

  before(async () => {
    ts = await startTestServer();
    await ts.admin.createProject('files');
    home = await cpccHome(ts, 'files');
    data = await tempDir('cpc-files-data-');
    spawnWorker({
      url: ts.server.url,
      caFile: ts.caFile(),
      serverId: ts.server.serverId,
      token: await ts.server.createWorkerToken('filer'),
      name: 'filer',
      cores: 2,
      workDir: await tempDir('cpc-work-filer-'),
    });
  });

  for (const [label, size] of [['0 bytes', 0], ['1 MiB', MiB], ['200 MiB', 200 * MiB]] as const) {
    it(`round-trips ${label} byte for byte, without the server holding the file in memory`, async () => {
      const src = join(data, `in-${size}.bin`);
      const sum = await makeFile(src, size);
      global.gc?.();
      const base = process.memoryUsage().rss;
      let peak = base;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
      try {
        const id = await ok(cpcc(home, ['submit', '--input', `${src}:sub/in.bin`, '--output', 'out/*.bin', '--', 'sh', '-c', 'mkdir out && cp sub/in.bin out/copy.bin']));
        const job = await finished(ts, id);
        assert.equal(job.state, 'done', job.reason);
        assert.deepEqual(job.files, [{ name: 'out/copy.bin', sha256: sum, size }]);
        const listed = await ok(cpcc(home, ['outputs', id, '--json']));
        assert.deepEqual(JSON.parse(listed).outputs, [{ name: 'out/copy.bin', sha256: sum, size }]);
        const dest = join(data, `back-${size}.bin`);
        await ok(cpcc(home, ['getf', id, 'out/copy.bin', '-o', dest]));
        assert.equal(await sha256Of(dest), sum);
      } finally {
        clearInterval(sampler);
      }
      // The server runs in this process; a file held whole would show as its size.
      if (size >= 100 * MiB) assert.ok(peak - base < size / 2, `memory grew by ${Math.round((peak - base) / MiB)} MiB for a ${size / MiB} MiB file`);
    });
  }

  it('passes files along a three-step pipeline, through outputs and a project value', async () => {
    const first = await ok(cpcc(home, ['submit', '--output', 'a.txt', '--shell', '--', 'echo hello pipeline > a.txt']));
    const second = await ok(
      cpcc(home, ['submit', '--input-from', `${first}:a.txt:from-first.txt`, '--output-to', 'b.txt:@stage/upper', '--shell', '--', 'tr a-z A-Z < from-first.txt > b.txt']),
    );
    const third = await ok(cpcc(home, ['submit', '--after', second, '--input-from', '@stage/upper:c.txt', '--output', 'n.txt', '--shell', '--', 'wc -c < c.txt | tr -d " " > n.txt']));
    const [j1, j2, j3] = [await finished(ts, first), await finished(ts, second), await finished(ts, third)];
    assert.deepEqual([j1.state, j2.state, j3.state], ['done', 'done', 'done'], `${j1.reason} / ${j2.reason} / ${j3.reason}`);
    // The second job waited for the first: an input from a job is a dependency.
    assert.deepEqual(j2.after, [first]);
    const value = JSON.parse(await ok(cpcc(home, ['get', 'stage/upper', '--json'])));
    assert.equal(value.job, second);
    const upper = join(data, 'upper.txt');
    await ok(cpcc(home, ['getf', '@stage/upper', '-o', upper]));
    assert.equal(readFileSync(upper, 'utf8'), 'HELLO PIPELINE\n');
    await ok(cpcc(home, ['getf', third, 'n.txt', '-o', join(data, 'n.txt')]));
    assert.equal(readFileSync(join(data, 'n.txt'), 'utf8').trim(), String('HELLO PIPELINE\n'.length));
  });

  it('sets, lists, reads and removes project values', async () => {
    await ok(cpcc(home, ['set', 'fe.steps', '5000']));
    const conf = join(data, 'run.conf');
    writeFileSync(conf, 'temperature 300\n');
    await ok(cpcc(home, ['setf', 'fe.conf', conf]));
    assert.equal(await ok(cpcc(home, ['get', 'fe.steps'])), '5000');
    const listed = JSON.parse(await ok(cpcc(home, ['ls', 'fe.', '--json']))).values as { name: string }[];
    assert.deepEqual(listed.map((v) => v.name), ['fe.conf', 'fe.steps']);
    // A string value becomes a file with that text when a job takes it as input.
    const id = await ok(cpcc(home, ['submit', '--input-from', '@fe.steps:steps', '--input-from', '@fe.conf', '--output', 'seen', '--shell', '--', 'cat steps fe.conf > seen']));
    assert.equal((await finished(ts, id)).state, 'done');
    const seen = join(data, 'seen');
    await ok(cpcc(home, ['getf', id, 'seen', '-o', seen]));
    assert.equal(readFileSync(seen, 'utf8'), '5000temperature 300\n');
    await ok(cpcc(home, ['unset', 'fe.steps']));
    const gone = await cpcc(home, ['get', 'fe.steps']);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /VALUE_NOT_FOUND|no value/);
  });

  it('fails a job whose input cannot be resolved, with the reason', async () => {
    const id = await ok(cpcc(home, ['submit', '--input-from', '@never.set', '--', 'true']));
    const job = await finished(ts, id);
    assert.equal(job.state, 'failed');
    assert.match(job.reason, /input 'never.set': project value 'never.set' is not set/);
  });

  it('refuses bad names, bad checksums, other people’s files and unknown files, and changes nothing', async () => {
    const api = ts.admin;
    const bad = async (job: Record<string, unknown>) => (await api.call<unknown>('POST', '/projects/files/jobs', { jobs: [{ argv: ['true'], ...job }] }).catch((e: { code: string }) => e)) as { code: string };
    const sha = 'ab'.repeat(32);
    assert.equal((await bad({ inputs: [{ name: '../evil', sha256: sha, size: 1 }] })).code, 'INVALID_PATH');
    assert.equal((await bad({ inputs: [{ name: '/etc/passwd', sha256: sha, size: 1 }] })).code, 'INVALID_PATH');
    assert.equal((await bad({ inputs: [{ name: 'a\0b', sha256: sha, size: 1 }] })).code, 'INVALID_PATH');
    assert.equal((await bad({ outputs: [{ glob: '../*' }] })).code, 'INVALID_PATH');
    assert.equal((await bad({ inputs: [{ name: 'x', sha256: sha, size: 1 }] })).code, 'FILE_NOT_FOUND');
    assert.equal((await bad({ inputs: [{ name: 'x', job: '0190a0a0-0000-7000-8000-000000000000', output: 'y' }] })).code, 'UNKNOWN_DEPENDENCY');
    const before = (await api.jobs('files', { limit: 1000 })).jobs.length;

    // Bytes that do not match their checksum are refused, and nothing of them is kept.
    const agent = new Agent({ connect: { ca: ts.server.caPem, checkServerIdentity: () => undefined } });
    const put = (path: string, body: string, token = api.token!) =>
      request(`${ts.server.url}${API_PREFIX}${path}`, { method: 'PUT', body, headers: { authorization: `Bearer ${token}`, 'content-length': String(Buffer.byteLength(body)) }, dispatcher: agent });
    const wrong = await put(`/projects/files/files/${sha}`, 'not those bytes');
    assert.equal(wrong.statusCode, 400);
    assert.equal(((await wrong.body.json()) as { error: { code: string } }).error.code, 'CHECKSUM_MISMATCH');
    assert.equal(await ts.server.ctx.files.store.has(sha), false);
    assert.deepEqual(readdirSync(join(ts.home, 'files', 'tmp')), []);

    // Someone else's project is not there for them; a file the project does not hold is not found.
    await api.addUser('mallory', 'mallory-password');
    const mallory = makeClient(ts.server.url, ts.server.caPem);
    mallory.token = (await mallory.login('mallory', 'mallory-password')).token;
    const held = [...(await api.jobs('files', { limit: 1000 })).jobs.flatMap((j) => j.files ?? [])][0]!;
    const theirs = await mallory.fetchBytes(`/projects/files/files/${held.sha256}`).catch((e: { code: string }) => e);
    assert.equal((theirs as { code: string }).code, 'PROJECT_NOT_FOUND');
    await mallory.createProject('mine');
    const notHeld = await mallory.fetchBytes(`/projects/mine/files/${held.sha256}`).catch((e: { code: string }) => e);
    assert.equal((notHeld as { code: string }).code, 'FILE_NOT_FOUND');
    await agent.close();
    assert.equal((await api.jobs('files', { limit: 1000 })).jobs.length, before);
  });

  it('keeps a project under its quota', async () => {
    const small = await startTestServer({ projectQuotaBytes: 1000 });
    await small.admin.createProject('q');
    const h = await cpccHome(small, 'q');
    const big = join(data, 'quota.bin');
    await makeFile(big, 2000);
    const r = await cpcc(h, ['setf', 'big', big]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /QUOTA_EXCEEDED|quota/);
    assert.equal(small.server.model.files.bytesOf('q'), 0);
    const fits = join(data, 'fits.bin');
    await makeFile(fits, 600);
    await ok(cpcc(h, ['setf', 'fits', fits]));
    // The same content again costs nothing more; new content past the quota is refused.
    await ok(cpcc(h, ['setf', 'again', fits]));
    const more = join(data, 'more.bin');
    await makeFile(more, 500);
    assert.equal((await cpcc(h, ['setf', 'more', more])).code, 1);
    assert.equal(small.server.model.files.bytesOf('q'), 600);
  });

  it('collects files nothing refers to, and keeps those in use', async () => {
    const store = ts.server.ctx.files.store;
    const api = ts.admin;
    const loose = join(data, 'loose.bin');
    const looseSum = await makeFile(loose, 3000);
    const stray = await api.sendBytes<{ sha256: string }>(`/projects/files/files/${looseSum}`, createReadStream(loose), 3000);
    assert.equal(stray.sha256, looseSum);
    await api.createProject('doomed');
    const kept = join(data, 'kept.bin');
    const keptSum = await makeFile(kept, 4000);
    await api.sendBytes(`/projects/doomed/files/${keptSum}`, createReadStream(kept), 4000);
    await api.setValue('doomed', 'k', { sha256: keptSum, size: 4000 });
    const held = (sha: string) => ts.server.model.files.isHeld(sha);
    await store.collect(held, 0);
    assert.equal(await store.has(looseSum), false, 'an upload nothing refers to is collected');
    assert.equal(await store.has(keptSum), true, 'a value keeps its file');
    await api.removeProject('doomed');
    await store.collect(held, 0);
    assert.equal(await store.has(keptSum), false, 'removing the project frees its files');
  });

  it('fails an attempt with a clear reason when an input arrives corrupt, or an output is over the limit', async () => {
    // The stored copy is damaged behind the server's back: the worker refuses the bytes, tries again, then gives up.
    const src = join(data, 'tampered.bin');
    const sum = await makeFile(src, 64 * 1024);
    await ok(cpcc(home, ['setf', 'tampered', src]));
    const stored = ts.server.ctx.files.store.pathOf(sum);
    const bytes = readFileSync(stored);
    bytes[1000] = bytes[1000]! ^ 0xff;
    writeFileSync(stored, bytes);
    const id = await ok(cpcc(home, ['submit', '--input-from', '@tampered:in.bin', '--', 'true']));
    const job = await finished(ts, id);
    assert.equal(job.state, 'failed');
    assert.match(job.reason, /could not start: input 'in\.bin': CHECKSUM_MISMATCH/);
    assert.equal(job.attempts[0]!.how, 'start-failed');

    // An output past the server's file limit is refused, and the attempt says so.
    const tight = await startTestServer({ maxFileBytes: 4096 });
    await tight.admin.createProject('tight');
    const th = await cpccHome(tight, 'tight');
    spawnWorker({
      url: tight.server.url,
      caFile: tight.caFile(),
      serverId: tight.server.serverId,
      token: await tight.server.createWorkerToken('tight'),
      name: 'tight',
      workDir: await tempDir('cpc-work-tight-'),
    });
    const big = await ok(cpcc(th, ['submit', '--output', 'big.bin', '--', 'sh', '-c', 'head -c 10000 /dev/zero > big.bin']));
    const bigJob = await finished(tight, big);
    assert.equal(bigJob.state, 'failed');
    assert.match(bigJob.reason, /outputs not kept: output 'big\.bin': FILE_TOO_LARGE/);
    assert.equal(bigJob.attempts[0]!.how, 'output-failed');
  });

  it('leaves no partial file when an upload is killed, and the retry succeeds', async () => {
    const src = join(data, 'killed.bin');
    const sum = await makeFile(src, 300 * MiB);
    const tmp = join(ts.home, 'files', 'tmp');
    const run = cpcc(home, ['setf', 'killed', src]);
    await until('the upload to start arriving', () => readdirSync(tmp).length > 0, { timeoutMs: 60_000 });
    run.child.kill('SIGKILL');
    await run;
    assert.equal(await ts.server.ctx.files.store.has(sum), false);
    await until('the cut-off upload to be thrown away', () => readdirSync(tmp).length === 0);
    await ok(cpcc(home, ['setf', 'killed', src]));
    assert.equal(await ts.server.ctx.files.store.has(sum), true);
    assert.equal(JSON.parse(await ok(cpcc(home, ['get', 'killed', '--json']))).sha256, sum);
  });
});
