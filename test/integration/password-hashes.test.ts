/**
 * Password hashes: scrypt at N = 2^17, r = 8, p = 1 unless the site says
 * otherwise, the parameters kept with each hash, and a password hashed with
 * other parameters (or before they were kept) hashed again when its user
 * logs in.
 */
import assert from 'node:assert/strict';
import { scryptSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ApiError } from '../../src/client/api/client.js';
import { Accounts } from '../../src/server/accounts/accounts.js';
import { resolveConfig } from '../../src/server/start/config.js';
import { startServer } from '../../src/server/start/server.js';
import { cleanup, makeClient, tempDir } from '../helpers/server.js';

after(cleanup);

interface StoredUser {
  name: string;
  salt: string;
  hash: string;
  scrypt?: { N: number; r: number; p: number };
}

const usersOf = (home: string): StoredUser[] => (JSON.parse(readFileSync(join(home, 'users.json'), 'utf8')) as { users: StoredUser[] }).users;

describe('password hashes', () => {
  it("hash at OWASP's scrypt parameters by default, and say so in the record", async () => {
    const home = await tempDir('cpc-hash-');
    assert.equal(resolveConfig(home, {}, {}).scryptLogN, 17);
    const accounts = await Accounts.open(home, 3600);
    await accounts.addUser('ada', 'correct horse', false);
    assert.deepEqual(usersOf(home)[0]!.scrypt, { N: 131072, r: 8, p: 1 });
    assert.equal((await accounts.checkPassword('ada', 'correct horse'))?.name, 'ada');
  });

  it('hash an older password again at the next successful login, and leave it alone after a failed one', async () => {
    const home = await tempDir('cpc-rehash-');
    // A users file as servers wrote it before parameters were kept: Node's scrypt defaults.
    const salt = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    const legacy: StoredUser = { name: 'old', salt: salt.toString('hex'), hash: scryptSync('old-password', salt, 32).toString('hex') };
    writeFileSync(join(home, 'users.json'), JSON.stringify({ users: [{ ...legacy, superuser: true, createdAt: 1 }], tokens: [] }), { mode: 0o600 });

    const server = await startServer({ home, securePort: 0, unsecurePort: 0, host: '127.0.0.1', log: () => {}, scryptLogN: 15 });
    try {
      const client = makeClient(server.url, server.caPem);
      await assert.rejects(client.login('old', 'not-the-password'), (e: ApiError) => e.code === 'BAD_CREDENTIALS');
      assert.deepEqual(usersOf(home)[0], { ...legacy, superuser: true, createdAt: 1 }, 'a failed login changes nothing');

      assert.equal((await client.login('old', 'old-password')).user, 'old');
      const now = usersOf(home)[0]!;
      assert.deepEqual(now.scrypt, { N: 32768, r: 8, p: 1 });
      assert.notEqual(now.hash, legacy.hash);
      assert.notEqual(now.salt, legacy.salt);
      assert.equal((await client.login('old', 'old-password')).user, 'old', 'the new hash checks the same password');
      assert.equal(usersOf(home)[0]!.hash, now.hash, 'a hash made with the current parameters is kept');
    } finally {
      await server.close();
    }
  });

  it('hash the generated first password cheaply, then at full cost once it is used', async () => {
    const home = await tempDir('cpc-first-');
    const server = await startServer({ home, securePort: 0, unsecurePort: 0, host: '127.0.0.1', log: () => {}, scryptLogN: 15 });
    try {
      const password = readFileSync(join(home, 'initial-admin-password'), 'utf8').trim();
      // 144 random bits: no number of guesses finds them, whatever the hash costs.
      assert.match(password, /^[A-Za-z0-9_-]{24}$/);
      const first = usersOf(home)[0]!;
      assert.deepEqual(first.scrypt, { N: 1024, r: 8, p: 1 });
      const client = makeClient(server.url, server.caPem);
      assert.equal((await client.login(first.name, password)).user, first.name);
      const now = usersOf(home)[0]!;
      assert.deepEqual(now.scrypt, { N: 32768, r: 8, p: 1 });
      assert.notEqual(now.hash, first.hash);
    } finally {
      await server.close();
    }
  });
});
