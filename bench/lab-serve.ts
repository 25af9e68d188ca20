import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { updateConfig } from '../src/client/config.js';
import { benchServer } from './lib.js';
const bench = await benchServer();
const home = mkdtempSync(join(tmpdir(), 'cpc-lab-'));
const { server, admin } = bench;
await updateConfig(home, (c) => {
  c.servers.here = { url: server.url, serverId: server.serverId, caPem: server.caPem, caFingerprint: server.caFingerprint, user: 'cpc-admin', token: admin.token!, project: bench.project };
  c.current = 'here';
});
await admin.submit(bench.project, Array.from({ length: 20 }, () => ({ argv: ['true'] })));
writeFileSync('/tmp/lab/home', home);
console.log(home);
