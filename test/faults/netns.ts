/**
 * A small network for fault tests: each host in a network namespace of its
 * own, joined by a veth pair to one bridge in the test's namespace, which
 * also holds an address so that the test reaches every host directly.
 *
 * Faults are nftables rules inside a host's namespace: a partition drops
 * what goes to or comes from another host (one direction or both), loss
 * drops a random share of packets, a firewall refuses connections opened
 * towards the host. Loss on a link (lossBetween) is a rule on the bridge
 * instead: packets are dropped in transit, after the sender's stack took
 * them as sent, so that TCP finds out as it would on a real path (by
 * duplicate acknowledgements or its retransmission timer). This machine's
 * kernel has no netem, so delay is not a qdisc here: a wide-area path is a
 * host of its own running a delaying relay (delay-relay.ts) that a server
 * names as its public host, with loss on the links between that relay host
 * and the other servers.
 *
 * Everything made is named after the network's id and removed by destroy(),
 * and by an exit hook when a test dies first; a later run removes what a
 * run that was killed left (its owner pid is gone).
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

const MARKS = '/run/cpc-faults';

export interface Host {
  name: string;
  /** The namespace's name, for `ip netns exec`. */
  ns: string;
  address: string;
}

function run(args: string[], input?: string): string {
  return execFileSync(args[0]!, args.slice(1), { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

function tryRun(args: string[]): void {
  try {
    run(args);
  } catch {
    // already gone
  }
}

/**
 * Why fault tests cannot run here, or null when they can. With
 * CPC_REQUIRE_FAULTS=1 (CI) a reason is an error instead of a skip.
 */
export function faultsUnavailable(): string | null {
  let why: string | null = null;
  if (process.getuid?.() !== 0) why = 'fault tests need root (network namespaces)';
  else for (const tool of ['/usr/sbin/ip', '/usr/sbin/nft']) if (!existsSync(tool)) why = `${tool} is missing (install iproute2, nftables)`;
  if (why && process.env.CPC_REQUIRE_FAULTS === '1') throw new Error(`CPC_REQUIRE_FAULTS is set, but ${why}`);
  return why;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes namespaces and bridges of runs whose process is gone. */
function sweepStale(): void {
  if (!existsSync(MARKS)) return;
  for (const id of readdirSync(MARKS)) {
    const pid = Number(readFileSync(`${MARKS}/${id}`, 'utf8'));
    if (alive(pid)) continue;
    removeById(id);
  }
}

function removeById(id: string): void {
  let names: string[] = [];
  try {
    names = run(['ip', 'netns', 'list']).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(`cf${id}-`));
  } catch {
    // no namespaces at all
  }
  for (const ns of names) {
    // Processes still in the namespace would keep it (and its addresses) alive.
    try {
      for (const pid of run(['ip', 'netns', 'pids', ns]).split('\n').filter(Boolean)) tryRun(['kill', '-9', pid]);
    } catch {
      // gone
    }
    tryRun(['ip', 'netns', 'del', ns]);
  }
  tryRun(['ip', 'link', 'del', `cf${id}br`]);
  tryRun(['nft', 'delete', 'table', 'bridge', `cf${id}loss`]);
  rmSync(`${MARKS}/${id}`, { force: true });
}

export class Network {
  readonly id = randomBytes(3).toString('hex');
  readonly hosts = new Map<string, Host>();
  /** The test's own address on the bridge. */
  readonly gateway: string;
  private readonly prefix: string;
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;
  private lossTable = false;
  private readonly onExit = () => this.destroySync();

  constructor() {
    sweepStale();
    mkdirSync(MARKS, { recursive: true });
    writeFileSync(`${MARKS}/${this.id}`, String(process.pid));
    process.once('exit', this.onExit);
    // A subnet no interface here uses yet.
    const used = run(['ip', '-o', '-4', 'addr']);
    let third: number;
    do third = Math.floor(Math.random() * 250) + 1;
    while (used.includes(`10.211.${third}.`));
    this.prefix = `10.211.${third}`;
    this.gateway = `${this.prefix}.1`;
    const br = `cf${this.id}br`;
    run(['ip', 'link', 'add', br, 'type', 'bridge']);
    run(['ip', 'addr', 'add', `${this.gateway}/24`, 'dev', br]);
    run(['ip', 'link', 'set', br, 'up']);
  }

  /** A new host on the bridge, with loopback up and an empty fault table. */
  addHost(name: string): Host {
    const i = this.hosts.size + 2;
    const ns = `cf${this.id}-${name}`;
    const outer = `cf${this.id}h${i}`;
    const inner = `cf${this.id}v${i}`;
    const address = `${this.prefix}.${i}`;
    run(['ip', 'netns', 'add', ns]);
    run(['ip', 'link', 'add', outer, 'type', 'veth', 'peer', 'name', inner]);
    run(['ip', 'link', 'set', inner, 'netns', ns]);
    run(['ip', 'link', 'set', outer, 'master', `cf${this.id}br`]);
    run(['ip', 'link', 'set', outer, 'up']);
    run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    run(['ip', '-n', ns, 'addr', 'add', `${address}/24`, 'dev', inner]);
    run(['ip', '-n', ns, 'link', 'set', inner, 'up']);
    run(['ip', 'netns', 'exec', ns, 'nft', '-f', '-'], FAULT_TABLE);
    const host = { name, ns, address };
    this.hosts.set(name, host);
    return host;
  }

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name}`);
    return h;
  }

  /** Starts a program inside a host's namespace; it is killed by destroy(). */
  spawn(host: string, command: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.host(host).ns, command, ...args], opts);
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /**
   * Cuts the traffic between two hosts: `both`, or only packets from `a` to
   * `b` (`a->b`: `b` still sends, but nothing of `a` arrives there).
   */
  partition(a: string, b: string, direction: 'both' | 'a->b' = 'both'): void {
    const hb = this.host(b);
    this.rule(a, 'out', `ip daddr ${hb.address} drop`);
    if (direction === 'both') this.rule(a, 'in', `ip saddr ${hb.address} drop`);
  }

  /**
   * Drops `percent` of the packets between two hosts, each way, at random,
   * on the bridge between them: a lossy link. Rules add up (one per pair
   * and direction), so a host may have lossy links to some hosts and clean
   * ones to others. `percent` is kept to a tenth of a percent.
   */
  lossBetween(a: string, b: string, percent: number): void {
    const perMille = Math.round(percent * 10);
    if (!(perMille > 0 && perMille <= 1000)) throw new Error(`loss of ${percent} % is out of 0.1 – 100 %`);
    const table = `cf${this.id}loss`;
    if (!this.lossTable) {
      // Bridge family: it sees the frames the bridge forwards between the veths, with no br_netfilter needed.
      run(['nft', '-f', '-'], `table bridge ${table} {
  chain transit { type filter hook forward priority 0; policy accept; }
}
`);
      this.lossTable = true;
    }
    const [ha, hb] = [this.host(a).address, this.host(b).address];
    for (const [from, to] of [[ha, hb], [hb, ha]]) {
      run(['nft', `add rule bridge ${table} transit ip saddr ${from} ip daddr ${to} numgen random mod 1000 < ${perMille} counter drop`]);
    }
  }

  /** Packets the lossy links (lossBetween) dropped so far. */
  lostPackets(): number {
    if (!this.lossTable) return 0;
    const listing = run(['nft', 'list', 'table', 'bridge', `cf${this.id}loss`]);
    let n = 0;
    for (const m of listing.matchAll(/counter packets (\d+)/g)) n += Number(m[1]);
    return n;
  }

  /**
   * Refuses every connection opened towards the host from outside (it can
   * still dial out), but the test's own: the admin sits inside the wall.
   */
  firewall(host: string): void {
    this.rule(host, 'in', `iifname != "lo" ip saddr != ${this.gateway} ct state new drop`);
  }

  /** Removes every fault of a host. */
  heal(host: string): void {
    for (const chain of ['in', 'out']) run(['ip', 'netns', 'exec', this.host(host).ns, 'nft', 'flush', 'chain', 'inet', 'cpcfault', chain]);
  }

  healAll(): void {
    for (const name of this.hosts.keys()) this.heal(name);
  }

  private rule(host: string, chain: 'in' | 'out', rule: string): void {
    run(['ip', 'netns', 'exec', this.host(host).ns, 'nft', `add rule inet cpcfault ${chain} ${rule}`]);
  }

  /** Kills what runs in the hosts and removes hosts, links and the bridge. */
  async destroy(): Promise<void> {
    const exits = [...this.children].map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('exit', r))));
    for (const c of this.children) c.kill('SIGKILL');
    await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, 5000))]);
    this.destroySync();
  }

  private destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.removeListener('exit', this.onExit);
    for (const c of this.children) c.kill('SIGKILL');
    removeById(this.id);
  }
}

const FAULT_TABLE = `table inet cpcfault {
  chain in { type filter hook input priority 0; policy accept; }
  chain out { type filter hook output priority 0; policy accept; }
}
`;
