import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Usage } from '../core/types.js';

/**
 * What an attempt used: wall time, CPU (user and system), the peak resident
 * memory of its whole process tree, and bytes read and written where the host
 * counts them; and its memory limit enforced.
 *
 * Two ways, chosen once when the worker starts (and said in its log):
 *
 * - `cgroup-v1`: where the worker may create cgroups (the memory and cpuacct
 *   hierarchies of cgroup v1, as on these hosts), each attempt gets one of
 *   its own in each. The job's first process joins them before it execs the
 *   job (a short /bin/sh wrapper), so everything it forks is counted, sandboxed
 *   or not, and the kernel keeps the figures after the processes are gone:
 *   exact CPU and peak, nothing missed between samples. The memory limit is the
 *   cgroup's; the kernel's OOM killer enforces it, and the worker then ends the
 *   rest of the tree and reports `oom`.
 * - `proc`: otherwise, one scan of /proc every half second finds each
 *   attempt's tree from the host side (a sandbox's processes have host pids
 *   too, under the bwrap process the worker started) and sums resident memory
 *   and CPU (including the children each process has reaped). A tree past its
 *   memory limit is killed at the scan that sees it. CPU used after the last
 *   scan and by processes that leave the tree are missed.
 */

export type UsageMethodName = 'cgroup-v1' | 'proc';

export interface AttemptMeter {
  /** The command to spawn instead of `file args` (the cgroup wrapper), or the same. */
  wrap(file: string, args: string[]): [string, string[]];
  /** The job's first process is running. */
  started(pid: number): void;
  /** The figures so far (for heartbeats): the attempt still runs. */
  sample(): Usage;
  /** Called at most once when the tree goes past its memory limit. */
  onExceeded(f: () => void): void;
  /** After the tree is gone: the final figures, and whether the memory limit ended it. */
  finish(): Promise<{ usage: Usage; oom: boolean }>;
}

export interface UsageMethod {
  readonly name: UsageMethodName;
  /** In words, for the worker's start-up log. */
  readonly why: string;
  meter(opts: { limitMb: number; uid?: number }): AttemptMeter;
}

const MB = 1024 * 1024;

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The worker's own place in a v1 hierarchy, from /proc/self/cgroup (`4:memory:/a/b`). */
function ownCgroup(controller: string, root: string): string | undefined {
  const lines = readText('/proc/self/cgroup')?.split('\n') ?? [];
  for (const line of lines) {
    const [, names, path] = line.split(':');
    if (names === undefined || path === undefined) continue;
    if (names.split(',').includes(controller)) {
      const dir = join(root, controller, path);
      return existsSync(join(dir, 'cgroup.procs')) ? dir : undefined;
    }
  }
  return undefined;
}

let seq = 0;

class CgroupMeter implements AttemptMeter {
  private readonly dirs: string[] = [];
  private readonly mem: string;
  private readonly cpu: string;
  private readonly blkio?: string;
  private readonly startedAt = performance.now();
  private exceeded?: () => void;
  private oom = false;
  private timer?: NodeJS.Timeout;

  constructor(bases: { memory: string; cpuacct: string; blkio?: string }, limitMb: number, uid?: number) {
    const name = `cpc-${process.pid}-${++seq}`;
    this.mem = join(bases.memory, name);
    this.cpu = join(bases.cpuacct, name);
    if (bases.blkio) this.blkio = join(bases.blkio, name);
    for (const d of [this.mem, this.cpu, this.blkio]) {
      if (d === undefined) continue;
      mkdirSync(d);
      this.dirs.push(d);
      // Under a uid of its own, the job's wrapper moves itself in: the file must be its to write.
      if (uid !== undefined) chownSync(join(d, 'cgroup.procs'), uid, uid);
    }
    if (limitMb > 0) {
      writeFileSync(join(this.mem, 'memory.limit_in_bytes'), String(limitMb * MB));
      // Swap is not a way round the limit (absent when the kernel does not account swap).
      try {
        writeFileSync(join(this.mem, 'memory.memsw.limit_in_bytes'), String(limitMb * MB));
      } catch {
        // no swap accounting: the memory limit alone
      }
    }
  }

