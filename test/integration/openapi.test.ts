/**
 * The API description: served at /api/openapi.json from the route table the
 * server checks requests against, and kept in docs/openapi.json for the
 * default settings.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { request, Agent } from 'undici';
import { apiRouter } from '../../src/server/start/api.js';
import { describeApi } from '../../src/server/start/openapi.js';
import { packageVersion } from '../../src/common/version.js';
import { cleanup, startTestServer, type TestServer } from '../helpers/server.js';

type Doc = { openapi: string; paths: Record<string, Record<string, { 'x-cpc-auth'?: string; security?: unknown[]; responses?: object }>> };

describe('the OpenAPI description', () => {
  let ts: TestServer;
  let doc: Doc;

  before(async () => {
    ts = await startTestServer({ maxJobsPerSubmit: 7 });
    const agent = new Agent({ connect: { ca: ts.server.caPem, checkServerIdentity: () => undefined } });
    const res = await request(`${ts.server.url}/api/openapi.json`, { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    doc = (await res.body.json()) as Doc;
    await agent.close();
  });
  after(cleanup);

  it('is served from the route table, with the limits in force', () => {
    assert.deepEqual(doc, describeApi(ts.server.config, ts.server.ctx.version));
    assert.equal(doc.openapi, '3.1.0');
    const submit = doc.paths['/api/v1/projects/{project}/jobs']!.post as unknown as { requestBody: { content: { 'application/json': { schema: { properties: { jobs: { maxItems: number } } } } } } };
    assert.equal(submit.requestBody.content['application/json'].schema.properties.jobs.maxItems, 7);
  });

  it('has every route, with its access rule and security', () => {
    for (const route of apiRouter(ts.server.ctx).routes()) {
      const path = '/api/v1/' + route.parts.map((p) => (p.startsWith(':') ? `{${p.slice(1)}}` : p)).join('/');
      const op = doc.paths[path]?.[route.method.toLowerCase()];
      assert.ok(op, `${route.method} ${path} is described`);
      assert.equal(op['x-cpc-auth'], route.auth);
      assert.deepEqual(op.security, route.auth === 'anonymous' || route.auth === 'peer' ? [] : [{ bearer: [] }]);
    }
    assert.ok(doc.paths['/connect-request']?.post, 'the unsecure port is described too');
  });

  it('is kept current in docs/openapi.json (npm run openapi writes it)', () => {
    const file = JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8')) as unknown;
    assert.deepEqual(file, describeApi(undefined, packageVersion()));
  });
});
