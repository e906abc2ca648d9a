// Two independent authorization servers (oidc-provider) behind one gateway: A issues JWT access tokens, B opaque ones
// that only its introspection endpoint (RFC 7662) can tell about, which the gateway asks with a confidential client of
// its own. Both sign with the same kid, each with its own key. The official TypeScript MCP client goes through the
// gateway with a token of each; a token of A signed with B's key under that kid, and an opaque token B issued for
// another resource, are refused.
import assert from 'node:assert/strict';
import { createPrivateKey, sign } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { defaultUser as alice, scopes, startAuthServer } from '../lib/authserver.js';
import { followToRedirect } from '../lib/headless.js';
import { authorizationURL, exchangeCode, getJSON, initialize, jwtClaims, pkce, register } from '../lib/oauth.js';
import { connectSignedIn, HeadlessProvider, recordingFetch } from '../lib/sdkclient.js';
import { identitySecret, metric, startGateway, startTools, waitUntil } from '../lib/services.js';

const redirectURI = 'http://127.0.0.1:8977/callback';
// B's user: another person than A's.
const bob = { ...alice, id: 'user_01E2EBOB000000000000000000', email: 'bob@example.com', name: 'Bob Example', firstName: 'Bob' };
// How long the gateway trusts an introspection answer: a revoked token works that long.
const cacheTTL = 3;
// The gateway's client at B, allowed to introspect.
const introspector = { client_id: 'mcp-gateway-rs', client_secret: 'e2e-introspection-secret-0123456789' };