  wrap(file: string, args: string[]): [string, string[]] {
    const procs = this.dirs.map((d) => join(d, 'cgroup.procs'));
    const script = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"';
    return ['/bin/sh', ['-c', script, 'cpc-usage', String(procs.length), ...procs, file, ...args]];
  }

  started(): void {
    // The kernel enforces the limit; the worker only learns of a kill to end the rest of the tree.
    this.timer = setInterval(() => {
      if (!this.oom && this.oomKills() > 0) {
        this.oom = true;
        this.exceeded?.();
      }
    }, 250);
    this.timer.unref();
  }

  private oomKills(): number {
    const m = /oom_kill (\d+)/.exec(readText(join(this.mem, 'memory.oom_control')) ?? '');
    return m ? Number(m[1]) : 0;
  }

  private num(path: string): number {
    const n = Number((readText(path) ?? '').trim());
    return Number.isFinite(n) ? n : 0;
  }

  sample(): Usage {
    const usage: Usage = {
      wallS: round3((performance.now() - this.startedAt) / 1000),
      userS: round3(this.num(join(this.cpu, 'cpuacct.usage_user')) / 1e9),
      systemS: round3(this.num(join(this.cpu, 'cpuacct.usage_sys')) / 1e9),
      maxRssMb: round3(this.num(join(this.mem, 'memory.max_usage_in_bytes')) / MB),
    };
    if (this.blkio) {
      const text = readText(join(this.blkio, 'blkio.throttle.io_service_bytes')) ?? '';
      let read = 0;
      let write = 0;
      for (const line of text.split('\n')) {
        const [dev, op, n] = line.trim().split(/\s+/);
        if (dev === 'Total' || n === undefined) continue;
        if (op === 'Read') read += Number(n) || 0;
        else if (op === 'Write') write += Number(n) || 0;
      }
      usage.readBytes = read;
      usage.writeBytes = write;
    }
    return usage;
  }

  onExceeded(f: () => void): void {
    this.exceeded = f;
  }

  async finish(): Promise<{ usage: Usage; oom: boolean }> {
    clearInterval(this.timer);
    const usage = this.sample();
    const oom = this.oom || this.oomKills() > 0;
    // A cgroup is removed once its last process is gone (zombies awaiting a reaper included).
    for (const d of this.dirs) {
      for (let i = 0; i < 20; i++) {
        try {
          rmdirSync(d);
          break;
        } catch {
          await delay(50);
        }
      }
    }
    return { usage, oom };
  }
}

/** One process as a scan of /proc sees it. */
interface Proc {
  pid: number;
  ppid: number;
  start: string;
  /** Ticks, own and of reaped children. */
  user: number;
  system: number;
  rssPages: number;
}

const TICK = 100; // USER_HZ on Linux
const PAGE = 4096;

function scanProc(): Map<number, Proc> {
  const out = new Map<number, Proc>();
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const name of names) {
    if (name.charCodeAt(0) > 57) continue;
    const stat = readText(`/proc/${name}/stat`);
    if (stat === undefined) continue;
    // pid (comm) state ppid ... ; comm may hold spaces and parentheses.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Zombies count too: their CPU is not yet in their parent's reaped-children figures.
    out.set(Number(name), {
      pid: Number(name),
      ppid: Number(f[1]),
      start: f[19] ?? '',
      user: Number(f[11]) + Number(f[13]),
      system: Number(f[12]) + Number(f[14]),
      rssPages: Number(f[21]),
    });
  }
  return out;
}

/** The proc method's meters share one scan of /proc each half second. */
class ProcScanner {
  readonly meters = new Set<ProcMeter>();
  private timer?: NodeJS.Timeout;

  add(m: ProcMeter): void {
    this.meters.add(m);
    if (!this.timer) {
      this.timer = setInterval(() => this.scan(), 500);
      this.timer.unref();
    }
  }

