/**
 * JSON requests over Node's own https (or http) client, for processes that
 * send a few requests and exit: cpcc. undici, which cpc-worker and the
 * servers use, is the faster client for many requests, but loading it (with
 * its HTTP/2 half) and compiling its WebAssembly parser cost a short command
 * more than its whole request; Node's client is already in the binary.
 *
 * Streams (uploads, downloads) still go through undici: they are few, long,
 * and share its back-pressure handling with the worker.
 */
import type { Agent as HttpsAgent, RequestOptions } from 'node:https';
import type { PeerCertificate } from 'node:tls';

export interface NodeTransportOptions {
  caPem?: string;
  checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined;
  connections: number;
}

export interface RawAnswer {
  status: number;
  body: string;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE']);

type Https = typeof import('node:https');
type Http = typeof import('node:http');

export class NodeTransport {
  private agent?: HttpsAgent | import('node:http').Agent;

  constructor(private readonly opts: NodeTransportOptions) {}

  /** One request; rejects with Node's error (ECONNREFUSED, …), a TIMEOUT-coded error, or the abort. */
  async send(url: string, method: string, headers: Record<string, string>, payload: string | undefined, timeoutMs: number, signal?: AbortSignal): Promise<RawAnswer> {
    try {
      return await this.once(url, method, headers, payload, timeoutMs, signal);
    } catch (err) {
      // A kept-alive connection the server closed just as it was reused: the
      // request never reached it, so a request that may be repeated is sent
      // again, on a new connection, as undici does.
      if ((err as { reusedSocket?: boolean }).reusedSocket && IDEMPOTENT.has(method) && !signal?.aborted) {
        return this.once(url, method, headers, payload, timeoutMs, signal);
      }
      throw err;
    }
  }

  private async once(url: string, method: string, headers: Record<string, string>, payload: string | undefined, timeoutMs: number, signal?: AbortSignal): Promise<RawAnswer> {
    const u = new URL(url);
    const secure = u.protocol === 'https:';
    const lib: Https | Http = secure ? await import('node:https') : await import('node:http');
    this.agent ??= secure
      ? new (lib as Https).Agent({
          keepAlive: true,
          maxSockets: this.opts.connections,
          ca: this.opts.caPem,
          rejectUnauthorized: true,
          checkServerIdentity: this.opts.checkServerIdentity,
        })
      : new (lib as Http).Agent({ keepAlive: true, maxSockets: this.opts.connections });
    if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));
    const options: RequestOptions = { method, headers, agent: this.agent, signal };
    return new Promise<RawAnswer>((resolve, reject) => {
      const req = lib.request(u, options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
        res.on('aborted', () => reject(Object.assign(new Error('the answer was cut off'), { code: 'ECONNRESET' })));
      });
      // Idle time, as undici's headers and body timeouts: a long answer that keeps coming is not cut.
      if (timeoutMs > 0) {
        req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('no answer in time'), { code: 'TIMEOUT' })));
      }
      req.on('error', (err: NodeJS.ErrnoException) => {
        const reset = err.code === 'ECONNRESET' || err.code === 'EPIPE';
        reject(reset && req.reusedSocket ? Object.assign(err, { reusedSocket: true }) : err);
      });
      req.end(payload);
    });
  }

  destroy(): void {
    this.agent?.destroy();
  }
}
