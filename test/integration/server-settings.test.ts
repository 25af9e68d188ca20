/**
 * cpc-server's settings and logs as an administrator meets them, with real
 * processes: `config get` shows what the running server uses and where each
 * value came from (its flags and environment included), `config set` changes
 * what can change at once and says what waits for a restart, the banner and
 * the certificate carry the address clients are told to use, and the
 * server's and its worker's log lines share one form, JSON or pretty.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { ApiError } from '../../src/client/api/client.js';
import { ROOT, adminPasswordOf, cleanup, loginAdmin, spawnServer, tempDir, until, type CpccRun } from '../helpers/server.js';

after(cleanup);

const SERVER_JS = join(ROOT, 'dist', 'bin', 'cpc-server.js');

/** `cpc-server --home HOME …` with none of this shell's CPC_ settings: what it shows of a running server comes from that server. */
function cpcServer(home: string, args: string[]): Promise<CpccRun> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('CPC_') && k !== 'CPC_SCRYPT_LOG_N') delete env[k];
    const child = spawn(process.execPath, [SERVER_JS, '--home', home, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

interface Shown {
  value: unknown;
  source: string;
  live: boolean;
  env: string | null;
}

async function settingsOf(home: string): Promise<Record<string, Shown>> {
  const r = await cpcServer(home, ['config', 'get', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, Shown>;
}

describe('server settings', () => {
  it('config get shows the settings in force and their sources; config set applies live ones at once and names those needing a restart', async () => {
    const home = await tempDir('cpc-settings-');
    const before = await cpcServer(home, ['config', 'set', 'maxQueuedJobsPerUser', '1000']);
    assert.equal(before.code, 0, before.stderr);
    assert.match(before.stdout, /maxQueuedJobsPerUser = 1000 \(takes effect when the server starts\)/);
    assert.equal((await cpcServer(home, ['config', 'set', 'archiveAfterS', '2h'])).code, 0);
    assert.equal(JSON.parse(readFileSync(join(home, 'config.json'), 'utf8')).archiveAfterS, 7200);

    const sp = await spawnServer(home, { env: { CPC_LOG_LEVEL: 'warn' }, args: ['--name', 'lab-a', '--host', '0.0.0.0', '--public-host', '10.11.12.13'], timeoutMs: 90_000 });
    const shown = await settingsOf(home);
    assert.deepEqual(shown.name, { value: 'lab-a', source: 'command line', live: false, env: 'CPC_NAME' });
    assert.deepEqual(shown.logLevel, { value: 'warn', source: 'environment CPC_LOG_LEVEL', live: true, env: 'CPC_LOG_LEVEL' });
    assert.equal(shown.maxQueuedJobsPerUser!.source, 'config file');
    assert.equal(shown.archiveAfterS!.value, 7200);
    assert.equal(shown.publicHost!.value, '10.11.12.13');
    assert.equal(shown.tokenTtlS!.source, 'default');
    const table = await cpcServer(home, ['config', 'get']);
    assert.match(table.stdout, /^settings of the server running on /);
    assert.match(table.stdout, /^logLevel\s+"warn"\s+environment CPC_LOG_LEVEL$/m);
    assert.match(table.stdout, /^archiveAfterS\s+7200 \(2h\)\s+config file$/m);

    // The banner names the address clients use, the certificate carries it.
    assert.match(sp.stdout(), /cpc-server 'lab-a' is running/);
    assert.match(sp.stdout(), /address\s+https:\/\/10\.11\.12\.13:\d+/);
    assert.match(sp.stdout(), /cpcc add-server 10\.11\.12\.13 \d+/);
    const cert = new X509Certificate(readFileSync(join(home, 'identity', 'server.pem')));
    assert.match(cert.subjectAltName ?? '', /IP Address:10\.11\.12\.13/);

    const admin = await loginAdmin(sp.info.url, sp.caPem, adminPasswordOf(home));
    assert.equal((await admin.info()).name, 'lab-a');
    await admin.createProject('p');
    await admin.submit('p', [{ argv: ['true'] }, { argv: ['true'] }]);

    // A limit changes at once: the third unfinished job is one too many.
    const live = await cpcServer(home, ['config', 'set', 'maxQueuedJobsPerUser', '2']);
    assert.equal(live.code, 0, live.stderr);
    assert.match(live.stdout, /maxQueuedJobsPerUser = 2 \(applied now to the running server\)/);
    await assert.rejects(admin.submit('p', [{ argv: ['true'] }]), (err: unknown) => err instanceof ApiError && err.code === 'QUEUE_FULL');

    // So does who may read /metrics: closed to a caller without a token, then open.
    const scrape = async () => {
      const agent = new Agent({ connect: { ca: sp.caPem, rejectUnauthorized: false } });
      try {
        const res = await request(`${sp.info.url}/metrics`, { dispatcher: agent });
        await res.body.text();
        return res.statusCode;
      } finally {
        await agent.close();
      }
    };
    assert.equal(await scrape(), 401);
    assert.match((await cpcServer(home, ['config', 'set', 'metrics', 'open'])).stdout, /applied now/);
    assert.equal(await scrape(), 200);

    const level = await cpcServer(home, ['config', 'set', 'logLevel', 'debug']);
    assert.match(level.stdout, /logLevel = "debug" \(applied now to the running server\)/);
    assert.match(level.stdout, /from its environment CPC_LOG_LEVEL again/);
    assert.deepEqual((await settingsOf(home)).logLevel, { value: 'debug', source: 'config set', live: true, env: 'CPC_LOG_LEVEL' });

    const restart = await cpcServer(home, ['config', 'set', 'securePort', '1']);
    assert.equal(restart.code, 0);
    assert.match(restart.stdout, /securePort = 1 \(written; securePort needs a restart of the server to take effect\)/);
    assert.equal((await admin.info()).name, 'lab-a', 'still serving on its port');

    const wrong = await cpcServer(home, ['config', 'set', 'archiveAfterS', 'soonish']);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /archiveAfterS/);
    await admin.destroy();
    await sp.stop('SIGTERM');
  });
});

describe('log format', () => {
  const PRETTY = /^\d\d:\d\d:\d\d\.\d{3} (TRACE|DEBUG|INFO |WARN |ERROR) cpc-(server|worker) \S/;

  it('the server and its worker write the same JSON lines, each naming its program', async () => {
    const sp = await spawnServer(await tempDir('cpc-logs-json-'), { localWorker: true, timeoutMs: 90_000 });
    await until('the local worker to register', () => sp.logLines().some((l) => l.program === 'cpc-worker' && /registered as/.test(l.msg)), { timeoutMs: 90_000 });
    const lines = sp.stderr().split('\n').filter((l) => l !== '' && !l.startsWith('cpc-server: '));
    for (const line of lines) {
      const o = JSON.parse(line) as Record<string, unknown>;
      assert.ok(['cpc-server', 'cpc-worker'].includes(String(o.program)), line);
      assert.match(String(o.level), /^(trace|debug|info|warn|error)$/);
      assert.match(String(o.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(typeof o.msg, 'string');
    }
    assert.ok(lines.some((l) => l.includes('"program":"cpc-server"')));
    await sp.stop('SIGTERM');
  });

  it('with CPC_LOG_FORMAT=pretty (as on a terminal) both write the same readable lines', async () => {
    const sp = await spawnServer(await tempDir('cpc-logs-pretty-'), { localWorker: true, env: { CPC_LOG_FORMAT: 'pretty' }, timeoutMs: 90_000 });
    await until('the local worker to register', () => /INFO {2}cpc-worker registered as/.test(sp.stderr()), { timeoutMs: 90_000 });
    const lines = sp.stderr().split('\n').filter((l) => l !== '' && !l.startsWith('cpc-server: '));
    assert.ok(lines.length >= 3);
    for (const line of lines) assert.match(line, PRETTY);
    assert.ok(lines.some((l) => / cpc-server state loaded jobs=0/.test(l)), lines.join('\n'));
    await sp.stop('SIGTERM');
  });
});
