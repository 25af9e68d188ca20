import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { linkedSites, stopSite, type Site } from '../helpers/federation.js';

/**
 * A trusted peer's certificate proves who the peer is and nothing more: it
 * opens the peer link, but on the API it is no user, no super user and no
 * worker. (Copernicus gave any peer certificate super-user rights.)
 */
describe('what a peer certificate is worth on the API', () => {
  let a: Site;
  let b: Site;
  let asPeer: Agent;

  before(async () => {
    [a, b] = await linkedSites('rights-a', 'rights-b');
    await b.admin.createProject('secret');
    const id = a.server!.identity;
    asPeer = new Agent({ connect: { ca: b.caPem, cert: id.certPem, key: id.keyPem, checkServerIdentity: () => undefined } });
  });

  after(async () => {
    await asPeer.close();
    await Promise.all([a, b].map((s) => stopSite(s)));
  });

  const call = async (method: 'GET' | 'POST', path: string, body?: unknown) => {
    const res = await request(`${b.url}/api/v1${path}`, {
      method,
      dispatcher: asPeer,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await res.body.json()) as { error?: { code: string } };
    return { status: res.statusCode, code: json.error?.code };
  };

  it('is served where anyone is (the TLS handshake succeeds)', async () => {
    assert.equal((await call('GET', '/info')).status, 200);
  });

  for (const [method, path, body] of [
    ['GET', '/projects'],
    ['GET', '/projects/secret'],
    ['POST', '/projects', { name: 'mine' }],
    ['GET', '/workers'],
    ['GET', '/worker-tokens'],
    ['POST', '/worker-tokens', { name: 'stolen' }],
    ['GET', '/peers'],
    ['POST', '/workers', { name: 'w', host: 'h', cores: 1, memoryMb: 1 }],
  ] as const) {
    it(`gets no rights on ${method} ${path}`, async () => {
      assert.deepEqual(await call(method, path, body), { status: 401, code: 'UNAUTHENTICATED' });
    });
  }

  it('left nothing changed', async () => {
    assert.deepEqual(
      (await b.admin.projects()).projects.map((p) => p.name),
      ['secret'],
    );
    assert.equal((await b.admin.workerTokens()).tokens.length, 1);
  });
});
