import { execFileSync, spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ApiClient } from '../src/client/api/client.js';
import { hashFile, type FileSum } from '../src/client/api/files.js';
import { benchServer, connectPeers, profiled, round, runChild, tempHome, type Bench } from './lib.js';

export interface TransferRun {
  /** `cat FILE > /dev/null`: the machine's own ceiling for reading the file. */
  catMBs: number;
  /** The same upload to a bare HTTPS server that discards the bytes: what TLS alone allows. */
  tlsMBs: number;
  uploadMBs: number;
  downloadMBs: number;
  delegatedUploadMBs: number;
  delegatedDownloadMBs: number;
  /** Whether the page cache was emptied before each measurement (needs root); otherwise every reader had the file cached. */
  cold: boolean;
}

const MB = 1024 * 1024;

/**
 * Empties the page cache, so that `cat` and the servers read the file from
 * the disk as a fresh file would be read. Needs root; false when not allowed.
 */
function dropCaches(): boolean {
  // Dirty pages cannot be dropped: write them out first.
  execFileSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

async function sh(command: string): Promise<number> {
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const c = spawn('sh', ['-c', command], { stdio: 'ignore' });
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited ${code}`))));
  });
  return performance.now() - t0;
}

interface Endpoint {
  server: Bench['server'];
  token: string;
  caFile: string;
}

/** One upload or download by a client in its own process; the time it took, in ms. */
async function clientRun(mode: 'upload' | 'download', at: Endpoint, path: string, query: Record<string, string | number>, file: string, sum: FileSum): Promise<number> {
  const args = [mode, at.server.url, at.caFile, at.server.serverId, at.token, path, JSON.stringify(query), file, sum.sha256, String(sum.size)];
  const { ms } = await profiled(`transfer-${mode}`, () => runChild<{ ms: number }>('transfer-client.ts', args));
  return ms;
}

/**
 * The TLS ceiling: a bare node:https server with the same certificate that
 * reads the body and throws it away, sent to by the same client process.
 */
async function bareTls(at: Bench, dir: string, file: string, sum: FileSum): Promise<number> {
  const { keyPem, certPem } = at.server.identity;
  const bare = createServer({ key: keyPem, cert: certPem }, (req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sha256: sum.sha256 })));
  });
  await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(bare.address() as AddressInfo).port}`;
  const caFile = join(dir, 'bare-ca.pem');
  writeFileSync(caFile, at.server.caPem);
  try {
    dropCaches();
    const args = ['upload', url, caFile, at.server.serverId, 'none', '/discard', '{}', file, sum.sha256, String(sum.size)];
    return (await runChild<{ ms: number }>('transfer-client.ts', args)).ms;
  } finally {
    bare.closeAllConnections();
    await new Promise((resolve) => bare.close(resolve));
  }
}

function writePayload(path: string, mb: number, salt: number): void {
  const slice = Buffer.alloc(MB);
  for (let i = 0; i < slice.length; i++) slice[i] = (i * 131 + salt) & 0xff;
  writeFileSync(path, Buffer.concat(Array.from({ length: mb }, (_, n) => (slice.writeUInt32LE(n, 0), Buffer.from(slice)))));
}

/** A worker registered on `at` that holds the claim of the one job queued for it. */
async function claimOne(at: Bench, name: string): Promise<{ workerId: string; job: string; attempt: number }> {
  const w = new ApiClient({ url: at.server.url, caPem: at.server.caPem, serverId: at.server.serverId, token: at.workerToken });
  try {
    const workerId = (await w.call<{ workerId: string }>('POST', '/workers', { name, host: 'h', cores: 1, memoryMb: 0 })).workerId;
    const claimed = (await w.call<{ jobs: { id: string; attempt: number }[] }>('POST', `/workers/${workerId}/claim`, { waitS: 5 })).jobs[0];
    if (!claimed) throw new Error(`transfer: ${name} got no job`);
    return { workerId, job: claimed.id, attempt: claimed.attempt };
  } finally {
    await w.close();
  }
}

/**
 * Upload and download of one file of `mb` MiB through one server (a user's
 * upload, a worker's download of it as a job's input), and through a
 * delegating server (a worker on A fetching the input of B's job and sending
 * its output, both streamed over mTLS between A and B). Each client is a
 * process of its own; uploads are answered only once durable (fsynced).
 * The page cache is emptied before each measurement when allowed, so the
 * servers read and write the disk as `cat` reads it.
 */
export async function transfer(mb: number): Promise<TransferRun> {
  const dir = tempHome();
  const input = join(dir, 'input.bin');
  const output = join(dir, 'output.bin');
  writePayload(input, mb, 17);
  writePayload(output, mb, 91);
  const [sum, outSum] = [await hashFile(input), await hashFile(output)];
  const rate = (ms: number) => round((sum.size / MB / ms) * 1000, 0);
  let a: Bench | undefined;
  let b: Bench | undefined;
  try {
    const cold = dropCaches();
    const catMs = await sh(`cat '${input}' > /dev/null`);
    a = await benchServer();
    b = await benchServer();
    await connectPeers(a, b);
    const tlsMs = await bareTls(a, dir, input, sum);
    const caFile = (s: Bench) => {
      const f = join(dir, `${s.server.serverId}.pem`);
      writeFileSync(f, s.server.caPem);
      return f;
    };
    const user = (s: Bench): Endpoint => ({ server: s.server, token: s.admin.token!, caFile: caFile(s) });
    const worker = (s: Bench): Endpoint => ({ server: s.server, token: s.workerToken, caFile: caFile(s) });

    // One server: the user's upload, then a worker's download of it as the input of a job.
    dropCaches();
    const uploadMs = await clientRun('upload', user(b), `/projects/bench/files/${sum.sha256}`, {}, input, sum);
    await b.admin.submit('bench', [{ argv: ['true'], inputs: [{ name: 'in.bin', ...sum }] }]);
    const local = await claimOne(b, 'local');
    dropCaches();
    const downloadMs = await clientRun('download', worker(b), `/workers/${local.workerId}/files/${sum.sha256}`, { job: local.job, attempt: local.attempt }, input, sum);

    // Delegated: B holds the job, A's worker borrows it.
    await b.admin.createProject('far');
    // Files belong to a project: the job of 'far' names a copy sent to 'far' (not timed).
    await clientRun('upload', user(b), `/projects/far/files/${sum.sha256}`, {}, input, sum);
    await b.admin.submit('far', [{ argv: ['true'], inputs: [{ name: 'in.bin', ...sum }] }]);
    const far = await claimOne(a, 'borrower');
    dropCaches();
    const delegatedDownloadMs = await clientRun('download', worker(a), `/workers/${far.workerId}/files/${sum.sha256}`, { job: far.job, attempt: far.attempt }, input, sum);
    dropCaches();
    const delegatedUploadMs = await clientRun('upload', worker(a), `/workers/${far.workerId}/files/${outSum.sha256}`, { job: far.job, attempt: far.attempt }, output, outSum);
    if (!(await b.server.ctx.files.store.has(outSum.sha256))) throw new Error('transfer: the output did not reach home');

    return {
      catMBs: rate(catMs),
      tlsMBs: rate(tlsMs),
      uploadMBs: rate(uploadMs),
      downloadMBs: rate(downloadMs),
      delegatedUploadMBs: rate(delegatedUploadMs),
      delegatedDownloadMBs: rate(delegatedDownloadMs),
      cold,
    };
  } finally {
    await a?.close();
    await b?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
