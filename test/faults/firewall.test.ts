/**
 * Servers behind a firewall that refuses every connection from outside: they
 * dial out and take full part all the same, files included. One such server
 * borrows work (its worker runs another's jobs); the other lends it (its
 * jobs run on another's worker, and their inputs and outputs cross the link
 * it dialled, since its port cannot be reached).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hashFile } from '../../src/client/api/files.js';
import { faultsUnavailable, Network } from './netns.js';
import { connect, jobEnded, startSite, startWorker, type NsSite } from './sites.js';

const skip = faultsUnavailable();

describe('servers that only dial out', { skip: skip ?? false, timeout: 600_000 }, () => {
  let net: Network;
  let open: NsSite;
  let walled: NsSite;
  let walledHome: NsSite;
  const data = mkdtempSync(join(tmpdir(), 'cpc-fault-fw-'));

  before(async () => {
    net = new Network();
    for (const h of ['open', 'walled', 'walledhome']) net.addHost(h);
    [open, walled, walledHome] = await Promise.all(['open', 'walled', 'walledhome'].map((h) => startSite(net, h)));
    // Nothing reaches the walled servers from outside; they dial the open one.
    net.firewall('walled');
    net.firewall('walledhome');
    await connect(walled, open);
    await connect(walledHome, open);
    await Promise.all([open.admin.createProject('p'), walledHome.admin.createProject('w')]);
  });

  after(async () => {
    await Promise.all([open, walled, walledHome].map((s) => s?.admin.destroy()));
    await net?.destroy();
  });

  /** A job with a 2 MiB input that copies it to an output; returns the finished job and the input's digest. */
  async function fileJob(site: NsSite, project: string): Promise<{ id: string; sha256: string }> {
    const input = join(data, `${site.name}-in.bin`);
    // Several link chunks, the last one short.
    const bytes = Buffer.alloc(2 * 1024 * 1024 + 12_345);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + site.name.length) & 0xff;
    writeFileSync(input, bytes);
    const sum = await hashFile(input);
    await site.admin.sendBytes(`/projects/${project}/files/${sum.sha256}`, createReadStream(input), sum.size);
    const { ids } = await site.admin.submit(project, [
      { shell: 'cp in.bin out.bin && echo copied', inputs: [{ name: 'in.bin', sha256: sum.sha256, size: sum.size }], outputs: [{ glob: 'out.bin' }] },
    ]);
    return { id: ids[0]!, sha256: sum.sha256 };
  }

  async function outputDigest(site: NsSite, id: string): Promise<string> {
    const { body } = await site.admin.fetchBytes(`/jobs/${id}/outputs/out.bin`);
    const h = createHash('sha256');
    for await (const chunk of body) h.update(chunk as Buffer);
    return h.digest('hex');
  }

  it('a walled server borrows: its worker runs the open server’s job, files and all', async () => {
    await startWorker(net, 'walled', walled, 'walled-worker', 1);
    const { id, sha256 } = await fileJob(open, 'p');
    const job = await jobEnded(open.admin, id, 120_000);
    assert.equal(job.state, 'done', job.reason);
    assert.equal(job.attempts.at(-1)!.via, walled.serverId, 'the walled server’s worker ran it');
    assert.equal(await outputDigest(open, id), sha256);
  });

  it('a walled server lends: its job runs on the open server’s worker, files and all', async () => {
    await startWorker(net, 'open', open, 'open-worker', 1);
    const { id, sha256 } = await fileJob(walledHome, 'w');
    const job = await jobEnded(walledHome.admin, id, 120_000);
    assert.equal(job.state, 'done', job.reason);
    assert.equal(job.attempts.at(-1)!.via, open.serverId, 'the open server’s worker ran it');
    assert.equal(await outputDigest(walledHome, id), sha256);
  });
});
