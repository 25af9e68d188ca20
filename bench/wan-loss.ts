/**
 * Packet loss on the bench's wide-area path (lib.ts delegatingPair): an
 * nftables table of this process's own in the machine's namespace that
 * drops, at random, a share of the loopback packets to and from the relays'
 * addresses. The rules sit on the input hook, after the sender's stack took
 * a packet as sent, so TCP learns of a loss as on a real path (duplicate
 * acknowledgements, tail-loss probe or retransmission timer). Each relay
 * passes a connection on to its server at 127.0.0.1, so only the hop
 * between a server and its peer's relay is lossy, both ways: one lossy hop
 * per connection, as in the fault suite. The relays' addresses are drawn
 * at random in 127/8 so that no other program's loopback traffic is hit.
 *
 * Needs root and nft; lossUnavailable() says why not otherwise.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Why loss cannot be added here, or null when it can. */
export function lossUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'dropping packets needs root (nftables)';
  if (!existsSync('/usr/sbin/nft')) return '/usr/sbin/nft is missing (install nftables)';
  return null;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Two loopback addresses no one else uses, for the relays of a lossy path. */
export function lossyAddresses(): [string, string] {
  const x = 100 + Math.floor(Math.random() * 150);
  const y = 1 + Math.floor(Math.random() * 250);
  return [`127.${x}.${y}.2`, `127.${x}.${y}.3`];
}

let dropped = 0;

/** Packets the tables of dropOnLoopback dropped, counted as each is removed. */
export function droppedPackets(): number {
  return dropped;
}

/** Drops `percent` of the packets to and from `hosts` until the returned function is called (or the process exits). */
export function dropOnLoopback(hosts: string[], percent: number): () => void {
  const perMille = Math.round(percent * 10);
  if (!(perMille > 0 && perMille <= 1000)) throw new Error(`loss of ${percent} % is out of 0.1 – 100 %`);
  const table = `cpcbenchloss${process.pid}`;
  const set = `{ ${hosts.join(', ')} }`;
  const nft = (args: string[], input?: string) => execFileSync('nft', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  // A run killed by a signal left its table: remove those whose process is gone.
  for (const m of nft(['list', 'tables']).matchAll(/^table inet cpcbenchloss(\d+)$/gm)) {
    if (!alive(Number(m[1]))) nft(['delete', 'table', 'inet', `cpcbenchloss${m[1]}`]);
  }
  nft(
    ['-f', '-'],
    `table inet ${table} {
  chain in {
    type filter hook input priority 0; policy accept;
    iif "lo" ip daddr ${set} numgen random mod 1000 < ${perMille} counter drop
    iif "lo" ip saddr ${set} numgen random mod 1000 < ${perMille} counter drop
  }
}
`,
  );
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    process.removeListener('exit', remove);
    try {
      for (const m of nft(['list', 'table', 'inet', table]).matchAll(/counter packets (\d+)/g)) dropped += Number(m[1]);
      nft(['delete', 'table', 'inet', table]);
    } catch {
      // already gone
    }
  };
  process.once('exit', remove);
  return remove;
}
