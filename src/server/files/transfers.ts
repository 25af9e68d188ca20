import type { IncomingMessage } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import { Agent, request } from '../../common/undici.js';
import { fail, isErrorCode } from '../../core/errors.js';
import type { Job } from '../../core/types.js';
import { serverIdentityChecker } from '../../federation/certificates.js';
import type { Peer } from '../../federation/trust-store.js';
import type { StoredBlob } from '../../persistence/blob-store.js';
import { Meter } from '../../common/stream-meter.js';
import type { ServerIdentity } from '../../federation/identity.js';
import type { TrustStore } from '../../federation/trust-store.js';
import type { Logger } from '../../common/logger.js';
import type { Store } from '../jobs/store.js';
import type { Files } from './files.js';
import { Reply, type StreamReply } from '../http/router.js';
import { LinkFileServer, PortProbe, readOverLink, writeOverLink, type LinkCaller } from './link-transfers.js';

/** Where a peer serves the files of the attempts it delegated (auth rule `peer`). */
export const PEER_FILES_PATH = '/api/v1/peer/files';

/** What the transfers use: leases and foreign attempts, the file store, the peers and this server's certificate. */
export interface TransferServices {
  store: Pick<Store, 'model'>;
  files: Pick<Files, 'receive' | 'receiveStream' | 'download' | 'announcedSize' | 'readRange'>;
  trust: Pick<TrustStore, 'peer'>;
  identity: Pick<ServerIdentity, 'certPem' | 'keyPem'>;
  log: Logger;
}

/**
 * The files of running attempts. A worker fetches its inputs from, and
 * uploads its outputs to, its own server. For a job of this server the
 * attempt's lease decides; for a peer's job (delegated here) this server
 * streams the bytes to and from the job's home over mTLS, hashing them on the
 * way, so neither end ever holds a whole file and a corrupt transfer is cut
 * short instead of passed on. A home whose port cannot be dialled (behind a
 * firewall, it dialled us) gets the same bytes over its peer link instead
 * (link-transfers.ts).
 */
export class Transfers {
  private readonly agents = new Map<string, { caPem: string; agent: Agent }>();
  private readonly probe = new PortProbe();
  /** The peer links, once they are up (set at start-up). */
  links: { link(peerId: string): LinkCaller | undefined } | undefined;
  /** Serves peers' file calls over their links. */
  readonly linkFiles: LinkFileServer;

  constructor(private readonly ctx: TransferServices) {
    this.linkFiles = new LinkFileServer({
      readInput: async (peerId, jobId, attempt, sha256, offset, length) => {
        const job = this.leased(jobId, attempt, (l) => l.via === peerId);
        if (!job.inputs?.some((i) => 'sha256' in i && i.sha256 === sha256)) throw fail('FILE_NOT_FOUND', `job ${job.id} has no input with checksum ${sha256}`);
        return this.ctx.files.readRange(sha256, offset, length);
      },
      receiveOutput: async (peerId, jobId, attempt, sha256, size, source) => {
        const job = this.leased(jobId, attempt, (l) => l.via === peerId);
        return this.ctx.files.receiveStream(job.project, source, sha256, size);
      },
    });
  }

  // ---- for this server's workers ---------------------------------------------

  async input(workerId: string, jobId: string, attempt: number, sha256: string): Promise<StreamReply> {
    const home = this.foreignHome(workerId, jobId, attempt);
    if (home) return this.fetchFromHome(home, jobId, attempt, sha256);
    return this.inputOf(this.leased(jobId, attempt, (l) => l.workerId === workerId && l.via === 'local'), sha256);
  }

  async output(workerId: string, jobId: string, attempt: number, sha256: string, req: IncomingMessage): Promise<StoredBlob> {
    const home = this.foreignHome(workerId, jobId, attempt);
    if (home) return this.sendToHome(home, jobId, attempt, sha256, req);
    const job = this.leased(jobId, attempt, (l) => l.workerId === workerId && l.via === 'local');
    return this.ctx.files.receive(job.project, req, sha256);
  }

  // ---- for peers whose workers run this server's jobs ------------------------

  async inputForPeer(peer: Peer, jobId: string, attempt: number, sha256: string): Promise<StreamReply> {
    return this.inputOf(this.leased(jobId, attempt, (l) => l.via === peer.serverId), sha256);
  }

  async outputFromPeer(peer: Peer, jobId: string, attempt: number, sha256: string, req: IncomingMessage): Promise<StoredBlob> {
    const job = this.leased(jobId, attempt, (l) => l.via === peer.serverId);
    return this.ctx.files.receive(job.project, req, sha256);
  }

  async close(): Promise<void> {
    this.linkFiles.close();
    await Promise.all([...this.agents.values()].map((a) => a.agent.close().catch(() => undefined)));
    this.agents.clear();
  }

  // ---- inside -----------------------------------------------------------------

  /** The job, if `attempt` is its current one and `mine` says the lease is the caller's. */
  private leased(jobId: string, attempt: number, mine: (l: { workerId: string; via: string }) => boolean): Job {
    const lease = this.ctx.store.model.leases.get(jobId);
    if (!lease || lease.attempt !== attempt || !mine(lease)) {
      throw fail('STALE_ATTEMPT', `attempt ${attempt} of job ${jobId} is not running for this worker`);
    }
    return this.ctx.store.model.job(jobId)!;
  }

  private inputOf(job: Job, sha256: string): Promise<StreamReply> {
    const input = job.inputs?.find((i) => 'sha256' in i && i.sha256 === sha256);
    if (!input) throw fail('FILE_NOT_FOUND', `job ${job.id} has no input with checksum ${sha256}`);
    return this.ctx.files.download(sha256, input.name);
  }

