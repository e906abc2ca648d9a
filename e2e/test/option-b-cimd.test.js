// Option B with a Client ID Metadata Document: the TypeScript SDK client identifies itself with an https URL
// (clientMetadataUrl) instead of registering. The gateway fetches the document from an https server on loopback whose
// certificate it trusts through GATEWAY_CIMD_CA_FILE (GATEWAY_CIMD_ALLOW_PRIVATE lets it fetch from loopback, for this
// test only), shows the document's client_name and host on the consent page, and completes the sign-in. The gateway
// also maps claims to headers (GATEWAY_CLAIM_HEADERS), so the tool service verifies signature version 3.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { defaultUser as alice } from '../lib/authserver.js';
import { startDocumentServer } from '../lib/cimd.js';
import { startOptionB } from '../lib/optionb.js';
import { connectSignedIn, HeadlessProvider } from '../lib/sdkclient.js';

const redirectURI = 'http://127.0.0.1:8978/callback';
const clientName = 'mcp-gateway e2e (TypeScript SDK, metadata document)';

/** A HeadlessProvider that offers a metadata document URL, as the SDK's clientMetadataUrl. */
class DocumentProvider extends HeadlessProvider {
  constructor(url) {
    super(redirectURI);
    this.clientMetadataUrl = url;
  }
}

describe('Option B: the TypeScript SDK client identified by a Client ID Metadata Document', () => {
  let docs, env, session;
  const exchanges = [];

  before(async () => {
    const doc = (name, id) => (self) => ({
      client_id: id ?? self,
      client_name: name,
      redirect_uris: [redirectURI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    });
    docs = await startDocumentServer({
      '/oauth/client.json': doc(clientName),
      '/oauth/impostor.json': doc('Impostor', 'https://trusted.example/oauth/client.json'),
      '/oauth/moved.json': { status: 302, headers: { location: '/oauth/client.json' } },
    });
    env = await startOptionB('optb-cimd', 'client_secret_basic', {
      GATEWAY_CIMD_ALLOW_PRIVATE: 'true',
      GATEWAY_CIMD_CA_FILE: docs.caFile,
      GATEWAY_CLAIM_HEADERS: 'X-User-Email=email,X-Client=client_id',
    });
  });
  after(async () => {
    await session?.client.close();
    await env?.stop();
    await docs?.close();
  });

  test('the metadata says client_id_metadata_document_supported', async () => {
    const meta = await (await fetch(`${env.gw.url}/.well-known/oauth-authorization-server`)).json();
    assert.equal(meta.client_id_metadata_document_supported, true);
    assert.equal(meta.registration_endpoint, `${env.gw.url}/register`, 'registration stays for clients that use it');
  });

  test('signs in with its document URL as client id, without registering, and calls a tool', async () => {
    const docURL = docs.url('/oauth/client.json');
    const provider = new DocumentProvider(docURL);
    session = await connectSignedIn(env.gw.mcpURL, provider, exchanges);
    assert.ok(!exchanges.some((e) => e.url.endsWith('/register')), 'no registration');
    assert.equal(provider.client.client_id, docURL);
    const authz = provider.authorizationURLs[0];
    assert.equal(authz.searchParams.get('client_id'), docURL);
    assert.deepEqual(provider.trails[0].slice(0, 2).map((s) => [s.method, new URL(s.url).pathname, s.status]), [
      ['GET', '/authorize', 200],
      ['POST', '/authorize', 302],
    ], 'the consent page, then the decision');
    assert.ok(docs.hits.get('/oauth/client.json') >= 1, 'the gateway fetched the document');

    // The consent page names the document's client and its host.
    const page = await (await fetch(authz)).text();
    assert.match(page, new RegExp(clientName.replace(/[()]/g, '\\$&')));
    assert.match(page, new RegExp(`id="client-host">127\\.0\\.0\\.1:${new URL(docURL).port}<`));

    const token = exchanges.find((e) => e.url === `${env.gw.url}/token` && e.status === 200);
    assert.equal(new URLSearchParams(token.body).get('client_id'), docURL, 'the token request names the document URL');

    const info = await session.client.callTool({ name: 'get-user-info', arguments: {} });
    assert.equal(info.structuredContent.userId, alice.id, 'the tool service verified the version 3 signature');
  });

  test('refuses a document whose client_id is not its URL, and a redirect', async () => {
    for (const [path, status, text] of [
      ['/oauth/impostor.json', 400, 'not valid for its address'],
      ['/oauth/moved.json', 502, 'a redirect'],
    ]) {
      const q = new URLSearchParams({ response_type: 'code', client_id: docs.url(path), redirect_uri: redirectURI, state: 's',
        code_challenge: 'x'.repeat(43), code_challenge_method: 'S256' });
      const res = await fetch(`${env.gw.url}/authorize?${q}`, { redirect: 'manual' });
      assert.equal(res.status, status, path);
      assert.equal(res.headers.get('location'), null, `${path}: nothing is sent to the redirect URI`);
      assert.match(await res.text(), new RegExp(text), path);
    }
  });
});
