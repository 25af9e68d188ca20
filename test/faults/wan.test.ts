/**
 * Three sites across a wide-area network: 40 ms round trip ± 10 ms and
 * 0.5 % packet loss between any two of them. Site a has the only worker;
 * sites b and c have jobs and no worker, so a's worker borrows all of
 * them: short ones, ones of a few seconds, and ones with an input file to
 * fetch from home and an output file to send back.
 *
 * Each server is reached by its peers only through a delaying relay on a
 * host of its own (delay-relay.ts), which it names as its public host; the
 * links between each relay host and the other sites drop 0.5 % of the
 * packets each way, in transit (wan-sites.ts). So
 * the handshake, the links and every file cross the delay and the loss,
 * while the test and a's worker reach their servers directly.
 *
 * Jobs arrive in waves for about a minute, and the test waits for all of
 * them to end: some two minutes in all, where a site would borrow for hours.
 * A minute of waves already holds every kind of crossing many times over
 * (claims, results, heartbeats, file fetches and uploads, retransmitted
 * segments), and the suite runs in CI on every change; the latency figures
 * as functions of the round trip are the benchmark's (bench/wan.ts).
 *
 * Checked at the end: no acknowledged job is lost, every job ends done on
 * a's worker, no result is taken twice, no job ran two attempts at once,
 * files come back whole, and the peers know each other by their relays.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { JobView, ProjectView } from '../../src/core/wire.js';
import { until } from '../helpers/server.js';
import { faultsUnavailable } from './netns.js';
import { reportedAttempts, SECURE_PORT, type NsSite } from './sites.js';
import { wanSites, type WanSites } from './wan-sites.js';

const skip = faultsUnavailable();
/** One way: 20 ms ± 5 ms, so 40 ms ± 10 ms the round trip. */
const ONE_WAY_MS = 20;
const JITTER_MS = 5;
const LOSS_PERCENT = 0.5;
const WAVES = 12;
const WAVE_EVERY_MS = 5000;

interface Sent {
  id: string;
  home: NsSite;
  stdout?: string;
  /** For a job with files: the input's digest, which its output must have. */
  sha256?: string;
}

