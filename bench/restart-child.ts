/**
 * One restart for the restart figure: starts the server on a built home,
 * registers a worker and claims one job; prints the start-up time, the time
 * to the first claim answered (both from the start of startServer, after the
 * modules are loaded) and the number of live jobs found.
 * argv: home workerToken
 */
import { ApiClient } from '../src/client/api/client.js';
import { startServer } from '../src/server/start/server.js';
import { profiled, reply, round } from './lib.js';

const [home, token] = process.argv.slice(2);

const result = await profiled('restart', async () => {
  const t0 = performance.now();
  const server = await startServer({ home: home!, securePort: 0, unsecurePort: 0, host: '127.0.0.1', publicHost: '127.0.0.1', logLevel: 'warn' });
  const started = performance.now();
  const worker = new ApiClient({ url: server.url, caPem: server.caPem, serverId: server.serverId, token });
  const { workerId } = await worker.register({ name: 'after-restart', host: 'bench', cores: 1, memoryMb: 1024 });
  const { jobs } = await worker.claim(workerId, { waitS: 0, max: 1 });
  const claimed = performance.now();
  if (jobs.length !== 1) throw new Error('restart: the first claim got no job');
  const live = server.model.jobs.size;
  await worker.close();
  await server.close();
  return { startMs: round(started - t0, 0), firstClaimMs: round(claimed - t0, 0), live };
});
reply(result);
