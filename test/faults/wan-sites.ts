/**
 * Three sites across a wide-area network, for the WAN scenario's tests:
 * each server on a host of its own, reached by its peers only through a
 * delaying relay (delay-relay.ts) on a host of its own that it names as its
 * public host, with lossy links (Network.lossBetween) between each relay
 * host and the other sites' servers. So the handshake, the links and every
 * file between two servers cross one relay's delay and one lossy link, both
 * ways, while the test and a's worker reach their servers directly.
 *
 * Site a has the only worker and links to b and c, which each hold project
 * `p`: a's worker borrows everything b and c have.
 */
import { Network } from './netns.js';
import { AttemptWatch, connect, startRelay, startSite, startWorker, type NsRelay, type NsSite, type NsWorker } from './sites.js';

export interface WanSites {
  net: Network;
  a: NsSite;
  homes: NsSite[];
  worker: NsWorker;
  relays: Map<string, NsRelay>;
  /** The jobs the watch looks for: add each one submitted. */
  jobIds: Set<string>;
  watch: AttemptWatch;
  close(): Promise<void>;
}

export async function wanSites(opts: { oneWayMs: number; jitterMs: number; lossPercent: number; heartbeatS: number; cores: number }): Promise<WanSites> {
  const net = new Network();
  const sites = ['a', 'b', 'c'];
  const made: NsSite[] = [];
  let watch: AttemptWatch | undefined;
  const close = async () => {
    watch?.stop();
    await Promise.all(made.map((s) => s.admin.destroy()));
    await net.destroy();
  };
  try {
    for (const s of sites) {
      net.addHost(s);
      net.addHost(`${s}-wan`);
    }
    const relays = new Map<string, NsRelay>();
    for (const s of sites) {
      relays.set(s, await startRelay(net, `${s}-wan`, net.host(s).address, opts.oneWayMs, opts.jitterMs));
      for (const other of sites) if (other !== s) net.lossBetween(`${s}-wan`, other, opts.lossPercent);
    }
    made.push(...(await Promise.all(sites.map((s) => startSite(net, s, { heartbeatS: opts.heartbeatS, publicHost: net.host(`${s}-wan`).address })))));
    const [a, ...homes] = made as [NsSite, ...NsSite[]];
    for (const home of homes) {
      await connect(a, home);
      await home.admin.createProject('p');
    }
    const worker = await startWorker(net, 'a', a, 'a-worker', opts.cores);
    const jobIds = new Set<string>();
    watch = new AttemptWatch(() => jobIds);
    return { net, a, homes, worker, relays, jobIds, watch, close };
  } catch (err) {
    await close();
    throw err;
  }
}
