/**
 * server/dashboard: what the secure port serves outside the API. The dashboard page (this
 * file serves it) and the Prometheus metrics.
 * May call: src/core (events, to count them). Writes no events.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { METRICS_CONTENT_TYPE, metricsAllowed, type Metrics } from './metrics.js';

/**
 * What the secure port serves outside the API: the dashboard (an HTML page,
 * one ES module, a style sheet and an SVG icon from this folder, read once at start-up)
 * and `/metrics`. The build copies the page's files next to this module in
 * dist, so the same lookup works from the sources and from the build. The
 * charts are drawn by uPlot, an npm dependency, served from where the
 * package is installed (its ES module and its style sheet), never a CDN.
 */

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
  // The page names it; browsers that ask without reading the page look at the root.
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
  '/dashboard/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
  '/dashboard/uplot.js': { file: 'uplot/dist/uPlot.esm.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/uplot.css': { file: 'uplot/dist/uPlot.min.css', type: 'text/css; charset=utf-8' },
};

/** A page file of this folder, or one of a package (named `package/path`, for uPlot). */
function fileUrl(file: string): URL | string {
  return file.startsWith('uplot/') ? createRequire(import.meta.url).resolve(file) : new URL(`./${file}`, import.meta.url);
}

// The page loads only its own script and style and talks only to its own
// origin (the API and the event stream); nothing inline runs.
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

export interface PagesOptions {
  metrics: Metrics;
  metricsMode: 'token' | 'open' | 'off';
  metricsToken?: string;
  /** Whether a bearer token is a super user's (they may read the metrics too). */
  superuser: (token: string) => boolean;
}

export function loadAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const cache = new Map<string, Asset>();
  for (const [path, { file, type }] of Object.entries(FILES)) {
    let asset = cache.get(file);
    if (!asset) {
      const body = readFileSync(fileUrl(file));
      asset = { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
      cache.set(file, asset);
    }
    assets.set(path, asset);
  }
  return assets;
}

/** The `outside` hook of the secure listener: returns false for paths it does not serve. */
export function pagesHandler(opts: PagesOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const assets = loadAssets();
  return (req, res) => {
    const started = performance.now();
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/metrics' && opts.metricsMode !== 'off') {
      const status = serveMetrics(opts, req, res, method);
      opts.metrics.request(method, '/metrics', status, performance.now() - started);
      return true;
    }
    const asset = assets.get(path);
    if (!asset) return false;
    let status: number;
    if (method !== 'GET' && method !== 'HEAD') {
      status = 405;
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
    } else if (req.headers['if-none-match'] === asset.etag) {
      status = 304;
      res.writeHead(304, { etag: asset.etag, 'cache-control': 'no-cache', ...PAGE_HEADERS });
      res.end();
    } else {
      status = 200;
      res.writeHead(200, {
        'content-type': asset.type,
        'content-length': asset.body.length,
        etag: asset.etag,
        // Revalidated on every load, so a new build shows at once.
        'cache-control': 'no-cache',
        ...PAGE_HEADERS,
      });
      res.end(method === 'HEAD' ? undefined : asset.body);
    }
    opts.metrics.request(method, 'dashboard', status, performance.now() - started);
    return true;
  };
}

function serveMetrics(opts: PagesOptions, req: IncomingMessage, res: ServerResponse, method: string): number {
  const reply = (status: number, body: string, type: string, extra: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
    res.end(method === 'HEAD' ? undefined : body);
    return status;
  };
  if (method !== 'GET' && method !== 'HEAD') return reply(405, '{"error":{"code":"METHOD_NOT_ALLOWED","message":"GET /metrics"}}', 'application/json', { allow: 'GET, HEAD' });
  if (!metricsAllowed(opts.metricsMode, opts.metricsToken, req.headers.authorization, opts.superuser)) {
    return reply(401, '{"error":{"code":"UNAUTHENTICATED","message":"/metrics needs the metrics token or a super user\'s token"}}', 'application/json', {
      'www-authenticate': 'Bearer realm="cpc metrics"',
    });
  }
  return reply(200, opts.metrics.render(), METRICS_CONTENT_TYPE);
}