describe('a wide-area federation: 40 ms ± 10 ms, 0.5 % loss', { skip: skip ?? false, timeout: 600_000 }, () => {
  let wan: WanSites;
  let a: NsSite;
  let homes: NsSite[];
  const sent: Sent[] = [];

  before(async () => {
    wan = await wanSites({ oneWayMs: ONE_WAY_MS, jitterMs: JITTER_MS, lossPercent: LOSS_PERCENT, heartbeatS: 2, cores: 2 });
    ({ a, homes } = wan);
  });

  after(async () => {
    await wan?.close();
  });

  /** A small input at `home`, its bytes telling the wave and site apart; returns its digest and size. */
  async function upload(home: NsSite, wave: number): Promise<{ sha256: string; size: number }> {
    const bytes = Buffer.alloc(48 * 1024 + wave * 97);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + wave + home.name.charCodeAt(0)) & 0xff;
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    await home.admin.sendBytes(`/projects/p/files/${sha256}`, Readable.from([bytes]), bytes.length);
    return { sha256, size: bytes.length };
  }

  async function wave(home: NsSite, w: number): Promise<void> {
    const specs: { spec: Parameters<NsSite['admin']['submit']>[1][number]; stdout?: string; sha256?: string }[] = [];
    for (let i = 0; i < 4; i++) specs.push({ spec: { shell: `echo ${home.name}-${w}-${i}` }, stdout: `${home.name}-${w}-${i}\n` });
    specs.push({ spec: { shell: `sleep ${1 + (w % 3)}; echo slept`, name: 'sleeper' }, stdout: 'slept\n' });
    if (w % 2 === 0) {
      const input = await upload(home, w);
      specs.push({
        spec: { shell: 'cp in.bin out.bin && echo copied', inputs: [{ name: 'in.bin', ...input }], outputs: [{ glob: 'out.bin' }] },
        stdout: 'copied\n',
        sha256: input.sha256,
      });
    }
    const { ids } = await home.admin.submit('p', specs.map((s) => s.spec));
    ids.forEach((id, i) => {
      wan.jobIds.add(id);
      sent.push({ id, home, stdout: specs[i]!.stdout, sha256: specs[i]!.sha256 });
    });
  }

  it('a’s worker borrows waves of mixed jobs from b and c, and every one ends done, once', async () => {
    for (let w = 0; w < WAVES; w++) {
      const t0 = Date.now();
      await Promise.all(homes.map((h) => wave(h, w)));
      // Waves at a steady pace: a submit slowed by the network is not followed by a burst.
      const left = WAVE_EVERY_MS - (Date.now() - t0);
      if (left > 0) await new Promise((r) => setTimeout(r, left));
    }
    const ended = async (s: Sent): Promise<JobView | null> => {
      const job = await s.home.admin.job(s.id);
      return ['done', 'failed', 'cancelled'].includes(job.state) ? job : null;
    };
    const jobs = new Map<string, JobView>();
    await until(
      'every job to end',
      async () => {
        for (const s of sent) {
          if (jobs.has(s.id)) continue;
          const job = await ended(s);
          if (!job) return false;
          jobs.set(s.id, job);
        }
        return true;
      },
      { timeoutMs: 300_000, intervalMs: 500 },
    );
    for (const s of sent) {
      const job = jobs.get(s.id)!;
      assert.equal(job.state, 'done', `${s.id} at ${s.home.name} ends done: ${job.reason}`);
      assert.equal(reportedAttempts(job), 1, `${s.id}: one result taken (attempts: ${job.attempts.map((x) => x.how).join(', ')})`);
      const last = job.attempts.at(-1)!;
      assert.equal(last.how, 'exited');
      assert.equal(last.via, a.serverId, `${s.id} ran on a’s worker`);
      assert.equal(job.stdoutTail, s.stdout);
      if (s.sha256) {
        const { body } = await s.home.admin.fetchBytes(`/jobs/${s.id}/outputs/out.bin`);
        const h = createHash('sha256');
        for await (const chunk of body) h.update(chunk as Buffer);
        assert.equal(h.digest('hex'), s.sha256, `${s.id}: the output came back whole`);
      }
    }
    // Acknowledged means listed: each home holds exactly the jobs it acknowledged.
    for (const home of homes) {
      const mine = sent.filter((s) => s.home === home).length;
      const project = await home.admin.call<ProjectView>('GET', '/projects/p');
      assert.equal(project.counts.done, mine, `${home.name} counts every job it acknowledged as done, and no other`);
    }
    assert.ok(sent.length >= WAVES * 2 * 5, `${sent.length} jobs sent`);
  });

  it('no job had two attempts alive at once', () => {
    wan.watch.scan();
    assert.deepEqual(wan.watch.overlaps, []);
    const sleepers = sent.filter((s) => s.stdout === 'slept\n').map((s) => s.id);
    assert.ok(sleepers.filter((id) => wan.watch.seen.has(id)).length >= sleepers.length / 2, 'the watch saw the jobs of a few seconds run');
  });

  it('the sites know each other by their relays, and the links crossed them, losing packets', async () => {
    assert.ok(wan.net.lostPackets() > 0, 'the lossy links dropped packets');
    const peers = (await a.admin.peers()).connected;
    for (const home of homes) {
      assert.equal(peers.find((p) => p.serverId === home.serverId)?.host, home.publicAddress, `a reaches ${home.name} by its relay`);
      const back = (await home.admin.peers()).connected.find((p) => p.serverId === a.serverId);
      assert.equal(back?.host, a.publicAddress, `${home.name} reaches a by its relay`);
      assert.ok((wan.relays.get(home.name)!.accepted.get(SECURE_PORT) ?? 0) > 0, `connections crossed ${home.name}’s relay`);
    }
  });
});
