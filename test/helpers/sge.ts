/**
 * A real one-node Grid Engine cell for the pilot tests, private to one test
 * run: Debian's gridengine-master, -exec and -client (installed when missing),
 * a cell of its own (`cpctest-<random>` under /var/lib/gridengine, a link to a
 * temporary folder holding its settings and spools), sge_qmaster and sge_execd
 * on free ports, a queue with a slot per CPU and a parallel environment.
 * `stop()` deletes what is left in the queue, shuts both daemons down, ends
 * any process of a batch job of this cell (they carry its SGE_CELL in their
 * environment) and removes the cell.
 *
 * What Grid Engine needs to run in a container, found out by hand:
 *  - this machine's name must resolve to the same name both ways; where it
 *    resolves to 127.0.0.1, whose first name is "localhost", commlib refuses
 *    every client ("client IP resolved to host name localhost. This is not
 *    identical to clients host name ..."); the cell's host_aliases file
 *    makes the two one host;
 *  - min_uid/min_gid must allow root (the tests submit as root), and be set
 *    before sge_execd starts, or its queue goes into error state;
 *  - the scheduler runs every 15 s by default; 1 s here, so pilots start in
 *    seconds, and accounting is written at once, so qacct knows a job as
 *    soon as qstat has dropped it.
 *
 * Grid Engine's daemons need root. Where they cannot be had, `startSge` says
 * why instead of starting anything, and the tests skip with that message (or
 * fail, under CPC_REQUIRE_SGE=1, as in CI).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import { cpus, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BatchDriver } from './batch-driver.js';
import { freePort, until } from './server.js';

export const SGE_ROOT = '/var/lib/gridengine';
export const QUEUE = 'cpc';
export const PE = 'smp';

export interface SgeCell {
  /** The environment Grid Engine's commands need for this cell (SGE_ROOT, SGE_CELL, ports). */
  env: Record<string, string>;
  dir: string;
  cell: string;
  queue: string;
  pe: string;
  /** Runs a Grid Engine command (qstat, qdel, qconf, …) against this cell. */
  run(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** The batch jobs qstat lists (queued or running): id, name, state (qw, r, hqw, …). */
  jobs(): Promise<{ id: string; name: string; state: string }[]>;
  stop(): Promise<void>;
}

export type SgeStart = { cell: SgeCell; skip?: undefined } | { cell?: undefined; skip: string };

const PACKAGES = ['gridengine-master', 'gridengine-exec', 'gridengine-client'];
const COMMANDS = ['qsub', 'qstat', 'qdel', 'qacct', 'qconf', 'sge_qmaster', 'sge_execd'];
const SBIN = '/usr/lib/gridengine';

function which(cmd: string): boolean {
  const path = (process.env.PATH ?? '') + `:/usr/sbin:/sbin:/usr/bin:${SBIN}`;
  return path.split(':').some((d) => d && existsSync(join(d, cmd)));
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000, cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env, cwd, timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr: stderr || (err && code !== 0 && !stderr ? err.message : '') });
    });
  });
}

/** Installs Grid Engine from Debian's packages without its questions (the cell is set up here, not by the package); null when done. */
async function install(): Promise<string | null> {
  if (!which('apt-get')) return `${PACKAGES.join(', ')} are not installed, and there is no apt-get to install them`;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const host = hostname();
  const answers = ['gridengine-common', 'gridengine-client']
    .flatMap((p) => [`${p} shared/gridenginemaster string ${host}`, `${p} shared/gridenginecell string default`, `${p} shared/gridengineconfig boolean true`])
    .join('\n');
  const preseed = join(tmpdir(), `cpc-sge-debconf-${process.pid}`);
  await fsp.writeFile(preseed, answers + '\n');
  await run('debconf-set-selections', [preseed], env);
  await fsp.rm(preseed, { force: true });
  let r = await run('apt-get', ['install', '-y', '-q', ...PACKAGES], env, 600_000);
  if (r.code !== 0) {
    // The package lists may be missing or stale.
    await run('apt-get', ['update', '-q'], env, 600_000);
    r = await run('apt-get', ['install', '-y', '-q', ...PACKAGES], env, 600_000);
  }
  if (r.code !== 0) return `apt-get install ${PACKAGES.join(' ')} failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`;
  const missing = COMMANDS.filter((c) => !which(c));
  return missing.length > 0 ? `after installing ${PACKAGES.join(', ')}, still missing: ${missing.join(', ')}` : null;
}