  /** The peer a delegated attempt belongs to, if the worker runs it for that peer now. */
  private foreignHome(workerId: string, jobId: string, attempt: number): Peer | null {
    const f = this.ctx.store.model.foreign.get(jobId);
    if (!f || f.attempt !== attempt) return null;
    if (f.workerId !== workerId || f.result !== undefined) throw fail('STALE_ATTEMPT', `attempt ${attempt} of job ${jobId} is not running for this worker`);
    const peer = this.ctx.trust.peer(f.home);
    if (!peer) throw fail('PEER_NOT_FOUND', `the home of job ${jobId} is no longer a trusted peer`);
    return peer;
  }

  private url(peer: Peer, jobId: string, attempt: number, sha256: string): string {
    const host = peer.host.includes(':') ? `[${peer.host}]` : peer.host;
    return `https://${host}:${peer.securePort}${PEER_FILES_PATH}/${sha256}?job=${jobId}&attempt=${attempt}`;
  }

  /** One connection pool per peer, speaking with this server's certificate and trusting only the peer's CA. */
  private agent(peer: Peer): Dispatcher {
    const had = this.agents.get(peer.serverId);
    if (had && had.caPem === peer.caPem) return had.agent;
    void had?.agent.close().catch(() => undefined);
    const agent = new Agent({
      connections: 8,
      connect: {
        cert: this.ctx.identity.certPem,
        key: this.ctx.identity.keyPem,
        ca: peer.caPem,
        checkServerIdentity: serverIdentityChecker(peer.serverId),
      },
    });
    this.agents.set(peer.serverId, { caPem: peer.caPem, agent });
    return agent;
  }

  /** The link to a home that cannot be dialled, or null when its port answers (or there is no link to use). */
  private async linkInstead(peer: Peer): Promise<LinkCaller | null> {
    const link = this.links?.link(peer.serverId);
    if (!link) return null;
    return (await this.probe.reaches(peer.host, peer.securePort)) ? null : link;
  }

  private async fetchFromHome(peer: Peer, jobId: string, attempt: number, sha256: string): Promise<StreamReply> {
    const link = await this.linkInstead(peer);
    if (link) {
      const { size, stream } = await readOverLink(link, jobId, attempt, sha256);
      const meter = new Meter(size, undefined, { sha256, size });
      pipeline(stream, meter).catch((err: unknown) => {
        this.ctx.log.warn('input from home over the link refused', { peer: peer.serverId, job: jobId, err: (err as Error).message });
      });
      return Reply.stream(meter, size, { 'x-cpc-sha256': sha256 });
    }
    const res = await this.call(peer, () => request(this.url(peer, jobId, attempt, sha256), { dispatcher: this.agent(peer) }));
    if (res.statusCode !== 200) throw await refusal(peer, res);
    const size = Number(res.headers['content-length']);
    if (!Number.isSafeInteger(size)) {
      res.body.destroy();
      throw fail('PEER_BAD_ANSWER', `peer ${peer.name} sent a file without its size`);
    }
    const meter = new Meter(size, undefined, { sha256, size });
    pipeline(res.body, meter).catch((err: unknown) => {
      this.ctx.log.warn('input from home refused', { peer: peer.serverId, job: jobId, err: (err as Error).message });
    });
    return Reply.stream(meter, size, { 'x-cpc-sha256': sha256 });
  }

  private async sendToHome(peer: Peer, jobId: string, attempt: number, sha256: string, req: IncomingMessage): Promise<StoredBlob> {
    const size = this.ctx.files.announcedSize(req);
    const meter = new Meter(size, undefined, { sha256, size });
    const link = await this.linkInstead(peer);
    if (link) {
      // The meter checks size and checksum as the chunks go; a bad upload fails the iteration.
      req.pipe(meter);
      req.once('error', (err) => meter.destroy(err));
      return writeOverLink(link, jobId, attempt, sha256, size, meter);
    }
    const forwarding = pipeline(req, meter).catch((err: unknown) => err as Error);
    const res = await this.call(peer, () =>
      request(this.url(peer, jobId, attempt, sha256), {
        method: 'PUT',
        dispatcher: this.agent(peer),
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
        body: meter,
      }),
    );
    if (res.statusCode !== 200) {
      // Home refused, perhaps before reading it all: stop forwarding.
      meter.destroy();
      throw await refusal(peer, res);
    }
    // Home answers only once it has all the bytes, so the forwarding has ended.
    const inbound = await forwarding;
    if (inbound instanceof Error) {
      res.body.destroy();
      throw 'code' in inbound && isErrorCode(inbound.code) ? inbound : fail('TRANSFER_INCOMPLETE', 'the upload was cut off');
    }
    return (await res.body.json()) as StoredBlob;
  }

  private async call<T>(peer: Peer, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (isErrorCode(code)) throw err;
      throw fail('PEER_UNREACHABLE', `peer ${peer.name} could not be reached for a file transfer: ${(err as Error).message}`);
    }
  }
}

/** A peer's refusal, with its code when it sent one of ours. */
async function refusal(peer: Peer, res: Dispatcher.ResponseData): Promise<Error> {
  const text = await res.body.text().catch(() => '');
  try {
    const e = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
    if (e && isErrorCode(e.code) && typeof e.message === 'string') return fail(e.code, `peer ${peer.name}: ${e.message}`);
  } catch {
    // not JSON: reported below
  }
  return fail('PEER_BAD_ANSWER', `peer ${peer.name} answered a file transfer with status ${res.statusCode}`);
}