  remove(m: ProcMeter): void {
    this.meters.delete(m);
    if (this.meters.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  scan(): void {
    const procs = scanProc();
    const children = new Map<number, number[]>();
    for (const p of procs.values()) {
      const list = children.get(p.ppid);
      if (list) list.push(p.pid);
      else children.set(p.ppid, [p.pid]);
    }
    for (const m of this.meters) m.observe(procs, children);
  }
}

class ProcMeter implements AttemptMeter {
  private leader?: number;
  private readonly startedAt = performance.now();
  private user = 0;
  private system = 0;
  private peak = 0;
  private exceeded?: () => void;
  private oom = false;

  constructor(
    private readonly scanner: ProcScanner,
    private readonly limitMb: number,
  ) {}

  wrap(file: string, args: string[]): [string, string[]] {
    return [file, args];
  }

  started(pid: number): void {
    this.leader = pid;
    this.scanner.add(this);
  }

  observe(procs: Map<number, Proc>, children: Map<number, number[]>): void {
    if (this.leader === undefined || !procs.has(this.leader)) return;
    let rss = 0;
    let user = 0;
    let system = 0;
    const stack = [this.leader];
    while (stack.length > 0) {
      const p = procs.get(stack.pop()!)!;
      rss += p.rssPages;
      // Each live process's figures hold what its reaped children used, so the sum never counts one twice.
      user += p.user;
      system += p.system;
      for (const c of children.get(p.pid) ?? []) stack.push(c);
    }
    this.user = Math.max(this.user, user);
    this.system = Math.max(this.system, system);
    const mb = (rss * PAGE) / MB;
    this.peak = Math.max(this.peak, mb);
    if (this.limitMb > 0 && mb > this.limitMb && !this.oom) {
      this.oom = true;
      this.exceeded?.();
    }
  }

  sample(): Usage {
    return {
      wallS: round3((performance.now() - this.startedAt) / 1000),
      userS: round3(this.user / TICK),
      systemS: round3(this.system / TICK),
      maxRssMb: round3(this.peak),
    };
  }

  onExceeded(f: () => void): void {
    this.exceeded = f;
  }

  async finish(): Promise<{ usage: Usage; oom: boolean }> {
    this.scanner.remove(this);
    return { usage: this.sample(), oom: this.oom };
  }
}

/** Empty cgroups a worker that died left (its pid gone); one still holding processes cannot be removed, and stays. */
function removeLeftCgroups(base: string): void {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^cpc-(\d+)-\d+$/.exec(name);
    if (!m || Number(m[1]) === process.pid || existsSync(`/proc/${m[1]}`)) continue;
    try {
      rmdirSync(join(base, name));
    } catch {
      // processes still in it: the reaper or the next start deals with them
    }
  }
}

/**
 * How this worker measures: cgroups when it may create them in its own
 * memory and cpuacct hierarchies (a probe creates and removes one), else /proc.
 * `want` forces one (`cpc-worker --usage`); a cgroup method that cannot work is an error.
 */
export function detectUsageMethod(want?: UsageMethodName, root = '/sys/fs/cgroup'): UsageMethod | string {
  if (want !== 'proc') {
    const memory = ownCgroup('memory', root);
    const cpuacct = ownCgroup('cpuacct', root);
    const blkio = ownCgroup('blkio', root);
    let failed: string | undefined;
    if (!memory || !cpuacct) failed = 'no cgroup v1 memory and cpuacct hierarchies';
    else {
      const probe = join(memory, `cpc-probe-${process.pid}`);
      try {
        mkdirSync(probe);
        rmdirSync(probe);
      } catch (e) {
        failed = `cannot create cgroups: ${(e as Error).message}`;
      }
    }
    if (!failed) {
      const bases = { memory: memory!, cpuacct: cpuacct!, ...(blkio ? { blkio } : {}) };
      for (const base of Object.values(bases)) removeLeftCgroups(base);
      return {
        name: 'cgroup-v1',
        why: `a cgroup per attempt under ${memory} and ${cpuacct}${blkio ? ` (and ${blkio})` : ''}`,
        meter: ({ limitMb, uid }) => new CgroupMeter(bases, limitMb, uid),
      };
    }
    if (want === 'cgroup-v1') return failed!;
  }
  const scanner = new ProcScanner();
  return {
    name: 'proc',
    why: 'sampling /proc for each attempt\'s process tree every 0.5 s',
    meter: ({ limitMb }) => new ProcMeter(scanner, limitMb),
  };
}
