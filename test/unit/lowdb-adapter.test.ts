import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DurableJSONFile, openDocument } from '../../src/persistence/lowdb-adapter.js';
import { writeFileDurable } from '../../src/persistence/durable-file.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cpc-lowdb-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

interface Tokens {
  tokens: { id: string; hash: string }[];
}

describe('lowdb adapter', () => {
  it('writes secrets with mode 0600, survives reopen, leaves no temp files', async () => {
    const file = path.join(root, 'secrets', 'tokens.json');
    const defaults: Tokens = { tokens: [] };
    const db = await openDocument<Tokens>(file, defaults, { mode: 0o600 });
    assert.equal(db.data.tokens.length, 0);
    db.data.tokens.push({ id: 't1', hash: 'abc' });
    await db.write();
    assert.deepEqual(defaults, { tokens: [] }, 'defaults are copied, not shared');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);

    await db.update((d) => d.tokens.push({ id: 't2', hash: 'def' }));
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['tokens.json']);

    const again = await openDocument<Tokens>(file, { tokens: [] }, { mode: 0o600 });
    assert.deepEqual(again.data.tokens.map((t) => t.id), ['t1', 't2']);
  });

  it('uses 0644 without a mode', async () => {
    const file = path.join(root, 'config.json');
    const db = await openDocument(file, { port: 1 });
    await db.write();
    assert.equal(fs.statSync(file).mode & 0o777, 0o644 & ~process.umask());
  });

  it('keeps the newest state when writes overlap', async () => {
    const file = path.join(root, 'overlap.json');
    const adapter = new DurableJSONFile<{ n: number }>(file);
    await Promise.all(Array.from({ length: 20 }, (_, n) => adapter.write({ n })));
    assert.deepEqual(await adapter.read(), { n: 19 });
    assert.deepEqual(fs.readdirSync(root).filter((f) => f.startsWith('overlap')), ['overlap.json']);
  });

  it('reads a missing file as null and refuses a damaged one', async () => {
    const adapter = new DurableJSONFile(path.join(root, 'missing.json'));
    assert.equal(await adapter.read(), null);
    const bad = path.join(root, 'bad.json');
    fs.writeFileSync(bad, '{"users": [');
    await assert.rejects(openDocument(bad, { users: [] }), /bad\.json is not valid JSON/);
  });

  it('removes temp files a crash left behind when opening', async () => {
    const file = path.join(root, 'users.json');
    await writeFileDurable(file, '{"users":["a"]}');
    fs.writeFileSync(`${file}.tmp-0123456789ab`, '{"users":[');
    const db = await openDocument(file, { users: [] as string[] });
    assert.deepEqual(db.data, { users: ['a'] });
    assert.ok(!fs.existsSync(`${file}.tmp-0123456789ab`));
  });
});
