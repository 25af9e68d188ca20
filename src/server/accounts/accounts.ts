/**
 * server/accounts: who may log in. Users, login tokens, worker tokens, the login throttle.
 * Owns users.json (this file), the failed-login throttle and its file, and the session and user routes.
 * May call: src/core, src/persistence, server/http, server/jobs (the store, through the Context, for
 * memberships). Writes members-changed, and weight-set when a removed user's weight is reset.
 */
import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Low } from 'lowdb';
import { fail } from '../../core/errors.js';
import { changeDocument, openDocument } from '../../persistence/lowdb-adapter.js';

/**
 * Users, their login tokens and worker tokens, in one small durable document
 * (`<home>/users.json`, mode 0600).
 *
 * Passwords are hashed with scrypt, at N = 2^17, r = 8, p = 1 by default
 * (OWASP's advice; `scryptLogN` sets N). Each hash records the parameters it
 * was made with, and a successful login rehashes a password whose hash was
 * made with others (older hashes, made before parameters were recorded, used
 * Node's defaults), so raising the cost reaches every user who logs in.
 * Hashing is memory-hard (128 MiB at the default) and runs in libuv's thread
 * pool, which the journal and files use too, so at most two run at once.
 *
 * A token is `cpc_<id>_<secret>`: the id
 * finds the record in one lookup, and only a SHA-256 of the secret is stored,
 * so the file alone lets nobody in.
 */

const scryptAsync = promisify(scrypt) as (pw: string, salt: Buffer, len: number, opts: ScryptOptions) => Promise<Buffer>;

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

/** What hashes without a record of their parameters were made with (Node's defaults). */
export const LEGACY_SCRYPT: ScryptParams = { N: 16384, r: 8, p: 1 };
/** For passwords generatePassword() made (see addUser). */
const GENERATED_SCRYPT: ScryptParams = { N: 1024, r: 8, p: 1 };
export const DEFAULT_SCRYPT_LOG_N = 17;

export function scryptParams(logN: number): ScryptParams {
  return { N: 2 ** logN, r: 8, p: 1 };
}

const sameParams = (a: ScryptParams, b: ScryptParams) => a.N === b.N && a.r === b.r && a.p === b.p;

