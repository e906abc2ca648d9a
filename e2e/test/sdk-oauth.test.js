// The official TypeScript MCP client against the gateway and the tool service, with tokens from an independent
// authorization server (oidc-provider configured like AuthKit, see lib/authserver.js): discovery, Dynamic Client
// Registration, PKCE, the token request with an RFC 8707 resource, all three tools, the standalone GET stream, and a
// refresh once the short-lived access token has expired.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { defaultUser as alice, scopes, startAuthServer } from '../lib/authserver.js';
import { followToRedirect } from '../lib/headless.js';
import { authorizationURL, discover, exchangeCode, initialize, jwtClaims, pkce, register } from '../lib/oauth.js';
import { identitySecret, metric, startFakeWorkOS, startGateway, startTools, waitUntil } from '../lib/services.js';

// Access tokens live this long, so that the test can wait for one to expire.
const accessTokenTTL = 5;
const workosAPIKey = 'sk_test_e2e_0123456789';
// The user object the fake WorkOS API returns for alice.
const aliceAtWorkOS = {
  object: 'user',
  id: alice.id,
  email: alice.email,
  email_verified: true,
  first_name: alice.firstName,
  last_name: alice.lastName,
  profile_picture_url: null,
  last_sign_in_at: '2026-11-01T09:00:00.000Z',
  external_id: null,
  metadata: {},
  created_at: '2026-01-01T00:00:00.000Z',
  updated_at: '2026-11-01T09:00:00.000Z',
};
// The client's redirect URI; nothing listens there: the headless user agent stops at the redirect to it.
const redirectURI = 'http://127.0.0.1:8976/callback';

/**
 * An OAuthClientProvider kept in memory. redirectToAuthorization plays the user: it follows the authorization
 * server's redirects headlessly and keeps the code that arrives at the redirect URI.
 */
