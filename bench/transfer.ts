import { spawn } from 'node:child_process';
import { createReadStream, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ApiClient } from '../src/client/api/client.js';
import { hashFile } from '../src/client/api/files.js';
import { Meter } from '../src/stream-meter.js';
import { benchServer, connectPeers, round, tempHome, type Bench } from './lib.js';

export interface TransferRun {
  /** `cat FILE > /dev/null`: the machine's own ceiling for reading the file. */
  catMBs: number;
  uploadMBs: number;
  downloadMBs: number;
  delegatedUploadMBs: number;
  delegatedDownloadMBs: number;
}

const MB = 1024 * 1024;

const sink = (): Writable => new Writable({ write: (_c, _e, done) => done() });

async function cat(file: string): Promise<number> {
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const c = spawn('sh', ['-c', `cat '${file}' > /dev/null`], { stdio: 'ignore' });
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`cat exited ${code}`))));
  });
  return performance.now() - t0;
}

/** Downloads through `client` at `path`, checking the bytes as a worker would; returns ms. */
async function download(client: ApiClient, path: string, query: Record<string, string | number>, expect: { sha256: string; size: number }): Promise<number> {
  const t0 = performance.now();
  const { body } = await client.fetchBytes(path, query);
  await pipeline(body, new Meter(Infinity, undefined, expect), sink());
  return performance.now() - t0;
}

/**
 * Upload and download of one file of `mb` MiB through one server (a user's
 * upload, a worker's download), and through a delegating server (a worker on
 * A fetching the input of B's job and uploading its output, streamed over
 * mTLS to B). The client is in this process, with the servers, as in wake-up.
 * Uploads are durable (fsynced) before they are answered.
 */
export async function transfer(mb: number): Promise<TransferRun> {
  const dir = tempHome();
  const file = join(dir, 'payload.bin');
  const slice = Buffer.alloc(MB);
  for (let i = 0; i < slice.length; i++) slice[i] = (i * 131 + 17) & 0xff;
  writeFileSync(file, Buffer.concat(Array.from({ length: mb }, (_, n) => (slice.writeUInt32LE(n, 0), Buffer.from(slice)))));
  const sum = await hashFile(file);
  const rate = (ms: number) => round((sum.size / MB / ms) * 1000, 0);
  let a: Bench | undefined;
  let b: Bench | undefined;
  try {
    await cat(file); // into the page cache, for every reader alike
    const catMs = await cat(file);
    a = await benchServer();
    b = await benchServer();
    await connectPeers(a, b);

    // One server: the user's upload, then a worker's download of the job's input.
    let t0 = performance.now();
    await b.admin.sendBytes(`/projects/bench/files/${sum.sha256}`, createReadStream(file, { highWaterMark: MB }), sum.size);
    const uploadMs = performance.now() - t0;
    const job = (await b.admin.submit('bench', [{ argv: ['true'], inputs: [{ name: 'in.bin', ...sum }], cores: 1 }])).ids[0]!;
    const localWorker = new ApiClient({ url: b.server.url, caPem: b.server.caPem, serverId: b.server.serverId, token: b.workerToken });
    const lw = (await localWorker.call<{ workerId: string }>('POST', '/workers', { name: 'bench', host: 'h', cores: 1, memoryMb: 0 })).workerId;
    const claimed = (await localWorker.call<{ jobs: { id: string; attempt: number }[] }>('POST', `/workers/${lw}/claim`, { waitS: 5 })).jobs[0]!;
    if (claimed.id !== job) throw new Error('transfer: the local worker did not get the job');
    const downloadMs = await download(localWorker, `/workers/${lw}/files/${sum.sha256}`, { job, attempt: claimed.attempt }, sum);
    await localWorker.close();

    // Delegated: B has a job, A's worker borrows it.
    await b.admin.createProject('far');
    const farJob = (await b.admin.submit('far', [{ argv: ['true'], inputs: [{ name: 'in.bin', ...sum }], cores: 1 }])).ids[0]!;
    const worker = new ApiClient({ url: a.server.url, caPem: a.server.caPem, serverId: a.server.serverId, token: a.workerToken });
    const wid = (await worker.call<{ workerId: string }>('POST', '/workers', { name: 'borrower', host: 'h', cores: 1, memoryMb: 0 })).workerId;
    const got = (await worker.call<{ jobs: { id: string; attempt: number }[] }>('POST', `/workers/${wid}/claim`, { waitS: 5 })).jobs[0];
    if (got?.id !== farJob) throw new Error('transfer: the worker on A did not borrow the job of B');
    const delegatedDownloadMs = await download(worker, `/workers/${wid}/files/${sum.sha256}`, { job: farJob, attempt: got.attempt }, sum);
    // The same bytes as the job's output: B has them already, so a fresh content is sent.
    const outFile = join(dir, 'out.bin');
    slice.writeUInt32LE(0xffffffff, 4);
    writeFileSync(outFile, Buffer.concat([slice, ...Array.from({ length: mb - 1 }, () => slice)]));
    const outSum = await hashFile(outFile);
    t0 = performance.now();
    await worker.sendBytes(`/workers/${wid}/files/${outSum.sha256}`, createReadStream(outFile, { highWaterMark: MB }), outSum.size, { job: farJob, attempt: got.attempt });
    const delegatedUploadMs = performance.now() - t0;
    if (!(await b.server.ctx.files.store.has(outSum.sha256))) throw new Error('transfer: the output did not reach home');
    await worker.close();

    return {
      catMBs: rate(catMs),
      uploadMBs: rate(uploadMs),
      downloadMBs: rate(downloadMs),
      delegatedUploadMBs: rate(delegatedUploadMs),
      delegatedDownloadMBs: rate(delegatedDownloadMs),
    };
  } finally {
    await a?.close();
    await b?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
