/**
 * Calls to another server's plain unsecure port. Whatever comes back is
 * treated as hostile until checked: the answer is read up to a size limit,
 * must be JSON, and must fit its schema. Failures become coded errors:
 *
 *   PEER_UNREACHABLE  no connection, or no answer in time
 *   PEER_REFUSED      the peer answered with an error (its code is in `details.peerCode`)
 *   PEER_BAD_ANSWER   an answer that is not JSON, too big, or of the wrong shape
 */
import { Agent, request } from '../common/undici.js';
import type { z } from 'zod';
import { CpcError, fail } from '../core/errors.js';

const MAX_ANSWER_BYTES = 64 * 1024;
export const PEER_CALL_TIMEOUT_MS = 5_000;

export function peerUrl(host: string, port: number, path: string): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return `http://${h}:${port}${path}`;
}

export class UnsecureClient {
  private readonly agent: Agent;

  constructor(private readonly timeoutMs = PEER_CALL_TIMEOUT_MS) {
    this.agent = new Agent({ connect: { timeout: timeoutMs }, keepAliveTimeout: 5_000, connections: 4 });
  }

  /** POSTs `body` as JSON and returns the answer checked against `schema`. */
  post<S extends z.ZodType>(host: string, port: number, path: string, body: unknown, schema: S): Promise<z.infer<S>> {
    return this.send('POST', host, port, path, body, schema);
  }

  /** GETs `path` and returns the answer checked against `schema`. */
  get<S extends z.ZodType>(host: string, port: number, path: string, schema: S): Promise<z.infer<S>> {
    return this.send('GET', host, port, path, undefined, schema);
  }

  private async send<S extends z.ZodType>(method: 'GET' | 'POST', host: string, port: number, path: string, body: unknown, schema: S): Promise<z.infer<S>> {
    const url = peerUrl(host, port, path);
    let status: number;
    let text: string;
    try {
      const res = await request(url, {
        method,
        headers: method === 'POST' ? { 'content-type': 'application/json', accept: 'application/json' } : { accept: 'application/json' },
        body: method === 'POST' ? JSON.stringify(body) : undefined,
        dispatcher: this.agent,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      status = res.statusCode;
      text = await readLimited(res.body, url);
    } catch (err) {
      if (err instanceof CpcError) throw err;
      const e = err as { code?: string; message?: string };
      throw fail('PEER_UNREACHABLE', `cannot reach ${url} (${e.code ?? e.message ?? String(err)})`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw fail('PEER_BAD_ANSWER', `${url} answered HTTP ${status} with something that is not JSON; is that a cpc server's unsecure port?`);
    }
    if (status >= 400) {
      const e = (parsed as { error?: { code?: unknown; message?: unknown } } | null)?.error;
      if (e && typeof e.code === 'string') {
        const message = typeof e.message === 'string' ? e.message.slice(0, 500) : '';
        throw fail('PEER_REFUSED', `${url} refused: ${message} (${e.code.slice(0, 64)})`, { peerCode: e.code.slice(0, 64) });
      }
      throw fail('PEER_BAD_ANSWER', `${url} answered HTTP ${status} without an error code`);
    }
    const checked = schema.safeParse(parsed);
    if (!checked.success) {
      const issue = checked.error.issues[0]!;
      throw fail('PEER_BAD_ANSWER', `${url} answered in an unexpected shape (${issue.path.join('.') || 'answer'}: ${issue.message})`);
    }
    return checked.data;
  }

  async close(): Promise<void> {
    await this.agent.destroy().catch(() => {});
  }
}

async function readLimited(body: AsyncIterable<Buffer | Uint8Array> & { destroy?: () => unknown }, url: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_ANSWER_BYTES) {
      body.destroy?.();
      throw fail('PEER_BAD_ANSWER', `${url} answered with more than ${MAX_ANSWER_BYTES} bytes`);
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The code a peer refused with, if that is what `err` is. */
export function peerRefusalCode(err: unknown): string | undefined {
  if (err instanceof CpcError && err.code === 'PEER_REFUSED') return err.details?.peerCode as string | undefined;
  return undefined;
}