/** Hashes at most two passwords at once (each holds 128·N·r bytes and a thread of the pool); the rest wait their turn. */
class HashQueue {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  async hash(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
    if (this.running >= 2) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    try {
      // Node refuses scrypt past 32 MiB unless told how much it may use.
      return await scryptAsync(password, salt, 32, { ...params, maxmem: 256 * params.N * params.r + 1024 * 1024 });
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

export const ADMIN_USER = 'cpc-admin';
export const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export interface UserRecord {
  name: string;
  salt: string;
  hash: string;
  /** The parameters `hash` was made with; absent on hashes older than the record (LEGACY_SCRYPT). */
  scrypt?: ScryptParams;
  superuser: boolean;
  createdAt: number;
}

export type TokenKind = 'user' | 'worker';

export interface TokenRecord {
  id: string;
  kind: TokenKind;
  /** The user a user token acts for; the name of a worker token. */
  name: string;
  secretSha256: string;
  createdAt: number;
  expiresAt: number | null;
  revoked: boolean;
  /** A worker token: how many workers may be registered with it at once (the server's `maxWorkersPerToken` when absent). */
  maxWorkers?: number;
  /** A worker token: its workers are handed only this user's jobs. */
  user?: string;
}

interface AccountsDoc {
  users: UserRecord[];
  tokens: TokenRecord[];
}

export type Identity =
  | { kind: 'user'; user: string; superuser: boolean; tokenId: string }
  | { kind: 'worker'; name: string; tokenId: string; maxWorkers?: number; user?: string };

export class Accounts {
  /** Tokens by id: every authenticated request looks one up. */
  private readonly byId = new Map<string, TokenRecord>();
  private readonly verified = new Map<string, TokenRecord>();
  private readonly hashes = new HashQueue();

  private constructor(
    private readonly db: Low<AccountsDoc>,
    private readonly tokenTtlMs: number,
    private readonly scrypt: ScryptParams,
  ) {
    this.reindex();
  }

  static async open(home: string, tokenTtlS: number, scryptLogN = DEFAULT_SCRYPT_LOG_N): Promise<Accounts> {
    const db = await openDocument<AccountsDoc>(join(home, 'users.json'), { users: [], tokens: [] }, { mode: 0o600 });
    return new Accounts(db, tokenTtlS * 1000, scryptParams(scryptLogN));
  }

  /** A new salt and the hash of `password` with the current parameters (or `params`), as stored in a user record. */
  private async newHash(password: string, params = this.scrypt): Promise<Pick<UserRecord, 'salt' | 'hash' | 'scrypt'>> {
    const salt = randomBytes(16);
    const hash = await this.hashes.hash(password, salt, params);
    return { salt: salt.toString('hex'), hash: hash.toString('hex'), scrypt: { ...params } };
  }

  get empty(): boolean {
    return this.db.data.users.length === 0;
  }

  user(name: string): UserRecord | undefined {
    return this.db.data.users.find((u) => u.name === name);
  }

  users(): readonly UserRecord[] {
    return this.db.data.users;
  }

  /**
   * `generated`: the password is generatePassword()'s, 144 random bits. A slow
   * hash guards passwords people choose, which can be guessed; no number of
   * guesses finds 144 random bits, so such a password is hashed at a cost of
   * milliseconds (a first start would otherwise spend 0.3 s of a core on it
   * before answering). The first login hashes it again at the full cost, as
   * it does any hash made with other parameters.
   */
  async addUser(name: string, password: string, superuser: boolean, opts: { generated?: boolean } = {}): Promise<UserRecord> {
    if (!USER_NAME.test(name)) throw fail('INVALID_FIELD', `user name '${name}' is not valid`);
    if (this.user(name)) throw fail('USER_EXISTS', `user '${name}' already exists`);
    const hashed = await this.newHash(password, opts.generated ? GENERATED_SCRYPT : this.scrypt);
    // Checked again: another request may have added the name while scrypt ran.
    if (this.user(name)) throw fail('USER_EXISTS', `user '${name}' already exists`);
    const record: UserRecord = { name, ...hashed, superuser, createdAt: Date.now() };
    await this.change(() => this.db.data.users.push(record));
    return record;
  }

  /** Whether `password` is the user's; the same cost whether or not the user exists. */
  async checkPassword(name: string, password: string): Promise<UserRecord | null> {
    const user = this.user(name);
    // Hash even for unknown users so that timing does not tell which names exist.
    const salt = user ? Buffer.from(user.salt, 'hex') : randomBytes(16);
    const hash = await this.hashes.hash(password, salt, user ? (user.scrypt ?? LEGACY_SCRYPT) : this.scrypt);
    return user && timingSafeEqual(hash, Buffer.from(user.hash, 'hex')) ? user : null;
  }

  /**
   * Hashes a password again with the current parameters when its hash was
   * made with others; called with the password just checked. A password
   * changed meanwhile is left as it is.
   */
  private async rehash(user: UserRecord, password: string): Promise<void> {
    if (user.scrypt && sameParams(user.scrypt, this.scrypt)) return;
    const checkedHash = user.hash;
    const hashed = await this.newHash(password);
    await this.change(() => {
      const now = this.user(user.name);
      if (now && now.hash === checkedHash) Object.assign(now, hashed);
    });
  }

  /**
   * Sets a new password and revokes the user's login tokens, all but `keep`
   * (the session that made the change, when users change their own).
   * Returns how many tokens were revoked.
   */
  async setPassword(name: string, password: string, keep?: string): Promise<number> {
    if (!this.user(name)) throw fail('USER_NOT_FOUND', `no user named '${name}'`);
    const hashed = await this.newHash(password);
    let revoked = 0;
    await this.change(() => {
      const user = this.user(name);
      if (!user) throw fail('USER_NOT_FOUND', `no user named '${name}'`);
      Object.assign(user, hashed);
      revoked = this.dropUserTokens(name, keep);
    });
    return revoked;
  }

  /** Removes a user and every login token of theirs; refuses to remove the last super user. */
  /** Throws what removeUser would refuse with, without changing anything. */
  checkRemovable(name: string): void {
    const user = this.user(name);
    if (!user) throw fail('USER_NOT_FOUND', `no user named '${name}'`);
    if (user.superuser && this.db.data.users.filter((u) => u.superuser).length === 1) {
      throw fail('INVALID_STATE', `'${name}' is the last super user; make another one first`);
    }
  }

  async removeUser(name: string): Promise<number> {
    this.checkRemovable(name);
    let revoked = 0;
    await this.change(() => {
      this.db.data.users = this.db.data.users.filter((u) => u.name !== name);
      revoked = this.dropUserTokens(name);
    });
    return revoked;
  }

  /** Checks a password and issues a user token; the same error for an unknown user and a wrong password. */
  async login(name: string, password: string): Promise<{ token: string; record: TokenRecord; user: UserRecord }> {
    const user = await this.checkPassword(name, password);
    if (!user) throw fail('BAD_CREDENTIALS', 'wrong user name or password');
    await this.rehash(user, password);
    const { token, record } = await this.issue('user', name, Date.now() + this.tokenTtlMs);
    return { token, record, user };
  }

  async issue(kind: TokenKind, name: string, expiresAt: number | null, opts: { maxWorkers?: number; user?: string } = {}): Promise<{ token: string; record: TokenRecord }> {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const record: TokenRecord = {
      id,
      kind,
      name,
      secretSha256: sha256(secret),
      createdAt: Date.now(),
      expiresAt,
      revoked: false,
      ...(opts.maxWorkers !== undefined ? { maxWorkers: opts.maxWorkers } : {}),
      ...(opts.user !== undefined ? { user: opts.user } : {}),
    };
    await this.change(() => {
      this.db.data.tokens.push(record);
      this.dropExpired();
    });
    return { token: `cpc_${id}_${secret}`, record };
  }

  /** The identity a bearer token stands for, or UNAUTHENTICATED. */
  authenticate(token: string): Identity {
    const record = this.verify(token);
    if (record.revoked) throw fail('UNAUTHENTICATED', 'the token was revoked');
    if (record.expiresAt !== null && record.expiresAt <= Date.now()) throw fail('UNAUTHENTICATED', 'the token has expired; log in again');
    if (record.kind === 'worker') {
      return {
        kind: 'worker',
        name: record.name,
        tokenId: record.id,
        ...(record.maxWorkers !== undefined ? { maxWorkers: record.maxWorkers } : {}),
        ...(record.user !== undefined ? { user: record.user } : {}),
      };
    }
    const user = this.user(record.name);
    if (!user) throw fail('UNAUTHENTICATED', 'the token belongs to a user who no longer exists');
    return { kind: 'user', user: user.name, superuser: user.superuser, tokenId: record.id };
  }

  /**
   * The record a token's secret matches, or UNAUTHENTICATED. Tokens already
   * checked are remembered (a worker sends the same one many times a second,
   * and hashing it each time showed in profiles); a remembered token counts
   * only while its record is still the one on file, so a removed token is
   * never let in from memory. Revocation and expiry are checked by the caller
   * on every request.
   */
  private verify(token: string): TokenRecord {
    const known = this.verified.get(token);
    if (known && this.byId.get(known.id) === known) return known;
    const m = /^cpc_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/.exec(token);
    const record = m ? this.byId.get(m[1]!) : undefined;
    if (!m || !record || !safeEqualHex(record.secretSha256, sha256(m[2]!))) {
      throw fail('UNAUTHENTICATED', 'the token is not valid; log in again');
    }
    if (this.verified.size >= 10_000) this.verified.clear();
    this.verified.set(token, record);
    return record;
  }

  /**
   * Revokes a token. A user token is deleted (it is of no use to anyone); a
   * worker token stays listed, marked revoked, so admins see what was cut off.
   */
  async revoke(tokenId: string, kind?: TokenKind): Promise<TokenRecord> {
    const record = this.byId.get(tokenId);
    if (!record || (kind && record.kind !== kind)) throw fail('TOKEN_NOT_FOUND', `no token with id '${tokenId}'`);
    await this.change(() => {
      if (record.kind === 'user') this.db.data.tokens = this.db.data.tokens.filter((t) => t.id !== tokenId);
      else record.revoked = true;
    });
    return record;
  }

  /** Login tokens of a user, but for `keep`; returns how many went. */
  private dropUserTokens(name: string, keep?: string): number {
    const before = this.db.data.tokens.length;
    this.db.data.tokens = this.db.data.tokens.filter((t) => t.kind !== 'user' || t.name !== name || t.id === keep);
    return before - this.db.data.tokens.length;
  }

  /** Applies a change to the document and writes it (undone in memory if the write fails), then reindexes. */
  private async change(apply: () => void): Promise<void> {
    try {
      await changeDocument(this.db, apply);
    } finally {
      this.reindex();
    }
  }

  private reindex(): void {
    this.byId.clear();
    for (const t of this.db.data.tokens) this.byId.set(t.id, t);
  }

  workerTokens(): TokenRecord[] {
    return this.db.data.tokens.filter((t) => t.kind === 'worker');
  }

  /**
   * Deletes revoked worker tokens from the list. Pilots get a token each, so
   * theirs are dropped with the pilot's record instead of piling up.
   */
  async forgetRevoked(tokenIds: readonly string[]): Promise<void> {
    const drop = new Set(tokenIds.filter((id) => this.byId.get(id)?.revoked === true && this.byId.get(id)?.kind === 'worker'));
    if (drop.size === 0) return;
    await this.change(() => {
      this.db.data.tokens = this.db.data.tokens.filter((t) => !drop.has(t.id));
    });
  }

  /** Expired user tokens are of no use to anyone; worker tokens stay listed until revoked. */
  private dropExpired(): void {
    const now = Date.now();
    const expired = (t: TokenRecord) => t.kind === 'user' && t.expiresAt !== null && t.expiresAt <= now;
    this.db.data.tokens = this.db.data.tokens.filter((t) => !expired(t));
  }
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

function safeEqualHex(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'));
}

export function generatePassword(): string {
  return randomBytes(18).toString('base64url');
}