/** The names this machine goes by, its own first: Grid Engine is to take them all as one host. */
function hostNames(host: string): string[] {
  const names = new Set([host, host.split('.')[0]!, 'localhost']);
  try {
    for (const line of readFileSync('/etc/hosts', 'utf8').split('\n')) {
      const [addr, ...rest] = line.replace(/#.*/, '').trim().split(/\s+/);
      if (addr && (addr.startsWith('127.') || rest.includes(host))) for (const n of rest) names.add(n);
    }
  } catch {
    // no /etc/hosts: the names above will do
  }
  return [...names].filter(Boolean);
}

const bootstrap = (dir: string) => `# Version: 6.2
admin_user              root
default_domain          none
ignore_fqdn             false
spooling_method         berkeleydb
spooling_lib            libspoolb
spooling_params         ${join(dir, 'spooldb')}
binary_path             /usr/sbin
qmaster_spool_dir       ${join(dir, 'qmaster')}
security_mode           none
listener_threads        2
worker_threads          2
scheduler_threads       1
`;

/** Debian's default global configuration, with what this cell changes. */
async function globalConfiguration(dir: string): Promise<string> {
  const changes: Record<string, string> = {
    execd_spool_dir: join(dir, 'execd'),
    min_uid: '0',
    min_gid: '0',
    load_report_time: '00:00:05',
    // Kill every process of a deleted job, those in process groups of their own too (cpc-worker's jobs).
    execd_params: 'ENABLE_ADDGRP_KILL=TRUE',
    reporting_params: 'accounting=true reporting=false flush_time=00:00:01 accounting_flush_time=00:00:00 joblog=false sharelog=00:00:00',
  };
  const base = await fsp.readFile('/usr/share/gridengine/default-configuration', 'utf8');
  return base
    .split('\n')
    .map((line) => {
      const key = line.split(/\s+/)[0]!;
      return key in changes ? `${key} ${changes[key]}` : line;
    })
    .join('\n');
}

const parallelEnvironment = `pe_name            ${PE}
slots              9999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    $pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
`;

function queueConf(host: string, slots: number): string {
  const limits = ['s_rt', 'h_rt', 's_cpu', 'h_cpu', 's_fsize', 'h_fsize', 's_data', 'h_data', 's_stack', 'h_stack', 's_core', 'h_core', 's_rss', 'h_rss', 's_vmem', 'h_vmem'];
  return `qname                 ${QUEUE}
hostlist              ${host}
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH
ckpt_list             NONE
pe_list               ${PE}
rerun                 FALSE
slots                 ${slots}
tmpdir                /tmp
shell                 /bin/sh
prolog                NONE
epilog                NONE
shell_start_mode      posix_compliant
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
${limits.map((l) => `${l.padEnd(22)}INFINITY`).join('\n')}
`;
}

/** Starts a private one-node cell, or says why it cannot. */
export async function startSge(): Promise<SgeStart> {
  if (process.platform !== 'linux') return { skip: `Grid Engine tests need Linux, not ${process.platform}` };
  if (process.getuid?.() !== 0) return { skip: `Grid Engine's daemons need root to start; these tests run as uid ${process.getuid?.()}` };
  if (COMMANDS.some((c) => !which(c))) {
    const why = await install();
    if (why) return { skip: why };
  }

  const dir = await fsp.mkdtemp(join(tmpdir(), 'cpc-sge-'));
  await fsp.chmod(dir, 0o755);
  const cell = `cpctest-${randomBytes(4).toString('hex')}`;
  const cellDir = join(SGE_ROOT, cell);
  const host = hostname();
  const [qmasterPort, execdPort] = [await freePort(), await freePort()];
  const env = { SGE_ROOT, SGE_CELL: cell, SGE_QMASTER_PORT: String(qmasterPort), SGE_EXECD_PORT: String(execdPort) };
  const fullEnv = { ...process.env, ...env, PATH: `${process.env.PATH ?? '/usr/bin:/bin'}:${SBIN}` };
  const sge = (command: string, args: string[]) => run(command, args, fullEnv, 60_000, dir);

  const cellRun: SgeCell = {
    env,
    dir,
    cell,
    queue: QUEUE,
    pe: PE,
    run: sge,
    jobs: async () => {
      // The XML form: the plain one cuts names to 10 characters.
      const r = await sge('qstat', ['-xml', '-u', '*']);
      if (r.code !== 0) throw new Error(`qstat failed: ${r.stderr}`);
      const field = (block: string, tag: string) => new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(block)?.[1]?.trim() ?? '';
      return [...r.stdout.matchAll(/<job_list\b[^>]*>([\s\S]*?)<\/job_list>/g)].map((m) => ({
        id: field(m[1]!, 'JB_job_number'),
        name: field(m[1]!, 'JB_name'),
        state: field(m[1]!, 'state'),
      }));
    },
    stop: async () => {
      const left = await cellRun.jobs().catch(() => []);
      if (left.length > 0) {
        await sge('qdel', ['-f', ...left.map((j) => j.id)]);
        await until('the batch jobs to end', async () => (await cellRun.jobs()).length === 0, { timeoutMs: 20_000, intervalMs: 250 }).catch(() => {});
      }
      await sge('qconf', ['-ke', host]);
      await stopPid(join(dir, 'execd', host, 'execd.pid'), 10_000);
      // sge_qmaster takes ten seconds and more to shut down; its cell is thrown away, so it need not.
      await stopPid(join(dir, 'qmaster', 'qmaster.pid'), 1000);
      for (const pid of processesOf(cell)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      await fsp.rm(cellDir, { force: true });
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };

  try {
    for (const d of ['common', 'qmaster', 'qmaster/job_scripts', 'spooldb', 'execd']) await fsp.mkdir(join(dir, d), { recursive: true });
    // The cell lives in the temporary folder; SGE_ROOT only links to it.
    await fsp.symlink(dir, cellDir);
    await fsp.writeFile(join(dir, 'common', 'bootstrap'), bootstrap(dir));
    await fsp.writeFile(join(dir, 'common', 'act_qmaster'), host + '\n');
    await fsp.writeFile(join(dir, 'common', 'host_aliases'), hostNames(host).join(' ') + '\n');
    await fsp.writeFile(join(dir, 'global-configuration'), await globalConfiguration(dir));
    const steps: [string, string[]][] = [
      [join(SBIN, 'spoolinit'), ['berkeleydb', 'libspoolb', join(dir, 'spooldb'), 'init']],
      [join(SBIN, 'spooldefaults'), ['configuration', join(dir, 'global-configuration')]],
      [join(SBIN, 'spooldefaults'), ['complexes', '/usr/share/gridengine/util/resources/centry']],
      [join(SBIN, 'spooldefaults'), ['usersets', '/usr/share/gridengine/util/resources/usersets']],
      [join(SBIN, 'spooldefaults'), ['managers', 'root']],
    ];
    for (const [file, args] of steps) {
      const r = await sge(file, args);
      if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
    }
    // Both daemons put themselves in the background.
    let r = await sge('/usr/sbin/sge_qmaster', []);
    if (r.code !== 0) throw new Error(`sge_qmaster failed: ${r.stderr || r.stdout}`);
    await until('sge_qmaster to answer', async () => (await sge('qconf', ['-sh'])).code === 0, { timeoutMs: 30_000, intervalMs: 250 });
    const conf = async (flag: string, name: string, text: string) => {
      // qconf -A/-M take the object from a file (for configurations, named after it).
      const file = join(dir, name);
      await fsp.writeFile(file, text);
      const res = await sge('qconf', [flag, file]);
      if (res.code !== 0) throw new Error(`qconf ${flag} ${name} failed: ${res.stderr || res.stdout}`);
    };
    for (const [flag, name] of [['-as', host], ['-ah', host]] as const) await sge('qconf', [flag, name]);
    const sched = (await sge('qconf', ['-ssconf'])).stdout
      .replace(/^schedule_interval .*/m, 'schedule_interval 0:0:1')
      .replace(/^flush_submit_sec .*/m, 'flush_submit_sec 1')
      .replace(/^flush_finish_sec .*/m, 'flush_finish_sec 1');
    await conf('-Msconf', 'scheduler', sched);
    await conf('-Ap', 'pe', parallelEnvironment);
    r = await sge('/usr/sbin/sge_execd', []);
    if (r.code !== 0) throw new Error(`sge_execd failed: ${r.stderr || r.stdout}`);
    await until(
      'sge_execd to report its load',
      async () => {
        const q = await sge('qhost', ['-h', host]);
        const row = q.stdout.split('\n').find((l) => l.startsWith(host.split('.')[0]!));
        return q.code === 0 && row !== undefined && (row.split(/\s+/)[6] ?? '-') !== '-';
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    await conf('-Aq', 'queue', queueConf(host, cpus().length));
    await until(
      'the queue to take jobs',
      async () => {
        const q = await sge('qstat', ['-f', '-q', QUEUE]);
        const row = q.stdout.split('\n').find((l) => l.startsWith(`${QUEUE}@`));
        // The states column is empty when the queue instance is fine (not a: alarm, u: unknown, E: error, d: disabled).
        return row !== undefined && row.trim().split(/\s+/).length === 5;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    return { cell: cellRun };
  } catch (err) {
    const logs = [join(dir, 'qmaster', 'messages'), join(dir, 'execd', host, 'messages'), '/tmp/qmaster_messages', '/tmp/execd_messages']
      .filter(existsSync)
      .map((f) => `${f}:\n${readFileSync(f, 'utf8').split('\n').slice(-8).join('\n')}`)
      .join('\n');
    await cellRun.stop();
    return { skip: `Grid Engine did not start: ${(err as Error).message}\n${logs}` };
  }
}

/** Stops a daemon by its PID file: SIGTERM, then SIGKILL after `graceMs`. */
async function stopPid(pidFile: string, graceMs: number): Promise<void> {
  let pid: number;
  try {
    pid = Number((await fsp.readFile(pidFile, 'utf8')).trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 1) return;
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (alive()) process.kill(pid, 'SIGTERM');
  const gone = await until('the daemon to exit', () => !alive(), { timeoutMs: graceMs, intervalMs: 100 }).then(
    () => true,
    () => false,
  );
  if (!gone && alive()) process.kill(pid, 'SIGKILL');
}

/** Processes whose environment names this cell: sge_shepherd and the batch jobs it ran. */
function processesOf(cell: string): number[] {
  const mark = `SGE_CELL=${cell}\0`;
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/environ`, 'latin1').includes(mark)) pids.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

/** Grid Engine for the pilot conformance suite. */
export const sgeDriver: BatchDriver = {
  kind: 'sge',
  title: 'Grid Engine',
  requireVar: 'CPC_REQUIRE_SGE',
  start: async () => {
    const started = await startSge();
    if (!started.cell) return { skip: started.skip };
    const c = started.cell;
    return {
      cluster: {
        // Memory as mem_free: h_vmem would limit the address space, which Node.js reserves by the gigabyte.
        launcher: { kind: 'sge', partition: c.queue, env: c.env, parallelEnvironment: c.pe, memoryResource: 'mem_free', directives: ['-ac cpc={launcher}-{pilotId}'] },
        liveJobs: () => c.jobs(),
        kill: async (id) => {
          const r = await c.run('qdel', [id]);
          if (r.code !== 0) throw new Error(`qdel ${id} failed: ${r.stderr}`);
        },
        stop: () => c.stop(),
      },
    };
  },
  completedState: 'exit 0',
  killedState: /^(dr|signal 9)$/,
  holdDirective: '-h',
  unknownQueueError: /unknown queue/i,
  outputName: (id) => `sge-${id}.out`,
};
