/**
 * The API described as OpenAPI 3.1, made from the route table itself: each
 * route's rule, path, query and body schemas are the ones the server checks
 * requests against, so the description cannot drift from what is enforced.
 * Served at GET /api/openapi.json; `docs/openapi.json` is the same for the
 * default settings (`npm run openapi` writes it; a test keeps it current).
 */
import { z } from 'zod';
import { ERROR_STATUS } from '../../core/errors.js';
import { API_PREFIX } from '../../core/wire.js';
import { apiRouter } from './api.js';
import type { AuthRule } from '../http/auth.js';
import { DEFAULTS, type ServerConfig } from './config.js';
import type { Context } from './context.js';
import type { Route, Router } from '../http/router.js';
import { unsecureRoutes } from '../federation/unsecure.js';

type Json = Record<string, unknown>;

const RULE_TEXT: Record<AuthRule, string> = {
  anonymous: 'anyone',
  user: 'any user (what a user sees inside is limited to their projects)',
  member: 'a user with access to the project (its owner, a member, or a super user)',
  owner: 'the owner of the project, or a super user',
  job: "a user with access to the job's project",
  superuser: 'super users',
  worker: 'worker tokens',
  peer: "trusted peer servers, by their TLS client certificate",
};

/** The error statuses a rule can lead to before the handler runs. */
function refusals(route: Route): number[] {
  const out = new Set<number>([400]);
  // Any token of the wrong kind (a worker's on a user route, a user's on a worker route) is a 403.
  if (route.auth !== 'anonymous') out.add(401).add(403);
  if (route.auth === 'member' || route.auth === 'owner' || route.auth === 'job') out.add(404);
  if (route.method === 'POST' || route.method === 'PUT') out.add(413).add(415);
  return [...out].sort((a, b) => a - b);
}

function jsonSchema(schema: z.ZodType): Json {
  const out = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json;
  delete out.$schema;
  return out;
}

function parameters(schema: z.ZodType, where: 'path' | 'query', names: string[]): Json[] {
  const s = jsonSchema(schema);
  const props = (s.properties ?? {}) as Record<string, Json>;
  const required = new Set((s.required ?? []) as string[]);
  const keys = where === 'path' ? names : Object.keys(props);
  return keys.map((name) => ({
    name,
    in: where,
    required: where === 'path' || required.has(name),
    schema: props[name] ?? { type: 'string' },
  }));
}

function operation(route: Route, tagOf: (r: Route) => string): Json {
  const pathNames = route.parts.filter((p) => p.startsWith(':')).map((p) => p.slice(1));
  const op: Json = {
    operationId: `${route.method.toLowerCase()}${route.pattern.replace(/[/:.-]+(\w)?/g, (_m, c: string | undefined) => (c ?? '').toUpperCase())}`,
    summary: route.summary,
    tags: [tagOf(route)],
    'x-cpc-auth': route.auth,
    description: `Who may call it: ${RULE_TEXT[route.auth]}.`,
    security: route.auth === 'anonymous' || route.auth === 'peer' ? [] : [{ bearer: [] }],
    parameters: [...parameters(route.params, 'path', pathNames), ...parameters(route.query, 'query', [])],
  };
  if (route.upload) {
    op.requestBody = {
      required: true,
      description: 'the file’s bytes; Content-Length is required, and they must hash to the sha256 in the path',
      content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
    };
  } else if (route.method === 'POST' || route.method === 'PUT') {
    const body = jsonSchema(route.body);
    op.requestBody = {
      required: !route.body.safeParse(undefined).success,
      content: { 'application/json': { schema: body } },
    };
  }
  const responses: Json = {
    200: route.download
      ? { description: 'the file’s bytes', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } }
      : route.text
      ? { description: 'the text', content: { 'text/plain': { schema: { type: 'string' } } } }
      : { description: 'the result', content: { 'application/json': { schema: { type: 'object' } } } },
  };
  for (const status of refusals(route)) responses[status] = { $ref: '#/components/responses/Error' };
  responses.default = { $ref: '#/components/responses/Error' };
  op.responses = responses;
  return op;
}

function addRoutes(paths: Json, router: Router, prefix: string, tagOf: (r: Route) => string, extra: Json = {}): void {
  for (const route of router.routes()) {
    if (route.method === 'HEAD') continue;
    const path = prefix + '/' + route.parts.map((p) => (p.startsWith(':') ? `{${p.slice(1)}}` : p)).join('/');
    const item = (paths[path] ??= { ...extra }) as Json;
    item[route.method.toLowerCase()] = operation(route, tagOf);
  }
}

export function openApiDocument(api: Router, unsecure: Router | null, version: string): Json {
  const paths: Json = {};
  addRoutes(paths, api, API_PREFIX, (r) => r.parts[0] ?? 'api');
  if (unsecure) {
    addRoutes(paths, unsecure, '', () => 'unsecure port', {
      servers: [{ url: 'http://{host}:{port}', variables: { host: { default: 'localhost' }, port: { default: '14807' } } }],
    });
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'cpc',
      version,
      description:
        'The API of a cpc server. Paths under /api/v1 are on the secure port (HTTPS with the server’s own CA); ' +
        'the others are on the unsecure port (plain HTTP, only what must happen before trust exists). ' +
        'Every error is {error: {code, message}} with a stable code; x-cpc-auth names the access rule of each operation. ' +
        'Peer servers talk over a websocket on /api/v1/peer/link, authenticated by client certificate; it is not described here.',
    },
    servers: [{ url: 'https://{host}:{port}', variables: { host: { default: 'localhost' }, port: { default: '13807' } } }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a user token from POST /api/v1/login, or a worker token' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: {
                code: { type: 'string', enum: Object.keys(ERROR_STATUS) },
                message: { type: 'string' },
                retryAfterS: { type: 'number', description: 'with TOO_MANY_REQUESTS: when to try again' },
              },
            },
          },
        },
      },
      responses: {
        Error: { description: 'refused; the code says why', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
      },
    },
  };
}

/** The description for given settings, without a running server (the route tables need no state to be built). */
export function describeApi(config: ServerConfig = DEFAULTS, version = '0'): Json {
  const ctx = { config, store: {} } as unknown as Context;
  return openApiDocument(apiRouter(ctx), unsecureRoutes(ctx), version);
}
