/**
 * cpcc as a user meets it day to day, the built binary against a real
 * server: refusals in the user's words (flags, job-file lines, settings,
 * never request paths), examples at the end of --help, shell completion
 * scripts that complete commands, options and the project's job ids, and
 * units wherever a size or a duration is taken.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CPCC, ROOT, cleanup, cpcc, cpccHome, spawnWorker, startTestServer, tempDir, until, type CpccRun, type TestServer } from '../helpers/server.js';

const SERVER_JS = join(ROOT, 'dist', 'bin', 'cpc-server.js');

function cpcServer(args: string[]): Promise<CpccRun> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('CPC_') && k !== 'CPC_SCRYPT_LOG_N') delete env[k];
    const child = spawn(process.execPath, [SERVER_JS, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The one line a refusal prints, without the `cpcc: ` in front. */
function refusal(run: CpccRun): string {
  const lines = run.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one line on stderr, got: ${run.stderr}`);
  assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
  return lines[0]!.replace(/^cpcc: /, '');
}

let ts: TestServer;
let home: string;
let dir: string;

before(async () => {
  ts = await startTestServer();
  home = await cpccHome(ts, 'ergo');
  await ts.admin.createProject('ergo');
  dir = await tempDir('cpc-ergo-');
});
after(cleanup);

describe('errors in the user’s words', () => {
  it('a bound of a flag is named by the flag, whether cpcc or the server checks it', async () => {
    const r = await cpcc(home, ['jobs', '--limit', '20000']);
    assert.ok(r.code === 1 || r.code === 2, `exit 1 or 2, got ${r.code}: ${r.stderr}`);
    assert.match(refusal(r), /^--limit must be at most 10000\b/);
    const p = await cpcc(home, ['submit', '--priority', '500', '--', 'true']);
    assert.equal(p.code, 2);
    assert.equal(refusal(p), '--priority must be at most 100');
  });

  it('a short password is refused as "password: at least 8 characters", nothing added', async () => {
    const r = await cpcc(home, ['add-user', 'shorty', '--password-stdin'], { input: 'short\n' });
    assert.equal(r.code, 1);
    assert.match(refusal(r), /^password: at least 8 characters\b/);
    assert.ok(!(await ts.admin.users()).users.some((u) => u.name === 'shorty'));
  });

  it('an unknown field of a job file is named with its line and the field meant', async () => {
    writeFileSync(join(dir, 'jobs.ndjson'), '{"argv":["true"]}\n{"argv":["true"],"memoryMb":"1G"}\n{"argv":["true"],"mem":4}\n');
    const r = await cpcc(home, ['submit', '--file', 'jobs.ndjson'], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(refusal(r), /^jobs\.ndjson line 3: unknown field "mem" \(did you mean "memoryMb"\?\)/);
    assert.equal((await ts.admin.jobs('ergo')).jobs.length, 0, 'nothing was submitted');
  });

  it('what only the server checks comes back by job and field, not by request path', async () => {
    writeFileSync(join(dir, 'big.json'), JSON.stringify([{ argv: ['true'] }, { argv: ['true'], cores: 100000 }]));
    const r = await cpcc(home, ['submit', '--file', join(dir, 'big.json')]);
    assert.equal(r.code, 1);
    const line = refusal(r);
    assert.match(line, /job 2: cores: must be at most 4096/);
    assert.doesNotMatch(line, /body\.|jobs\.\d/);
    const j = await cpcc(home, ['submit', '--json', '--file', join(dir, 'big.json')]);
    const err = JSON.parse(j.stderr) as { error: { code: string; message: string } };
    assert.equal(err.error.code, 'INVALID_FIELD');
    assert.match(err.error.message, /^job 2: cores: must be at most 4096/);
  });

  it('a file that is not a tar is "not a cpc project archive" for cpcc load, and no project is made', async () => {
    writeFileSync(join(dir, 'notes.txt'), 'these are notes, not a saved project\n'.repeat(40));
    const r = await cpcc(home, ['load', join(dir, 'notes.txt'), 'restored']);
    assert.equal(r.code, 1);
    assert.match(refusal(r), /not a cpc project archive/);
    assert.ok(!(await ts.admin.projects()).projects.some((p) => p.name === 'restored'));
  });

  it('a malformed id is a usage error (exit 2) before anything is sent', async () => {
    for (const args of [['job', 'not-an-id!'], ['logs', 'abc'], ['cancel', 'zzzzzzzzzz'], ['outputs', '12'], ['disconnect', 'nope'], ['node-pri', 'abc', '1']]) {
      const r = await cpcc(home, args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(refusal(r), /id/);
    }
  });

  it('cpc-server config set names an unknown setting and the one meant (exit 2)', async () => {
    const serverHome = await tempDir('cpc-ergo-server-');
    const r = await cpcServer(['--home', serverHome, 'config', 'set', 'logLevl', 'debug']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim(), "cpc-server: config set: unknown setting 'logLevl' (did you mean logLevel?)");
  });
});

describe('help examples and completion', () => {
  it('ends each --help with examples', async () => {
    for (const [command, first] of [['submit', 'cpcc submit -- ./simulate'], ['jobs', 'cpcc jobs'], ['completion', 'source <(cpcc completion bash)']] as const) {
      const r = await cpcc(home, [command, '--help']);
      assert.equal(r.code, 0);
      const tail = r.stdout.trimEnd().split('\n');
      const at = tail.lastIndexOf('Examples:');
      assert.ok(at > 0, `examples in ${command} --help:\n${r.stdout}`);
      const shown = tail.slice(at + 1);
      assert.ok(shown.length >= 1 && shown.length <= 3 && shown.every((l) => /^ {2}\$ /.test(l)), shown.join('\n'));
      assert.ok(shown[0]!.includes(first));
    }
    const viaHelp = await cpcc(home, ['help', 'logs']);
    assert.match(viaHelp.stdout, /Examples:\n {2}\$ cpcc logs /);
  });

  it('prints completion scripts for bash (valid), zsh and fish with commands and options', async () => {
    const bash = await cpcc(home, ['completion', 'bash']);
    assert.equal(bash.code, 0, bash.stderr);
    writeFileSync(join(dir, 'cpcc.bash'), bash.stdout);
    const check = spawnSync('bash', ['-n', join(dir, 'cpcc.bash')], { encoding: 'utf8' });
    assert.equal(check.status, 0, `bash -n: ${check.stderr}`);
    assert.match(bash.stdout, /complete -o default -F _cpcc cpcc/);
    assert.match(bash.stdout, /submit\) opts='[^']*--memory[^']*--file/);
    assert.match(bash.stdout, /cpcc completion --job-ids/);
    const zsh = await cpcc(home, ['completion', 'zsh']);
    assert.match(zsh.stdout, /^#compdef cpcc/);
    assert.match(zsh.stdout, /'submit:submit a job/);
    assert.match(zsh.stdout, /'--memory:memory the job needs/);
    const fish = await cpcc(home, ['completion', 'fish']);
    assert.match(fish.stdout, /complete -c cpcc -n __fish_use_subcommand -a 'submit'/);
    assert.match(fish.stdout, /complete -c cpcc -n '__fish_seen_subcommand_from submit' -l memory -r/);
    const bad = await cpcc(home, ['completion', 'tcsh']);
    assert.equal(bad.code, 2);
  });

  it('the bash script completes commands, options and the job ids of the current project', async () => {
    const submitted = await ts.admin.submit('ergo', [{ argv: ['true'] }, { argv: ['false'] }]);
    const ids = await cpcc(home, ['completion', '--job-ids'], { env: { CPCC_COMPLETION_TIMEOUT: '60s' } });
    assert.equal(ids.code, 0, ids.stderr);
    const listed = ids.stdout.trim().split('\n');
    for (const id of submitted.ids) assert.ok(listed.some((s) => id.startsWith(s) || id.endsWith(s)), `${id} among ${listed.join(' ')}`);

    // `cpcc` on the PATH, as the script calls it.
    const bin = join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'cpcc'), `#!/bin/sh\nexec "${process.execPath}" "${CPCC}" "$@"\n`);
    chmodSync(join(bin, 'cpcc'), 0o755);
    // Run apart from this process, whose event loop must stay free: the server answering the ids runs in it.
    const complete = async (words: string[]): Promise<string[]> => {
      const script = `source "${join(dir, 'cpcc.bash')}"; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _cpcc; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const r = await new Promise<CpccRun>((resolve, reject) => {
        // A loaded test machine may take longer than the 2 s a shell waits by default.
        const child = spawn('bash', ['-c', script], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, CPCC_HOME: home, NO_COLOR: '1', CPCC_COMPLETION_TIMEOUT: '60s' } });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
        child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim().split('\n');
    };
    assert.deepEqual(await complete(['cpcc', 'subm']), ['submit']);
    assert.ok((await complete(['cpcc', 'submit', '--mem'])).includes('--memory'));
    assert.ok((await complete(['cpcc', '-p', 'ergo', 'wa'])).includes('wait'));
    const offered = await complete(['cpcc', 'job', '']);
    for (const id of submitted.ids) assert.ok(offered.some((s) => s !== '' && (id.startsWith(s) || id.endsWith(s))), `${id} offered among ${offered.join(' ')}`);
  });

  it('job ids come to nothing at once when the server cannot be reached', async () => {
    const away = await tempDir('cpcc-away-');
    writeFileSync(join(away, 'config.json'), JSON.stringify({ current: 'gone', servers: { gone: { url: 'https://127.0.0.1:1', serverId: ts.server.serverId, caPem: ts.server.caPem, caFingerprint: ts.server.caFingerprint, token: 'x', project: 'p' } } }));
    const r = await cpcc(away, ['completion', '--job-ids']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, '');
  });
});

describe('units for sizes and durations', () => {
  it('cpc-worker --memory 2G offers 2048 MB, and --claim-wait takes 1m', async () => {
    const token = await ts.server.createWorkerToken('units');
    const w = spawnWorker({ url: ts.server.url, caFile: ts.caFile(), serverId: ts.server.serverId, token, name: 'with-units', workDir: join(dir, 'work'), args: ['--memory', '2G', '--claim-wait', '1m', '--idle-exit', '10m'] });
    const seen = await until('the worker to register', async () => (await ts.admin.workers()).workers.find((x) => x.name === 'with-units'), { timeoutMs: 60_000 });
    assert.equal(seen.resources.memoryMb, 2048);
    await w.stop('SIGTERM');
  });

  it('cpc-worker refuses a size it cannot read, as a usage error', async () => {
    const token = await ts.server.createWorkerToken('bad-units');
    const w = spawnWorker({ url: ts.server.url, caFile: ts.caFile(), serverId: ts.server.serverId, token, name: 'bad-units', workDir: join(dir, 'work2'), args: ['--memory', 'lots'] });
    const end = await w.stop('SIGCONT');
    assert.equal(end.code, 2);
    assert.match(w.stderr(), /--memory.*expected a size/);
  });
});
