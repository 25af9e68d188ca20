/**
 * Users and access to projects, through the API and through cpcc: super
 * users manage users; owners (and super users) grant and revoke access;
 * tokens end on logout, on a password change and with their user; failed
 * logins slow further tries down, per user name and per address.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ApiError, type ApiClient } from '../../src/client/api/client.js';
import { main } from '../../src/client/cli.js';
import type { Io } from '../../src/client/commands/context.js';
import { cleanup, makeClient, startTestServer, tempDir, type TestServer } from '../helpers/server.js';

async function refused(p: Promise<unknown>, status: number, code: string): Promise<ApiError> {
  let caught: ApiError | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.code, code, err.message);
    assert.equal(err.status, status);
    caught = err;
    return true;
  });
  return caught!;
}

describe('users and access', () => {
  let ts: TestServer;
  let admin: ApiClient;
  const logIn = async (user: string, password: string): Promise<ApiClient> => {
    const c = makeClient(ts.server.url, ts.server.caPem);
    c.token = (await c.login(user, password)).token;
    return c;
  };

  before(async () => {
    ts = await startTestServer({ tokenTtlS: 3600 });
    admin = ts.admin;
  });
  after(cleanup);

  it('lets super users add users, and nobody else', async () => {
    assert.deepEqual(await admin.addUser('alice', 'alice-pass-1'), { name: 'alice', superuser: false, createdAt: (await admin.users()).users[1]!.createdAt });
    await admin.addUser('bob', 'bob-pass-1');
    const alice = await logIn('alice', 'alice-pass-1');
    await refused(alice.addUser('mallory', 'mallory-pass'), 403, 'FORBIDDEN');
    await refused(alice.users(), 403, 'FORBIDDEN');
    await refused(admin.addUser('alice', 'another-pass'), 409, 'USER_EXISTS');
    await refused(admin.addUser('short', 'abc'), 400, 'INVALID_FIELD');
    await refused(admin.addUser('has space', 'long-enough'), 400, 'INVALID_FIELD');
    assert.deepEqual((await admin.users()).users.map((u) => [u.name, u.superuser]), [
      ['cpc-admin', true],
      ['alice', false],
      ['bob', false],
    ]);
    const login = await ts.anonymous().login('alice', 'alice-pass-1');
    assert.ok(Math.abs(login.expiresAt - (Date.now() + 3600_000)) < 60_000, 'tokens expire after the configured time');
  });

  it('shows a project only to its owner, its members and super users; the owner grants and revokes', async () => {
    const alice = await logIn('alice', 'alice-pass-1');
    const bob = await logIn('bob', 'bob-pass-1');
    await alice.createProject('alices');
    await refused(bob.project('alices'), 404, 'PROJECT_NOT_FOUND');
    assert.deepEqual((await bob.projects()).projects, []);
    await refused(bob.grantAccess('alices', 'bob'), 404, 'PROJECT_NOT_FOUND');

    assert.deepEqual((await alice.grantAccess('alices', 'bob')).members, ['bob']);
    assert.deepEqual((await alice.grantAccess('alices', 'bob')).members, ['bob'], 'granting twice changes nothing');
    const { ids } = await bob.submit('alices', [{ argv: ['true'] }]);
    assert.equal((await alice.job(ids[0]!)).project, 'alices');
    // Full access to the jobs, but the project itself stays the owner's.
    await refused(bob.grantAccess('alices', 'cpc-admin'), 403, 'FORBIDDEN');
    await refused(bob.removeProject('alices'), 403, 'FORBIDDEN');
    await refused(alice.grantAccess('alices', 'nobody'), 404, 'USER_NOT_FOUND');
    await refused(alice.revokeAccess('alices', 'alice'), 409, 'INVALID_STATE');

    assert.deepEqual((await alice.revokeAccess('alices', 'bob')).members, []);
    await refused(bob.project('alices'), 404, 'PROJECT_NOT_FOUND');
    await refused(bob.job(ids[0]!), 404, 'JOB_NOT_FOUND');
    await refused(bob.cancel([ids[0]!]), 404, 'JOB_NOT_FOUND');
    // A super user may manage access to anyone's project.
    assert.deepEqual((await admin.grantAccess('alices', 'bob')).members, ['bob']);
    assert.equal((await bob.project('alices')).owner, 'alice');
  });

  it('revokes a token on logout', async () => {
    const bob = await logIn('bob', 'bob-pass-1');
    await bob.logout();
    await refused(bob.whoami(), 401, 'UNAUTHENTICATED');
  });

  it('changing one’s own password needs the current one and logs out the other sessions', async () => {
    const a1 = await logIn('alice', 'alice-pass-1');
    const a2 = await logIn('alice', 'alice-pass-1');
    await refused(a1.changePassword('wrong', 'alice-pass-2'), 401, 'BAD_CREDENTIALS');
    await refused(a1.changePassword('alice-pass-1', 'short'), 400, 'INVALID_FIELD');
    const reply = await a1.changePassword('alice-pass-1', 'alice-pass-2');
    assert.ok(reply.tokensRevoked >= 1);
    assert.equal((await a1.whoami()).user, 'alice', 'the session that made the change goes on');
    await refused(a2.whoami(), 401, 'UNAUTHENTICATED');
    await refused(ts.anonymous().login('alice', 'alice-pass-1'), 401, 'BAD_CREDENTIALS');
    await logIn('alice', 'alice-pass-2');
  });

  it("a super user setting someone's password logs out all their sessions", async () => {
    const bob = await logIn('bob', 'bob-pass-1');
    await refused(bob.setPassword('alice', 'taken-over'), 403, 'FORBIDDEN');
    await admin.setPassword('bob', 'bob-pass-2');
    await refused(bob.whoami(), 401, 'UNAUTHENTICATED');
    await logIn('bob', 'bob-pass-2');
    await refused(admin.setPassword('nobody', 'whatever-1'), 404, 'USER_NOT_FOUND');
  });

  it('removes a user with their tokens and memberships; not the owner of projects, not the last super user', async () => {
    const bob = await logIn('bob', 'bob-pass-2');
    await refused(admin.removeUser('alice'), 409, 'INVALID_STATE');
    await refused(admin.removeUser('cpc-admin'), 409, 'INVALID_STATE');
    await refused(admin.removeUser('nobody'), 404, 'USER_NOT_FOUND');
    const removed = await admin.removeUser('bob');
    assert.deepEqual(removed.projectsLeft, ['alices']);
    assert.ok(removed.tokensRevoked >= 1);
    await refused(bob.whoami(), 401, 'UNAUTHENTICATED');
    assert.deepEqual((await admin.project('alices')).members, []);
    // A new user of the same name inherits nothing.
    await admin.addUser('bob', 'bob-pass-3');
    const newBob = await logIn('bob', 'bob-pass-3');
    await refused(newBob.project('alices'), 404, 'PROJECT_NOT_FOUND');
  });

  it('keeps users, memberships and passwords across a restart', async () => {
    await admin.grantAccess('alices', 'bob');
    await ts.server.close();
    ts = await startTestServer({ home: ts.home });
    admin = ts.admin;
    assert.deepEqual((await admin.project('alices')).members, ['bob']);
    const bob = await logIn('bob', 'bob-pass-3');
    assert.equal((await bob.project('alices')).owner, 'alice');
  });
});

describe('login throttling', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ loginFailuresPerUser: 3, loginFailuresPerAddress: 6, loginMaxDelayS: 2 });
    await ts.admin.addUser('carol', 'carol-pass');
  });
  after(cleanup);

  it('slows down a user name after repeated failures, even for the right password, then lets it in', async () => {
    const anon = ts.anonymous();
    for (let i = 0; i < 3; i++) await refused(anon.login('carol', 'wrong'), 401, 'BAD_CREDENTIALS');
    const err = await refused(anon.login('carol', 'carol-pass'), 429, 'TOO_MANY_REQUESTS');
    assert.ok(err.retryAfterS !== undefined && err.retryAfterS >= 1 && err.retryAfterS <= 2, `retryAfterS ${err.retryAfterS}`);
    await new Promise((r) => setTimeout(r, err.retryAfterS! * 1000 + 50));
    assert.equal((await anon.login('carol', 'carol-pass')).user, 'carol');
    // Success forgets the name's failures.
    await refused(anon.login('carol', 'wrong'), 401, 'BAD_CREDENTIALS');
    assert.equal((await anon.login('carol', 'carol-pass')).user, 'carol');
  });

  it('slows down an address that tries many names, existing or not, and answers a burst the same way', async () => {
    await new Promise((r) => setTimeout(r, 2100));
    const anon = ts.anonymous();
    const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => anon.login(`guess-${i}`, 'x')));
    const codes = results.map((r) => (r.status === 'rejected' ? (r.reason as ApiError).code : 'ok'));
    assert.ok(codes.every((c) => c === 'BAD_CREDENTIALS' || c === 'TOO_MANY_REQUESTS'), codes.join());
    assert.ok(codes.filter((c) => c === 'BAD_CREDENTIALS').length <= 6, `at most the free failures are tried: ${codes.join()}`);
    await refused(anon.login('carol', 'carol-pass'), 429, 'TOO_MANY_REQUESTS');
  });

  it('keeps counting across a restart, so a restart hands a guesser no fresh budget', async () => {
    let s = await startTestServer({ loginFailuresPerUser: 3, loginFailuresPerAddress: 100, loginMaxDelayS: 60 });
    await s.admin.addUser('dave', 'dave-pass');
    for (let i = 0; i < 3; i++) await refused(s.anonymous().login('dave', 'wrong'), 401, 'BAD_CREDENTIALS');
    await s.server.close();
    s = await startTestServer({ home: s.home, loginFailuresPerUser: 3, loginFailuresPerAddress: 100, loginMaxDelayS: 60 });
    const err = await refused(s.anonymous().login('dave', 'dave-pass'), 429, 'TOO_MANY_REQUESTS');
    assert.ok(err.retryAfterS !== undefined && err.retryAfterS >= 1, `retryAfterS ${err.retryAfterS}`);
    // Another name is not held back by dave's failures.
    assert.equal((await s.anonymous().login('cpc-admin', s.adminPassword)).user, 'cpc-admin');
  });
});

describe('cpcc: users and access', () => {
  let ts: TestServer;
  let home: string;

  const run = async (args: string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> => {
    let stdout = '';
    let stderr = '';
    const io: Io = {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      stdin: Readable.from([input]) as Io['stdin'],
      env: { CPCC_HOME: home, NO_COLOR: '1' },
    };
    const code = await main(['node', 'cpcc', ...args], io);
    return { code, stdout, stderr };
  };
  const json = async <T = any>(args: string[], input = ''): Promise<T> => {
    const r = await run(['--json', ...args], input);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as T;
  };

  before(async () => {
    ts = await startTestServer();
    home = await tempDir('cpcc-users-');
    const port = new URL(ts.server.unsecureUrl).port;
    await json(['add-server', '127.0.0.1', port, '--yes', '--name', 'here']);
    await json(['login', 'cpc-admin', '--password-stdin'], `${ts.adminPassword}\n`);
  });
  after(cleanup);

  it('adds, lists and removes users; grants and revokes access; changes passwords', async () => {
    assert.deepEqual(await json(['add-user', 'dave', '--password-stdin'], 'dave-pass-1\n'), (await json(['users'])).users[1]);
    await json(['add-user', 'erin', '--superuser', '--password-stdin'], 'erin-pass-1\n');
    assert.deepEqual((await json(['users'])).users.map((u: { name: string; superuser: boolean }) => [u.name, u.superuser]), [
      ['cpc-admin', true],
      ['dave', false],
      ['erin', true],
    ]);
    await json(['start', 'shared']);
    assert.deepEqual((await json(['grant-access', 'dave'])).members, ['dave']);
    assert.deepEqual((await json(['revoke-access', 'dave', 'shared'])).members, []);
    const missing = await run(['grant-access', 'nobody']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /USER_NOT_FOUND/);

    // A super user sets dave's password; dave then changes it himself.
    await json(['passwd', 'dave', '--password-stdin'], 'dave-pass-2\n');
    await json(['login', 'dave', '--password-stdin'], 'dave-pass-2\n');
    const changed = await json(['passwd', '--password-stdin'], 'dave-pass-2\ndave-pass-3\n');
    assert.equal(changed.user, 'dave');
    const notAdmin = await run(['users']);
    assert.equal(notAdmin.code, 1);
    assert.match(notAdmin.stderr, /FORBIDDEN/);

    await json(['login', 'cpc-admin', '--password-stdin'], `${ts.adminPassword}\n`);
    const noTty = await run(['rm-user', 'dave']);
    assert.equal(noTty.code, 2, 'no confirmation without a terminal or --yes');
    assert.equal((await json(['rm-user', 'dave', '--yes'])).removed, 'dave');
    assert.deepEqual((await json(['users'])).users.map((u: { name: string }) => u.name), ['cpc-admin', 'erin']);
  });

  it('refuses a password on stdin that is missing', async () => {
    const r = await run(['add-user', 'frank', '--password-stdin'], '');
    assert.equal(r.code, 2);
    assert.doesNotMatch(r.stderr, /at .*\.ts/);
  });
});