class HeadlessProvider {
  redirectUrl = redirectURI;
  clientMetadata = {
    client_name: 'mcp-gateway e2e (TypeScript SDK)',
    redirect_uris: [redirectURI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    scope: scopes.join(' '),
  };
  client;
  saved = []; // every token response saved, oldest first
  verifier;
  authorizationURLs = [];
  callbacks = []; // the query of each redirect to redirectURI

  clientInformation() {
    return this.client;
  }
  saveClientInformation(info) {
    this.client = info;
  }
  tokens() {
    return this.saved.at(-1);
  }
  saveTokens(tokens) {
    this.saved.push(tokens);
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
  async redirectToAuthorization(url) {
    this.authorizationURLs.push(new URL(url));
    this.callbacks.push(await followToRedirect(url, redirectURI));
  }
}

/** A fetch that records every exchange the SDK makes (method, URL, status, content type, challenge, form body). */
function recordingFetch(log) {
  return async (input, init = {}) => {
    const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const url = input instanceof Request ? input.url : String(input);
    const entry = { method, url, body: typeof init.body === 'string' || init.body instanceof URLSearchParams ? String(init.body) : undefined };
    log.push(entry);
    const res = await fetch(input, init);
    entry.status = res.status;
    entry.contentType = res.headers.get('content-type');
    entry.wwwAuthenticate = res.headers.get('www-authenticate');
    return res;
  };
}

/** Waits for and returns the gateway's access-log record of the request that got res (matched by X-Request-Id). */
async function accessLog(service, res) {
  const id = res.headers.get('x-request-id');
  assert.ok(id, 'the gateway answers with X-Request-Id');
  const find = () => service.logs.find((r) => r.msg === 'request' && r.request_id === id);
  await waitUntil(() => find() !== undefined, `access log line of request ${id}`, service);
  return find();
}

describe('TypeScript SDK client through the gateway with oidc-provider tokens', () => {
  let as, workos, tools, gw;
  let provider, client;
  const exchanges = [];

  before(async () => {
    workos = await startFakeWorkOS(workosAPIKey, { [alice.id]: aliceAtWorkOS });
    as = await startAuthServer({ accessTokenTTL });
    tools = await startTools('sdk-tools', {
      // With sessions (the default is stateless): this test also checks that the gateway relays the tool service's
      // Mcp-Session-Id and its standalone GET stream.
      TOOLS_STATELESS: 'false',
      GATEWAY_IDENTITY_SECRET: identitySecret,
      WORKOS_API_URL: workos.url,
      MCP_USE_OAUTH_WORKOS_API_KEY: workosAPIKey,
    });
    gw = await startGateway('sdk-gateway', {
      GATEWAY_ISSUER_URL: as.issuer,
      GATEWAY_UPSTREAM_URL: tools.url,
      GATEWAY_IDENTITY_SECRET: identitySecret,
      GATEWAY_CLOCK_SKEW: '0s',
    });
  });

  after(async () => {
    await client?.close();
    await gw?.service.stop();
    await tools?.service.stop();
    await as?.close();
    await workos?.close();
  });

  function transport() {
    return new StreamableHTTPClientTransport(new URL(gw.mcpURL), { authProvider: provider, fetch: recordingFetch(exchanges) });
  }

  test('discovers, registers, authorizes with PKCE and connects', async () => {
    provider = new HeadlessProvider();
    client = new Client({ name: 'mcp-gateway-e2e', version: '1.0.0' });
    await assert.rejects(client.connect(transport()), UnauthorizedError, 'the first connect needs the user: REDIRECT');

    // What the SDK did before sending the user away: 401 → PRM → AS metadata → DCR.
    const first = exchanges[0];
    assert.equal(first.method, 'POST');
    assert.equal(first.url, gw.mcpURL);
    assert.equal(first.status, 401);
    assert.equal(first.wwwAuthenticate, `Bearer resource_metadata="${gw.url}/.well-known/oauth-protected-resource/mcp"`);
    const prm = exchanges.find((e) => e.url === `${gw.url}/.well-known/oauth-protected-resource/mcp`);
    assert.equal(prm?.status, 200, 'PRM fetched from the URL in the challenge');
    assert.ok(
      exchanges.some((e) => e.url.startsWith(`${as.issuer}/.well-known/`) && e.status === 200),
      'authorization server metadata fetched from the issuer the PRM names',
    );
    const dcr = exchanges.find((e) => e.url === `${as.issuer}/oauth2/register`);
    assert.equal(dcr?.status, 201, 'client registered dynamically');
    assert.deepEqual(as.registrations, [provider.client.client_id]);

    // The authorization request: PKCE S256 and the resource the PRM names.
    const authz = provider.authorizationURLs[0];
    assert.equal(authz.origin + authz.pathname, `${as.issuer}/oauth2/authorize`);
    assert.equal(authz.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(authz.searchParams.get('code_challenge'));
    assert.equal(authz.searchParams.get('resource'), gw.mcpURL);
    const callback = provider.callbacks[0];
    assert.ok(callback.get('code'), `a code at the redirect URI, got ${callback}`);
    assert.equal(callback.get('iss'), as.issuer, 'RFC 9207 iss on the authorization response');

    const t = transport();
    await t.finishAuth(callback.get('code'));
    const tokenReq = exchanges.findLast((e) => e.url === `${as.issuer}/oauth2/token`);
    const form = new URLSearchParams(tokenReq.body);
    assert.equal(tokenReq.status, 200);
    assert.equal(form.get('grant_type'), 'authorization_code');
    assert.equal(form.get('resource'), gw.mcpURL);
    assert.ok(form.get('code_verifier'), 'code_verifier sent');

    const tokens = provider.tokens();
    assert.ok(tokens.refresh_token, 'a refresh token is issued');
    const claims = jwtClaims(tokens.access_token);
    assert.equal(claims.iss, as.issuer);
    assert.deepEqual([claims.aud].flat(), [gw.mcpURL], 'aud is the resource');
    assert.equal(claims.sub, alice.id);
    assert.equal(claims.client_id, provider.client.client_id);
    assert.equal(claims.org_id, alice.orgId);
    assert.match(claims.sid, /^session_/);
    assert.equal(claims.email, alice.email);
    assert.ok(claims.exp - claims.iat <= accessTokenTTL);

    await client.connect(t);
    assert.equal(client.getServerVersion()?.name, 'mcp-gateway-tools');
    assert.equal(t.protocolVersion, '2025-11-25');
    assert.ok(t.sessionId, 'an Mcp-Session-Id from the tool service, through the gateway');
  });

  test('calls the three tools as the signed-in user', async () => {
    const { tools: listed } = await client.listTools();
    assert.deepEqual(listed.map((x) => x.name).sort(), ['get-user-info', 'get-user-permissions', 'get-workos-user']);

    const info = await client.callTool({ name: 'get-user-info', arguments: {} });
    assert.equal(info.isError, undefined, JSON.stringify(info));
    assert.deepEqual(info.structuredContent, {
      userId: alice.id,
      email: alice.email,
      name: alice.name,
      organizationId: alice.orgId,
    });
    assert.deepEqual(JSON.parse(info.content[0].text), info.structuredContent);

    const perms = await client.callTool({ name: 'get-user-permissions', arguments: {} });
    assert.equal(perms.isError, undefined, JSON.stringify(perms));
    assert.deepEqual(perms.structuredContent.roles, [alice.role]);
    assert.deepEqual(perms.structuredContent.permissions, alice.permissions);
    assert.deepEqual([...perms.structuredContent.scopes].sort(), [...scopes].sort());

    const before = workos.requests.length;
    const user = await client.callTool({ name: 'get-workos-user', arguments: {} });
    assert.equal(user.isError, undefined, JSON.stringify(user));
    assert.deepEqual(user.structuredContent, aliceAtWorkOS);
    const calls = workos.requests.slice(before);
    assert.deepEqual(calls, [{ method: 'GET', url: `/user_management/users/${alice.id}`, authorization: `Bearer ${workosAPIKey}` }]);
  });

  test('the standalone GET stream is relayed', async () => {
    // After notifications/initialized the SDK opens GET /mcp (Accept: text/event-stream) with the token and the
    // session id; the gateway must relay the tool service's stream as it arrives.
    await waitUntil(
      () => exchanges.some((e) => e.method === 'GET' && e.url === gw.mcpURL && e.status !== undefined),
      'the SDK to open GET /mcp',
    );
    const get = exchanges.find((e) => e.method === 'GET' && e.url === gw.mcpURL);
    assert.equal(get.status, 200);
    assert.match(get.contentType, /^text\/event-stream/);
    // Still open: the gateway counts it among its open streams (POST responses have finished by now).
    await waitUntil(async () => (await metric(gw.metricsURL, 'mcp_gateway_open_streams')) === 1, 'one open stream', gw.service);
  });

  test('refreshes after the access token expires and goes on calling tools', async () => {
    const old = provider.tokens();
    const { exp } = jwtClaims(old.access_token);
    const wait = exp * 1000 + 1000 - Date.now();
    if (wait > 0) await sleep(wait);

    const expired = await initialize(gw.mcpURL, old.access_token);
    assert.equal(expired.status, 401, 'the gateway refuses the expired token');
    assert.match(expired.headers.get('www-authenticate'), /error="invalid_token"/);
    await expired.body?.cancel();
    assert.equal((await accessLog(gw.service, expired)).reason, 'expired');

    const grantsBefore = as.grants.length;
    const info = await client.callTool({ name: 'get-user-info', arguments: {} });
    assert.equal(info.isError, undefined, JSON.stringify(info));
    assert.equal(info.structuredContent.userId, alice.id);

    assert.deepEqual(as.grants.slice(grantsBefore).map((g) => g.grantType), ['refresh_token'], 'exactly one refresh');
    const refresh = exchanges.findLast((e) => e.url === `${as.issuer}/oauth2/token`);
    const form = new URLSearchParams(refresh.body);
    assert.equal(form.get('grant_type'), 'refresh_token');
    assert.equal(form.get('refresh_token'), old.refresh_token);
    assert.equal(form.get('resource'), gw.mcpURL);
    const fresh = provider.tokens();
    assert.notEqual(fresh.access_token, old.access_token);
    assert.notEqual(fresh.refresh_token, old.refresh_token, 'the refresh token rotates');
    const claims = jwtClaims(fresh.access_token);
    assert.deepEqual([claims.aud].flat(), [gw.mcpURL], 'the refreshed token keeps the granted resource');
    assert.ok(claims.exp > exp);

    // The retry after the 401 went to the gateway with the new token, in the same session.
    const lastPost = exchanges.findLast((e) => e.method === 'POST' && e.url === gw.mcpURL);
    assert.equal(lastPost.status, 200);
    const perms = await client.callTool({ name: 'get-user-permissions', arguments: {} });
    assert.deepEqual(perms.structuredContent.roles, [alice.role]);
  });

  test('a token the same issuer minted for another resource is refused', async () => {
    const { as: meta } = await discover(gw.mcpURL);
    const other = 'http://127.0.0.1:1/mcp';
    const reg = await register(meta, redirectURI);
    const { verifier, challenge } = pkce();
    const url = authorizationURL(meta, { clientId: reg.client_id, redirectURI, challenge, state: 's1', resource: other, scope: 'openid' });
    const cb = await followToRedirect(url, redirectURI);
    assert.equal(cb.get('state'), 's1');
    const tok = await exchangeCode(meta, { clientId: reg.client_id, redirectURI, code: cb.get('code'), verifier, resource: other });
    assert.deepEqual([jwtClaims(tok.access_token).aud].flat(), [other]);

    const res = await initialize(gw.mcpURL, tok.access_token);
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate'), /error="invalid_token"/);
    await res.body?.cancel();
    assert.equal((await accessLog(gw.service, res)).reason, 'wrong_audience');
  });
});
