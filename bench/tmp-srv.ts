import { updateConfig } from '../src/client/config.js';
import { benchServer } from './lib.js';
const b = await benchServer();
await updateConfig('/tmp/d/chome', (c) => {
  c.servers.here = { url: b.server.url, serverId: b.server.serverId, caPem: b.server.caPem, caFingerprint: b.server.caFingerprint, user: 'cpc-admin', token: b.admin.token!, project: b.project };
  c.current = 'here';
});
console.log('ready');
setTimeout(() => void b.close().then(() => process.exit(0)), 1_200_000);
