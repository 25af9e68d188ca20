/**
 * Secrets at rest and in words: every file that holds a key, a password hash,
 * a token or a password is mode 0600 (its folder 0700 where it has its own);
 * no password, token or key ever shows up in a log line or an error message,
 * whatever the client sends.
 */
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { ApiError } from '../../src/client/api/client.js';
import { main as cpcc } from '../../src/client/cli.js';
import type { Io } from '../../src/client/commands/context.js';
import { API_PREFIX } from '../../src/core/wire.js';
import { IDENTITY_FILES } from '../../src/federation/identity.js';
import { main as cpcServer } from '../../src/server/start/cli.js';
import { cleanup, makeClient, startTestServer, tempDir, type TestServer } from '../helpers/server.js';

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8).padStart(4, '0');

describe('secrets', () => {
  let ts: TestServer;
  let clientHome: string;
  const lines: string[] = [];
  /** Everything secret this test makes or sends; none may be seen in a log line or an error. */
  const secrets: string[] = [];
  const errors: string[] = [];

  const cli = async (args: string[], input = ''): Promise<number> => {
    const sink = { write: (s: string) => void errors.push(s) };
    const io: Io = { stdout: { write: () => true }, stderr: sink, stdin: Readable.from([input]) as Io['stdin'], env: { CPCC_HOME: clientHome, NO_COLOR: '1' } };
    return cpcc(['node', 'cpcc', ...args], io);
  };
  const refusal = async (p: Promise<unknown>): Promise<void> => {
    await assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof ApiError);
      errors.push(e.message);
      return true;
    });
  };

  before(async () => {
    ts = await startTestServer({ logLevel: 'trace', log: (line: string) => void lines.push(line) });
    clientHome = await tempDir('cpcc-secrets-');
    secrets.push(ts.adminPassword, ts.admin.token!);
    const id = ts.server.identity;
    for (const pem of [id.keyPem, id.caKeyPem].filter((p): p is string => typeof p === 'string')) {
      // A key is recognised by any line of its body.
      secrets.push(...pem.split('\n').filter((l) => l.length > 40));
    }
  });
  after(cleanup);

  it('writes the keys, the users file, the peers file and the first password with mode 0600', async () => {
    // Make the server write the peers document and the config file.
    await ts.admin.connectServer('127.0.0.1', 1, 'AB'.repeat(32)).catch(() => {});
    assert.equal(await cpcServer(['node', 'cpc-server', '--home', ts.home, 'config', 'set', 'name', 'secretive']), 0);
    const home = ts.home;
    assert.equal(mode(join(home, 'identity')), '0700');
    assert.equal(mode(join(home, 'identity', IDENTITY_FILES.caKey)), '0600');
    assert.equal(mode(join(home, 'identity', IDENTITY_FILES.key)), '0600');
    assert.equal(mode(join(home, 'users.json')), '0600');
    assert.equal(existsSync(join(home, 'initial-admin-password')), false, 'the first password is gone once cpc-admin has logged in');
    assert.equal(mode(join(home, 'config.json')), '0600');
    await ts.admin.addUser('moded', 'moded-password');
    assert.equal(mode(join(home, 'users.json')), '0600', 'still 0600 after a rewrite');
    try {
      assert.equal(mode(join(home, 'peers.json')), '0600');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  });

  it("writes cpcc's config, which holds the token, with mode 0600 in a 0700 folder", async () => {
    const port = new URL(ts.server.unsecureUrl).port;
    assert.equal(await cli(['add-server', '127.0.0.1', port, '--yes', '--name', 's']), 0);
    assert.equal(await cli(['login', 'cpc-admin', '--password-stdin'], `${ts.adminPassword}\n`), 0);
    assert.equal(mode(clientHome), '0700');
    assert.equal(mode(join(clientHome, 'config.json')), '0600');
  });

  it('never puts a password, token or key in a log line or an error message', async () => {
    const anon = ts.anonymous();
    const wrong = 'Wrong-Pass-Marker-1234';
    const newPass = 'New-Pass-Marker-5678';
    const userPass = 'User-Pass-Marker-9012';
    secrets.push(wrong, newPass, userPass);

    // Logins, right and wrong; tokens issued and used.
    await refusal(anon.login('cpc-admin', wrong));
    await refusal(anon.login('nobody', wrong));
    await ts.admin.addUser('keeper', userPass);
    const keeper = makeClient(ts.server.url, ts.server.caPem);
    keeper.token = (await keeper.login('keeper', userPass)).token;
    secrets.push(keeper.token);
    const worker = await ts.admin.createWorkerToken('secret-worker');
    // The secret is base64url and may itself hold '_': take all that follows the id.
    secrets.push(worker.token, worker.token.slice('cpc_'.length + 16 + 1));
    await refusal(keeper.changePassword(wrong, newPass));
    await keeper.changePassword(userPass, newPass);
    await ts.admin.setPassword('keeper', `${newPass}-2`);
    secrets.push(`${newPass}-2`);

    // Secrets sent where they do not belong.
    await refusal(ts.admin.addUser('bad name', wrong));
    await refusal(ts.admin.call('POST', '/users', { name: 'x', password: 'short' }));
    await refusal(ts.admin.call('POST', '/login', { user: 'cpc-admin', password: wrong, extra: wrong }));
    await refusal(ts.admin.call('POST', '/projects', { name: wrong.repeat(10) }));
    await refusal(makeClient(ts.server.url, ts.server.caPem, `cpc_0123456789abcdef_${wrong}`).whoami());
    await refusal(makeClient(ts.server.url, ts.server.caPem, keeper.token!).whoami());
    const agent = new Agent({ connect: { ca: ts.server.caPem, checkServerIdentity: () => undefined } });
    for (const headers of [{ authorization: `Basic ${Buffer.from(`cpc-admin:${wrong}`).toString('base64')}` }, { authorization: `Bearer ${wrong} ${wrong}` }]) {
      const res = await request(`${ts.server.url}${API_PREFIX}/whoami`, { headers, dispatcher: agent });
      errors.push(await res.body.text());
    }
    await agent.close();
    assert.notEqual(await cli(['passwd', '--password-stdin'], `${wrong}\n${newPass}\n`), 0);
    assert.notEqual(await cli(['login', 'keeper', '--password-stdin'], `${wrong}\n`), 0);

    assert.ok(lines.length > 10, 'the log was captured');
    assert.ok(errors.length > 10, 'the errors were captured');
    for (const secret of secrets) {
      for (const line of lines) assert.ok(!line.includes(secret), `a log line holds a secret: ${line}`);
      for (const e of errors) assert.ok(!e.includes(secret), `an error message holds a secret: ${e}`);
    }
  });
});
