/**
 * The client side of the transfer benchmark, in its own process as a real
 * client or worker would be: one upload or download, timed, checked.
 *
 *   transfer-client.ts upload|download URL CA_FILE SERVER_ID TOKEN PATH QUERY_JSON FILE SHA256 SIZE
 */
import { createReadStream, readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ApiClient } from '../src/client/api/client.js';
import { Meter } from '../src/common/stream-meter.js';
import { reply } from './lib.js';

const [mode, url, caFile, serverId, token, path, queryJson, file, sha256, sizeText] = process.argv.slice(2) as [string, string, string, string, string, string, string, string, string, string];
const size = Number(sizeText);
const query = JSON.parse(queryJson) as Record<string, string | number>;
const client = new ApiClient({ url, caPem: readFileSync(caFile, 'utf8'), serverId, token, timeoutMs: 120_000 });
const t0 = performance.now();
if (mode === 'upload') {
  const stored = await client.sendBytes<{ sha256: string }>(path, createReadStream(file, { highWaterMark: 1024 * 1024 }), size, query);
  if (stored.sha256 !== sha256) throw new Error('upload: the server stored other bytes');
} else {
  const { body } = await client.fetchBytes(path, query);
  await pipeline(body, new Meter(Infinity, undefined, { sha256, size }), new Writable({ write: (_c, _e, done) => done() }));
}
const ms = performance.now() - t0;
await client.close();
reply({ ms });
