import { ApiClient } from '../src/client/api/client.js';
import { benchServer, connectPeers, percentile, round } from './lib.js';

/**
 * Wake-up: an idle worker is long-polling; a job is submitted; how long until
 * the worker holds it. The worker and the submitting client share this
 * process with the server, so the figure includes both requests' full path
 * (submit durable, claim durable) on one event loop.
 */
export async function wakeup(samples: number, opts: { delegated?: boolean } = {}): Promise<{ p50: number; p99: number; max: number }> {
  const a = await benchServer();
  // Delegated: the job is submitted on a peer; the idle worker belongs to `a`.
  const b = opts.delegated ? await benchServer() : a;
  if (b !== a) await connectPeers(a, b);
  const worker = new ApiClient({ url: a.server.url, caPem: a.server.caPem, serverId: a.server.serverId, token: a.workerToken });
  try {
    const { workerId } = await worker.register({ name: 'idle', host: 'bench', cores: 1, memoryMb: 1024 });
    const times: number[] = [];
    for (let i = 0; i < samples; i++) {
      const claim = worker.claim(workerId, { waitS: 10, max: 1 });
      // Let the claim reach the server and start waiting.
      await new Promise((r) => setTimeout(r, 5));
      const t0 = performance.now();
      void b.admin.submit(b.project, [{ argv: ['true'] }]);
      const { jobs } = await claim;
      times.push(performance.now() - t0);
      const job = jobs[0]!;
      await worker.result(workerId, { jobId: job.id, attempt: job.attempt, how: 'exited', exitCode: 0, signal: null, durationMs: 0, stdout: '', stderr: '', stdoutBytes: 0, stderrBytes: 0 });
    }
    times.sort((a, b) => a - b);
    return { p50: round(percentile(times, 50)), p99: round(percentile(times, 99)), max: round(times[times.length - 1]!) };
  } finally {
    await worker.close();
    if (b !== a) await b.close();
    await a.close();
  }
}
