/**
 * Pilots without a batch system: the demand arithmetic, directive templates,
 * the launcher settings, the Slurm and Grid Engine launchers against stand-in
 * commands (the real systems are in test/integration/pilots.test.ts), and the
 * manager's policy against a launcher and a server that are plain objects.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { resolveConfig } from '../../src/server/start/config.js';
import { silentLogger } from '../../src/common/logger.js';
import { launcherSchema, type LauncherConfig } from '../../src/server/pilots/config.js';
import { pilotDemand } from '../../src/server/pilots/demand.js';
import { LauncherError, renderTemplate, unknownPlaceholders, type BatchStatus, type Launcher, type PilotRequest } from '../../src/server/pilots/launcher.js';
import { PilotManager, type HostWorker, type PilotHost } from '../../src/server/pilots/pilot-manager.js';
import { SlurmLauncher } from '../../src/server/pilots/slurm.js';
import { SgeLauncher } from '../../src/server/pilots/sge.js';

const dirs: string[] = [];
function temp(): string {
  const d = mkdtempSync(join(tmpdir(), 'cpc-pilots-unit-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const one = { cores: 1, memoryMb: 100 };

describe('pilot demand', () => {
  it('asks for nothing when nothing is queued', () => {
    assert.deepEqual(pilotDemand([], [], [], { cores: 2, memoryMb: 1000 }, 10), { waiting: 0, pilots: 0, tooLarge: 0 });
  });

  it('packs waiting jobs into pilots, up to the limit', () => {
    const d = pilotDemand([{ resources: one, count: 50 }], [], [], { cores: 4, memoryMb: 1000 }, 100);
    assert.deepEqual(d, { waiting: 50, pilots: 13, tooLarge: 0 });
    assert.equal(pilotDemand([{ resources: one, count: 50 }], [], [], { cores: 4, memoryMb: 1000 }, 3).pilots, 3);
    // Memory can be what limits a pilot: 1000 MB holds ten 100 MB jobs.
    assert.equal(pilotDemand([{ resources: one, count: 50 }], [], [], { cores: 64, memoryMb: 1000 }, 100).pilots, 5);
  });

  it('counts the free room of connected workers and of pilots on their way', () => {
    const shapes = [{ resources: one, count: 10 }];
    assert.equal(pilotDemand(shapes, [{ cores: 8, memoryMb: 8000 }], [], { cores: 1, memoryMb: 100 }, 100).pilots, 2);
    assert.equal(pilotDemand(shapes, [{ cores: 8, memoryMb: 8000 }], [{ cores: 2, memoryMb: 200 }], { cores: 1, memoryMb: 100 }, 100).pilots, 0);
    // A busy worker has no room: its jobs do not count against the demand.
    assert.equal(pilotDemand(shapes, [{ cores: 0, memoryMb: 8000 }], [], { cores: 1, memoryMb: 100 }, 100).pilots, 10);
  });

  it('does not ask for pilots that are too small for the jobs', () => {
    const d = pilotDemand([{ resources: { cores: 8, memoryMb: 10 }, count: 3 }, { resources: one, count: 2 }], [], [], { cores: 2, memoryMb: 1000 }, 100);
    assert.deepEqual(d, { waiting: 5, pilots: 1, tooLarge: 3 });
  });
});

describe('directive templates and launcher settings', () => {
  it('fills placeholders and names the unknown ones', () => {
    assert.equal(renderTemplate('--constraint={partition}-x --mem={memoryGb}G', { partition: 'p1', memoryGb: 2 }), '--constraint=p1-x --mem=2G');
    assert.deepEqual(unknownPlaceholders('--x={cores} {bogus}'), ['bogus']);
  });

  it('fills in defaults', () => {
    const c = launcherSchema.parse({ name: 'hpc', kind: 'slurm', maxPilots: 4 });
    assert.equal(c.cores, 1);
    assert.equal(c.idleExitS, 300);
    assert.deepEqual(c.directives, []);
  });

  it('refuses bad launchers with the setting named', () => {
    const home = temp();
    const bad = (launchers: unknown, match: RegExp) => {
      writeFileSync(join(home, 'config.json'), JSON.stringify({ launchers }));
      assert.throws(() => resolveConfig(home, {}, {}), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'INVALID_FIELD');
        assert.match(err.message, match);
        return true;
      });
    };
    bad([{ name: 'a', kind: 'slurm', maxPilots: 1, directives: ['--x\necho pwned'] }], /launchers\.0\.directives\.0.*one line/);
    bad([{ name: 'a', kind: 'slurm', maxPilots: 1, directives: ['--x={nope}'] }], /launchers\.0\.directives\.0.*placeholders/);
    bad([{ name: 'a', kind: 'slurm', maxPilots: 1, partition: 'a b' }], /launchers\.0\.partition/);
    bad([{ name: 'a', kind: 'lsf', maxPilots: 1 }], /launchers\.0\.kind/);
    // Kinds without a launcher are refused when the settings are read, with the kinds there are.
    for (const kind of ['htcondor', 'pbs']) {
      bad([{ name: 'a', kind: 'slurm', maxPilots: 1 }, { name: 'b', kind, maxPilots: 1 }], new RegExp(`^setting 'launchers\\.1\\.kind': "${kind}" is not supported; supported: slurm, sge$`));
    }
    bad([{ name: 'a', maxPilots: 1 }], /^setting 'launchers\.0\.kind': is required; supported: slurm, sge$/);
    bad([{ name: 'a', kind: 'slurm' }], /launchers\.0\.maxPilots/);
    bad([{ name: 'a', kind: 'slurm', maxPilots: 1 }, { name: 'a', kind: 'sge', maxPilots: 1 }], /launchers\.1\.name.*twice/);
    bad([{ name: 'a', kind: 'sge', maxPilots: 1, cores: 4 }], /launchers\.0\.parallelEnvironment': is needed for pilots of 4 cores/);
    bad([{ name: 'a', kind: 'slurm', maxPilots: 1, memoryResource: 'h_vmem' }], /launchers\.0\.memoryResource': is a Grid Engine setting/);
    writeFileSync(join(home, 'config.json'), JSON.stringify({ launchers: [{ name: 'g', kind: 'sge', maxPilots: 2, cores: 4, parallelEnvironment: 'smp', memoryResource: 'h_vmem' }] }));
    assert.equal(resolveConfig(home, {}, {}).launchers[0]!.parallelEnvironment, 'smp');
    writeFileSync(join(home, 'config.json'), JSON.stringify({ launchers: [{ name: 'a', kind: 'slurm', maxPilots: 2, partition: 'debug' }] }));
    assert.equal(resolveConfig(home, {}, {}).launchers[0]!.partition, 'debug');
  });
});

/** Stand-ins for sbatch, squeue and scancel: shell scripts that answer as the real ones do. */
function fakeSlurm(scripts: Record<string, string>): string {
  const dir = temp();
  for (const [name, body] of Object.entries(scripts)) {
    writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  }
  return dir;
}