/** Signs claims as a compact JWS (RS256) with the private JWK key, under the key's kid. */
function signJWT(key, claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${enc({ alg: 'RS256', typ: 'at+jwt', kid: key.kid })}.${enc(claims)}`;
  return `${input}.${sign('RSA-SHA256', Buffer.from(input), createPrivateKey({ key, format: 'jwk' })).toString('base64url')}`;
}

/** Signs bob in at B with a client of its own and returns B's token response for resource, with that client's id. */
async function tokenFromB(as, resource) {
  const meta = await getJSON(`${as.issuer}/.well-known/openid-configuration`);
  const reg = await register(meta, redirectURI);
  const { verifier, challenge } = pkce();
  const url = authorizationURL(meta, { clientId: reg.client_id, redirectURI, challenge, state: 's', resource, scope: scopes.join(' ') });
  const cb = await followToRedirect(url, redirectURI);
  const tok = await exchangeCode(meta, { clientId: reg.client_id, redirectURI, code: cb.get('code'), verifier, resource });
  return { ...tok, client_id: reg.client_id };
}

/** The reason on the gateway's access line of the request that got res. */
async function reasonOf(gw, res) {
  const id = res.headers.get('x-request-id');
  const find = () => gw.service.logs.find((r) => r.msg === 'request' && r.request_id === id);
  await waitUntil(() => find() !== undefined, `access line of request ${id}`, gw.service);
  return find().reason;
}

describe('two issuers, JWT and opaque, through one gateway', () => {
  let a, b, tools, gw;
  const clients = [];

  before(async () => {
    a = await startAuthServer();
    b = await startAuthServer({
      user: bob,
      accessTokenFormat: 'opaque',
      clients: [{ ...introspector, grant_types: [], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic' }],
    });
    tools = await startTools('issuers-tools', { GATEWAY_IDENTITY_SECRET: identitySecret });
    gw = await startGateway('issuers-gateway', {
      GATEWAY_ISSUER_URL: `${a.issuer},${b.issuer}`,
      GATEWAY_UPSTREAM_URL: tools.url,
      GATEWAY_IDENTITY_SECRET: identitySecret,
      GATEWAY_INTROSPECTION_ISSUER: b.issuer,
      GATEWAY_INTROSPECTION_CLIENT_ID: introspector.client_id,
      GATEWAY_INTROSPECTION_CLIENT_SECRET: introspector.client_secret,
      GATEWAY_INTROSPECTION_CACHE_TTL: `${cacheTTL}s`,
    });
  });

  after(async () => {
    for (const c of clients) await c.close();
    await gw?.service.stop();
    await tools?.service.stop();
    await a?.close();
    await b?.close();
  });

  test('the protected resource metadata lists both issuers, in order', async () => {
    const prm = await getJSON(`${gw.url}/.well-known/oauth-protected-resource/mcp`);
    assert.deepEqual(prm.authorization_servers, [a.issuer, b.issuer]);
  });

  test('the TypeScript SDK signs in with the first issuer (JWT) and calls a tool', async () => {
    const provider = new HeadlessProvider(redirectURI);
    provider.clientMetadata.scope = scopes.join(' '); // oidc-provider grants nothing without openid
    const { client } = await connectSignedIn(gw.mcpURL, provider, []);
    clients.push(client);
    assert.equal(provider.authorizationURLs[0].origin, a.issuer, 'the SDK chose authorization_servers[0]');
    assert.equal(jwtClaims(provider.tokens().access_token).iss, a.issuer);
    const info = await client.callTool({ name: 'get-user-info', arguments: {} });
    assert.equal(info.structuredContent.userId, alice.id);
  });

  test("the TypeScript SDK goes through with B's opaque token, verified by introspection", async () => {
    const tok = await tokenFromB(b, gw.mcpURL);
    assert.equal(tok.access_token.split('.').length, 1, 'B issues opaque access tokens');
    const provider = { tokens: () => tok, clientInformation: () => undefined, clientMetadata: {}, redirectUrl: redirectURI };
    const client = new Client({ name: 'mcp-gateway-e2e', version: '1.0.0' });
    const log = [];
    await client.connect(new StreamableHTTPClientTransport(new URL(gw.mcpURL), { authProvider: provider, fetch: recordingFetch(log) }));
    clients.push(client);
    const info = await client.callTool({ name: 'get-user-info', arguments: {} });
    assert.equal(info.isError, undefined, JSON.stringify(info));
    assert.equal(info.structuredContent.userId, bob.id, "the identity comes from B's introspection answer");
    await client.callTool({ name: 'get-user-info', arguments: {} });
    const calls = await metric(gw.metricsURL, 'mcp_gateway_introspections_total{outcome="active"}');
    assert.equal(calls, 1, 'one introspection for every request with the token: the answer is cached');
  });

  test("a token of A signed with B's key under the kid both use is refused", async () => {
    assert.equal(a.signingKey.kid, b.signingKey.kid);
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: a.issuer, sub: 'mallory', aud: gw.mcpURL, exp: now + 300, iat: now, scope: 'openid' };
    const forged = await initialize(gw.mcpURL, signJWT(b.signingKey, claims));
    await forged.body?.cancel();
    assert.equal(forged.status, 401);
    assert.match(forged.headers.get('www-authenticate'), /error="invalid_token"/);
    assert.equal(await reasonOf(gw, forged), 'bad_signature');
    // The same claims signed with A's own key pass: only the key was wrong.
    const genuine = await initialize(gw.mcpURL, signJWT(a.signingKey, claims));
    await genuine.body?.cancel();
    assert.equal(genuine.status, 200);
  });

  test('an opaque token B issued for another resource is refused for its audience', async () => {
    const tok = await tokenFromB(b, 'http://127.0.0.1:1/mcp');
    const res = await initialize(gw.mcpURL, tok.access_token);
    await res.body?.cancel();
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate'), /error="invalid_token"/);
    assert.equal(await reasonOf(gw, res), 'wrong_audience');
  });

  test('a revoked opaque token works until its cached answer expires, then is inactive', async () => {
    const tok = await tokenFromB(b, gw.mcpURL);
    const first = await initialize(gw.mcpURL, tok.access_token);
    await first.body?.cancel();
    assert.equal(first.status, 200);
    const revoked = await fetch(`${b.issuer}/oauth2/revocation`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: tok.access_token, client_id: tok.client_id }),
    });
    assert.equal(revoked.status, 200, await revoked.text());
    const revokedAt = Date.now();
    let res;
    await waitUntil(async () => {
      res = await initialize(gw.mcpURL, tok.access_token);
      await res.body?.cancel();
      return res.status === 401;
    }, 'the revoked token refused', gw.service);
    assert.ok(Date.now() - revokedAt <= (cacheTTL + 2) * 1000, 'refused within the cache TTL of the revocation');
    assert.equal(await reasonOf(gw, res), 'inactive');
  });

  test('a made-up opaque token is inactive', async () => {
    const res = await initialize(gw.mcpURL, 'made-up-opaque-token-0123456789');
    await res.body?.cancel();
    assert.equal(res.status, 401);
    assert.equal(await reasonOf(gw, res), 'inactive');
  });
});