function request(dir: string): PilotRequest {
  return { jobName: 'cpc-pilot', cores: 2, memoryMb: 512, wallTimeS: 90, partition: 'debug', directives: ['--qos=low'], commands: ['exec true'], dir };
}

describe('the Slurm launcher (stand-in commands)', () => {
  it('submits with the pilot’s settings and reads the job id', async () => {
    const bin = fakeSlurm({ sbatch: `echo "$@" > "$(dirname "$0")/args"; echo "4242;cluster"` });
    const dir = temp();
    const id = await new SlurmLauncher({ binDir: bin }).submit(request(dir));
    assert.equal(id, '4242');
    const args = readFileSync(join(bin, 'args'), 'utf8');
    for (const a of ['--parsable', '--cpus-per-task=2', '--mem=512M', '--time=2', '--partition=debug', '--job-name=cpc-pilot']) assert.ok(args.includes(a), args);
    const script = readFileSync(join(dir, 'pilot.sbatch'), 'utf8');
    assert.match(script, /^#!\/bin\/sh\n#SBATCH --qos=low\nexec true\n$/);
    assert.equal(statSync(join(dir, 'pilot.sbatch')).mode & 0o777, 0o700);
  });

  it('tells a refusal from an unreachable controller and from missing commands', async () => {
    const refused = fakeSlurm({ sbatch: 'echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2; exit 1' });
    await assert.rejects(new SlurmLauncher({ binDir: refused }).submit(request(temp())), (err: LauncherError) => {
      assert.equal(err.failure, 'refused');
      assert.match(err.message, /Invalid partition name specified/);
      return true;
    });
    const down = fakeSlurm({ sbatch: 'echo "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)" >&2; exit 1' });
    await assert.rejects(new SlurmLauncher({ binDir: down }).submit(request(temp())), (err: LauncherError) => err.failure === 'unreachable');
    await assert.rejects(new SlurmLauncher({ binDir: temp() }).submit(request(temp())), (err: LauncherError) => err.failure === 'missing');
    const slow = fakeSlurm({ sbatch: 'sleep 5' });
    await assert.rejects(new SlurmLauncher({ binDir: slow, commandTimeoutMs: 200 }).submit(request(temp())), (err: LauncherError) => err.failure === 'unreachable');
  });

  it('reads job states from squeue, and an unknown job as absent', async () => {
    const bin = fakeSlurm({
      squeue: `case "$*" in *9*) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1;; esac
printf '1|PENDING|Priority\\n2|RUNNING|None\\n3|CANCELLED+|None\\n4|COMPLETED|None\\n5|NODE_FAIL|None\\n'`,
      sacct: 'echo "Slurm accounting storage is disabled" >&2; exit 1',
    });
    const slurm = new SlurmLauncher({ binDir: bin });
    const s = await slurm.status(['1', '2', '3', '4', '5', '6']);
    assert.deepEqual(Object.fromEntries([...s].map(([id, v]) => [id, v.phase])), { 1: 'queued', 2: 'running', 3: 'killed', 4: 'done', 5: 'failed' });
    assert.equal(s.get('1')!.reason, 'Priority');
    assert.equal(s.get('3')!.raw, 'CANCELLED');
    assert.equal((await slurm.status(['9'])).size, 0);
  });

  it('takes ended jobs from sacct when squeue has forgotten them', async () => {
    const bin = fakeSlurm({ squeue: 'exit 0', sacct: `echo "7|CANCELLED by 0"` });
    const s = await new SlurmLauncher({ binDir: bin }).status(['7']);
    assert.deepEqual(s.get('7'), { phase: 'killed', raw: 'CANCELLED' });
  });

});

describe('the Grid Engine launcher (stand-in commands)', () => {
  it('submits cores as parallel environment slots, memory per slot, wall time as h_rt, and reads the job id', async () => {
    const bin = fakeSlurm({ qsub: `echo "$@" > "$(dirname "$0")/args"; echo 4242` });
    const dir = temp();
    const sge = new SgeLauncher({ binDir: bin, parallelEnvironment: 'smp', memoryResource: 'h_vmem' });
    const id = await sge.submit({ ...request(dir), account: 'chem', directives: ['-l arch=lx-amd64'] });
    assert.equal(id, '4242');
    const args = readFileSync(join(bin, 'args'), 'utf8');
    for (const a of ['-terse', '-N cpc-pilot', '-pe smp 2', '-l h_vmem=256M', '-l h_rt=90', '-q debug', '-P chem', '-r n', `-o ${join(dir, 'sge-$JOB_ID.out')}`]) assert.ok(args.includes(a), args);
    const script = readFileSync(join(dir, 'pilot.sge'), 'utf8');
    assert.match(script, /^#!\/bin\/sh\n#\$ -l arch=lx-amd64\nexec true\n$/);
    assert.equal(sge.outputName('4242'), 'sge-4242.out');
    // More than one core needs a parallel environment: refused before qsub runs.
    await assert.rejects(new SgeLauncher({ binDir: bin }).submit(request(temp())), (err: LauncherError) => err.failure === 'refused' && /parallel environment/.test(err.message));
  });

  it('tells a refusal from an unreachable qmaster and from missing commands', async () => {
    const refused = fakeSlurm({ qsub: `echo 'Unable to run job: Job was rejected because job requests unknown queue "nosuch".' >&2; echo 'Exiting.' >&2; exit 1` });
    await assert.rejects(new SgeLauncher({ binDir: refused }).submit({ ...request(temp()), cores: 1 }), (err: LauncherError) => {
      assert.equal(err.failure, 'refused');
      assert.match(err.message, /unknown queue "nosuch"/);
      return true;
    });
    const down = fakeSlurm({ qstat: `echo 'error: commlib error: got select error (Connection refused)' >&2; echo 'unable to send message to qmaster using port 6444 on host "vm": got send error' >&2; exit 1` });
    await assert.rejects(new SgeLauncher({ binDir: down }).status(['1']), (err: LauncherError) => err.failure === 'unreachable');
    await assert.rejects(new SgeLauncher({ binDir: temp() }).submit({ ...request(temp()), cores: 1 }), (err: LauncherError) => err.failure === 'missing');
    const slow = fakeSlurm({ qsub: 'sleep 5' });
    await assert.rejects(new SgeLauncher({ binDir: slow, commandTimeoutMs: 200 }).submit({ ...request(temp()), cores: 1 }), (err: LauncherError) => err.failure === 'unreachable');
  });

  it('reads states from qstat -xml, ended jobs from qacct, and waits a while for qacct to know a job', async () => {
    const job = (id: number, state: string) => `<job_list state="x"><JB_job_number>${id}</JB_job_number><JB_name>p</JB_name><state>${state}</state></job_list>`;
    const acct = (failed: string, exit: number) => `==============================================================\nqname cpc\njobnumber 0\nfailed       ${failed}\nexit_status  ${exit}\n`;
    const bin = fakeSlurm({
      qstat: `case "$1" in
-j) printf 'job_number:                 %s\\nerror reason    1:          12/02/2026 17:00:50 [0:27311]: gid of user root (0) less than minimum allowed in conf (1000)\\n' "$2";;
*) cat "$(dirname "$0")/qstat.xml";;
esac`,
      qacct: `case "$2" in
7) printf '${acct('11  : before job', 0)}${acct('0', 0)}';;
8) printf '${acct('100 : assumedly after job', 137)}';;
9) printf '${acct('0', 3)}';;
10) printf '${acct('26 : opening input/output file', 0)}';;
*) echo "error: job id $2 not found" >&2; exit 1;;
esac`,
    });
    const xml = (jobs: string) => writeFileSync(join(bin, 'qstat.xml'), `<?xml version='1.0'?><job_info><queue_info>${jobs}</queue_info><job_info></job_info></job_info>`);
    xml([job(1, 'qw'), job(2, 'r'), job(3, 'hqw'), job(4, 'Eqw'), job(5, 'dr'), job(6, 't')].join(''));
    const sge = new SgeLauncher({ binDir: bin, accountingWaitMs: 60_000 });
    const s = await sge.status(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11']);
    const phases = Object.fromEntries([...s].map(([id, v]) => [id, `${v.phase} ${v.raw}`]));
    assert.deepEqual(phases, {
      1: 'queued qw', 2: 'running r', 3: 'queued hqw', 4: 'failed Eqw', 5: 'killed dr', 6: 'running t',
      7: 'done exit 0', 8: 'killed signal 9', 9: 'failed exit 3', 10: 'failed failed 26',
    });
    assert.equal(s.get('3')!.reason, 'held');
    assert.equal(s.get('4')!.reason, 'gid of user root (0) less than minimum allowed in conf (1000)');
    assert.equal(s.get('10')!.reason, 'opening input/output file');
    // Job 2 leaves qstat before qacct has it: still as last seen, then gone once the wait is over.
    xml('');
    assert.equal((await sge.status(['2'])).get('2')?.raw, 'r');
    const impatient = new SgeLauncher({ binDir: bin, accountingWaitMs: 0 });
    xml(job(2, 'r'));
    await impatient.status(['2']);
    xml('');
    await new Promise((r) => setTimeout(r, 5));
    await impatient.status(['2']);
    await new Promise((r) => setTimeout(r, 5));
    assert.equal((await impatient.status(['2'])).size, 0);
  });

  it('cancels with qdel, and a job that is gone already is no error', async () => {
    const bin = fakeSlurm({ qdel: `case "$1" in 1) echo "root has registered the job 1 for deletion";; *) echo "denied: job \"$1\" does not exist" >&2; exit 1;; esac` });
    const sge = new SgeLauncher({ binDir: bin });
    await sge.cancel('1');
    await sge.cancel('2');
  });
});

// ---- the manager, against stand-ins -------------------------------------------------

class FakeLauncher implements Launcher {
  readonly kind = 'slurm' as const;
  jobs = new Map<string, BatchStatus>();
  submitted: PilotRequest[] = [];
  cancelled: string[] = [];
  refuse: string | null = null;
  private next = 100;

  submit(req: PilotRequest): Promise<string> {
    if (this.refuse) return Promise.reject(new LauncherError('refused', this.refuse));
    this.submitted.push(req);
    const id = String(this.next++);
    this.jobs.set(id, { phase: 'queued', raw: 'PENDING' });
    return Promise.resolve(id);
  }

  status(ids: readonly string[]): Promise<Map<string, BatchStatus>> {
    return Promise.resolve(new Map(ids.flatMap((id) => (this.jobs.has(id) ? [[id, this.jobs.get(id)!] as const] : []))));
  }

  cancel(id: string): Promise<void> {
    this.cancelled.push(id);
    this.jobs.set(id, { phase: 'killed', raw: 'CANCELLED' });
    return Promise.resolve();
  }

  outputName(id: string): string {
    return `slurm-${id}.out`;
  }
}

function fakeHost(launcher: FakeLauncher, over: Partial<LauncherConfig> = {}, more: { config: Partial<LauncherConfig>; launcher: FakeLauncher }[] = []) {
  const state = {
    shapes: [] as { resources: { cores: number; memoryMb: number }; count: number }[],
    workers: [] as HostWorker[],
    tokens: new Map<string, { name: string; expiresAt: number; revoked: boolean }>(),
    removed: [] as { id: string; reason: string }[],
    forgotten: [] as string[],
    errors: [] as { msg: string; fields?: Record<string, unknown> }[],
  };
  const config = launcherSchema.parse({ name: 'hpc', kind: 'slurm', maxPilots: 3, cores: 1, memoryMb: 100, pollS: 1, ...over });
  const host: PilotHost = {
    home: temp(),
    launchers: [config, ...more.map((m) => launcherSchema.parse({ kind: 'slurm', maxPilots: 3, cores: 1, memoryMb: 100, pollS: 1, ...m.config }))],
    serverUrl: () => 'https://127.0.0.1:1',
    serverId: '00000000-0000-0000-0000-000000000000',
    caPem: '-----BEGIN CERTIFICATE-----\n',
    leaseMs: 2000,
    log: { ...silentLogger, error: (msg, fields) => state.errors.push({ msg, fields }) },
    queuedShapes: () => state.shapes,
    workers: () => state.workers,
    issueToken: (name, expiresAt) => {
      const tokenId = `t${state.tokens.size}`;
      state.tokens.set(tokenId, { name, expiresAt, revoked: false });
      return Promise.resolve({ token: `secret-${tokenId}`, tokenId });
    },
    revokeToken: (id) => {
      state.tokens.get(id)!.revoked = true;
      return Promise.resolve();
    },
    forgetTokens: (ids) => {
      for (const id of ids) {
        assert.equal(state.tokens.get(id)!.revoked, true, 'only revoked tokens are forgotten');
        state.tokens.delete(id);
        state.forgotten.push(id);
      }
      return Promise.resolve();
    },
    removeWorker: (id, reason) => {
      state.removed.push({ id, reason });
      state.workers = state.workers.filter((w) => w.id !== id);
      return Promise.resolve();
    },
    workerCommand: ['node', 'cpc-worker.js'],
    makeLauncher: (c) => more.find((m) => m.config.name === c.name)?.launcher ?? launcher,
  };
  return { host, state };
}

describe('the pilot manager (stand-in launcher and server)', () => {
  it('submits pilots while jobs wait, at most maxPilots, each with its own expiring token', async () => {
    const launcher = new FakeLauncher();
    const { host, state } = fakeHost(launcher);
    const m = await PilotManager.open(host);
    await m.tick(true);
    assert.equal(launcher.submitted.length, 0, 'no queue, no pilots');
    state.shapes = [{ resources: one, count: 50 }];
    await m.tick(true);
    assert.equal(launcher.submitted.length, 3);
    await m.tick(true);
    assert.equal(launcher.submitted.length, 3, 'still three live');
    const view = m.view();
    assert.deepEqual(view.pilots.map((p) => p.state), ['queued', 'queued', 'queued']);
    assert.equal(view.launchers[0]!.live, 3);
    const [first] = launcher.submitted;
    const script = first!.commands.join('\n');
    assert.match(script, /--idle-exit 300 --on-term abandon/);
    assert.doesNotMatch(script, /secret-/, 'the token is read from its file, not written in the script');
    const tokenFile = join(first!.dir, 'token');
    assert.match(readFileSync(tokenFile, 'utf8'), /^secret-t\d\n$/);
    assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
    for (const t of state.tokens.values()) {
      assert.ok(t.expiresAt > Date.now() + 3600_000 && t.expiresAt < Date.now() + (86400 + 3600 + 700) * 1000);
    }
  });

  it('follows pilots from queued to running, and ends them with their token and worker', async () => {
    const launcher = new FakeLauncher();
    const { host, state } = fakeHost(launcher, { maxPilots: 1 });
    const m = await PilotManager.open(host);
    state.shapes = [{ resources: one, count: 1 }];
    await m.tick(true);
    const batchId = m.view().pilots[0]!.batchId!;
    launcher.jobs.set(batchId, { phase: 'running', raw: 'RUNNING' });
    await m.tick(true);
    assert.equal(m.view().pilots[0]!.state, 'starting');
    state.workers.push({ id: 'w1', tokenId: 't0', free: { cores: 0, memoryMb: 0 }, registeredAt: Date.now(), lastSeen: Date.now() });
    await m.tick(true);
    assert.equal(m.view().pilots[0]!.state, 'running');
    assert.equal(m.view().pilots[0]!.workerId, 'w1');
    // Someone cancels it: the worker goes (and with it its attempts), the token is revoked.
    launcher.jobs.set(batchId, { phase: 'killed', raw: 'CANCELLED' });
    state.shapes = [];
    await m.tick(true);
    const p = m.view().pilots[0]!;
    assert.equal(p.state, 'cancelled');
    assert.match(p.lastError!, /CANCELLED/);
    assert.deepEqual(state.removed.map((r) => r.id), ['w1']);
    assert.equal(state.tokens.get('t0')!.revoked, true);
    assert.equal(existsSync(join(host.home, 'pilots', p.id, 'token')), false);
    assert.deepEqual(launcher.cancelled, [], 'the batch system ended it; nothing to cancel');
  });

  it('deletes a batch job that failed, since a batch system may keep it queued (Grid Engine’s error state)', async () => {
    const launcher = new FakeLauncher();
    const { host, state } = fakeHost(launcher, { maxPilots: 1 });
    const m = await PilotManager.open(host);
    state.shapes = [{ resources: one, count: 1 }];
    await m.tick(true);
    state.shapes = [];
    const batchId = m.view().pilots[0]!.batchId!;
    launcher.jobs.set(batchId, { phase: 'failed', raw: 'Eqw', reason: 'in error state' });
    await m.tick(true);
    const p = m.view().pilots[0]!;
    assert.equal(p.state, 'failed');
    assert.match(p.lastError!, /the batch job failed \(Eqw: in error state\)/);
    assert.deepEqual(launcher.cancelled, [batchId]);
  });

  it('gives up a pilot whose worker falls silent, and one that never registers', async () => {
    const launcher = new FakeLauncher();
    const { host, state } = fakeHost(launcher, { maxPilots: 2, startTimeoutS: 5 });
    const m = await PilotManager.open(host);
    state.shapes = [{ resources: one, count: 2 }];
    await m.tick(true);
    state.shapes = [];
    const [a, b] = m.view().pilots.map((p) => p.batchId!);
    launcher.jobs.set(a!, { phase: 'running', raw: 'RUNNING' });
    launcher.jobs.set(b!, { phase: 'running', raw: 'RUNNING' });
    const tokenOf = (batchId: string) => (m.view().pilots.find((p) => p.batchId === batchId)!.id);
    const tA = [...state.tokens].find(([, t]) => t.name.endsWith(tokenOf(a!)))![0];
    state.workers.push({ id: 'wa', tokenId: tA, free: one, registeredAt: Date.now(), lastSeen: Date.now() - 60_000 });
    await m.tick(true);
    await m.tick(true);
    const pa = m.view().pilots.find((p) => p.batchId === a)!;
    assert.equal(pa.state, 'lost');
    assert.match(pa.lastError!, /no heartbeat/);
    assert.ok(launcher.cancelled.includes(a!));
    assert.deepEqual(state.removed.map((r) => r.id), ['wa']);
    // The other has been running without a worker; after startTimeoutS it is given up.
    const rec = (m as unknown as { store: { update(id: string, p: object): Promise<unknown> } }).store;
    await rec.update(tokenOf(b!), { startedAt: Date.now() - 10_000 });
    await m.tick(true);
    const pb = m.view().pilots.find((p) => p.batchId === b)!;
    assert.equal(pb.state, 'failed');
    assert.match(pb.lastError!, /did not register within 5 s/);
    assert.ok(launcher.cancelled.includes(b!));
  });

  it('backs off after a refusal, folds repeats into one record, and recovers', async () => {
    const launcher = new FakeLauncher();
    const { host, state } = fakeHost(launcher);
    const m = await PilotManager.open(host);
    state.shapes = [{ resources: one, count: 5 }];
    launcher.refuse = 'sbatch: error: Batch job submission failed: Invalid partition name specified';
    await m.tick(true);
    let view = m.view();
    assert.equal(view.pilots.length, 1);
    assert.equal(view.pilots[0]!.state, 'failed');
    assert.equal(view.pilots[0]!.batchId, null);
    assert.match(view.pilots[0]!.lastError!, /Invalid partition/);
    assert.equal(view.launchers[0]!.failures, 1);
    const retryAt = view.launchers[0]!.retryAt!;
    assert.ok(retryAt >= Date.now() + 4000, 'waits at least 5 s');
    assert.equal(state.errors.length, 1);
    assert.match(String(state.errors[0]!.fields!.error), /Invalid partition/);
    assert.equal([...state.tokens.values()].filter((t) => !t.revoked).length, 0, 'the refused pilot’s token is revoked');
    // Within the back-off nothing is tried.
    await m.tick(true);
    assert.equal(state.errors.length, 1);
    // After it, the same refusal is folded, and the wait doubles.
    (m as unknown as { active: { retryAt: number }[] }).active[0]!.retryAt = 0;
    await m.tick(true);
    view = m.view();
    assert.equal(view.pilots.length, 1);
    assert.equal(view.pilots[0]!.failures, 2);
    assert.ok(view.launchers[0]!.retryAt! >= Date.now() + 9000);
    launcher.refuse = null;
    (m as unknown as { active: { retryAt: number }[] }).active[0]!.retryAt = 0;
    await m.tick(true);
    view = m.view();
    assert.equal(view.launchers[0]!.failures, 0);
    assert.equal(view.launchers[0]!.lastError, null);
    assert.equal(view.pilots.filter((p) => p.state === 'queued').length, 3);
  });

  it('shares the demand between launchers that are active at once', async () => {
    const first = new FakeLauncher();
    const second = new FakeLauncher();
    const { host, state } = fakeHost(first, { maxPilots: 2 }, [{ config: { name: 'other', maxPilots: 5 }, launcher: second }]);
    const m = await PilotManager.open(host);
    state.shapes = [{ resources: one, count: 3 }];
    await m.tick(true);
    assert.equal(first.submitted.length, 2);
    assert.equal(second.submitted.length, 1, 'the second sees the first one’s pilots on their way');
    await m.tick(true);
    assert.equal(first.submitted.length + second.submitted.length, 3, 'and nobody submits more while they come');
    // One launcher refusing leaves the other to carry the demand.
    first.refuse = 'sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified';
    state.shapes = [{ resources: one, count: 6 }];
    for (const j of [...first.jobs.keys()]) first.jobs.set(j, { phase: 'done', raw: 'COMPLETED' });
    await m.tick(true);
    const view = m.view();
    assert.equal(view.launchers[0]!.failures, 1);
    assert.equal(view.launchers[1]!.live, 5);
  });

  it('keeps a bounded history, and forgets the tokens of pilots that leave it', async () => {
    const launcher = new FakeLauncher();
    const { host, state } = fakeHost(launcher, { maxPilots: 60 });
    const m = await PilotManager.open(host);
    state.shapes = [{ resources: one, count: 55 }];
    await m.tick(true);
    assert.equal(launcher.submitted.length, 55);
    state.shapes = [];
    for (const id of launcher.jobs.keys()) launcher.jobs.set(id, { phase: 'done', raw: 'COMPLETED' });
    await m.tick(true);
    const view = m.view();
    assert.equal(view.pilots.length, 50);
    assert.ok(view.pilots.every((p) => p.state === 'ended'));
    assert.equal(state.forgotten.length, 5);
    assert.equal(state.tokens.size, 50);
  });

  it('picks up its pilots after a restart, and settles one caught mid-submission', async () => {
    const launcher = new FakeLauncher();
    const { host, state } = fakeHost(launcher, { maxPilots: 1 });
    const m1 = await PilotManager.open(host);
    state.shapes = [{ resources: one, count: 1 }];
    await m1.tick(true);
    await m1.stop();
    const store = (m1 as unknown as { store: { add(r: object): Promise<unknown> } }).store;
    await store.add({ ...m1.view().pilots[0]!, id: 'midway', batchId: null, tokenId: 't0', dir: join(host.home, 'x'), wallTimeS: 60, registeredAt: null });
    const m2 = await PilotManager.open(host);
    await m2.tick(true);
    const view = m2.view();
    assert.equal(view.pilots.find((p) => p.id === 'midway')!.state, 'failed');
    assert.equal(view.pilots.filter((p) => p.state === 'queued').length, 1, 'the submitted pilot is still followed');
    assert.equal(launcher.submitted.length, 1, 'and not submitted twice');
  });
});
