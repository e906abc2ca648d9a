// Option B end to end: an authorization server without Dynamic Client Registration (oidc-provider with registration
// off) and one client pre-registered there, whose redirect URI is the gateway's /callback. MCP clients register with
// the gateway instead, go through its consent page, and get tokens the gateway verifies as in direct mode (issuer
// the authorization server, audience the MCP URL).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { defaultUser as alice, scopes } from '../lib/authserver.js';
import { CookieJar, followToRedirect, followUntil } from '../lib/headless.js';
import { authorizationURL, discover, exchangeCode, initialize, jwtClaims, pkce, register, tokenRequest } from '../lib/oauth.js';
import { startOptionB, upstreamClientID } from '../lib/optionb.js';

const redirectURI = 'http://127.0.0.1:8977/callback';

/**
 * An OAuthClientProvider kept in memory whose user allows the consent page and signs in headlessly. Its client
 * metadata names no scope, as most clients' do: the SDK then takes the scope from the protected resource metadata.
 */
class ConsentingProvider {
  redirectUrl = redirectURI;
  clientMetadata = {
    client_name: 'mcp-gateway e2e (TypeScript SDK, Option B)',
    redirect_uris: [redirectURI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  };
  client;
  saved = [];
  verifier;
  authorizationURLs = [];
  callbacks = [];
  trails = [];

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
    const trail = [];
    this.trails.push(trail);
    this.callbacks.push(await followToRedirect(url, redirectURI, { consent: 'allow', trail }));
  }
}

/** A fetch that records every exchange the SDK makes. */
function recordingFetch(log) {
  return async (input, init = {}) => {
    const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const url = input instanceof Request ? input.url : String(input);
    const entry = { method, url };
    log.push(entry);
    const res = await fetch(input, init);
    entry.status = res.status;
    return res;
  };
}

describe('Option B: the TypeScript SDK client with a pre-registered client (client_secret_basic upstream)', () => {
  let env, provider, client;
  const exchanges = [];

  before(async () => {
    env = await startOptionB('optb-basic', 'client_secret_basic');
  });
  after(async () => {
    await client?.close();
    await env?.stop();
  });

  const transport = () =>
    new StreamableHTTPClientTransport(new URL(env.gw.mcpURL), { authProvider: provider, fetch: recordingFetch(exchanges) });

  test('the authorization server has no registration endpoint', async () => {
    const res = await fetch(`${env.as.issuer}/oauth2/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: [redirectURI] }),
    });
    assert.notEqual(res.status, 201);
    await res.body?.cancel();
  });

  test('registers with the gateway, consents, signs in and connects', async () => {
    const { gw, as } = env;
    provider = new ConsentingProvider();
    client = new Client({ name: 'mcp-gateway-e2e', version: '1.0.0' });
    await assert.rejects(client.connect(transport()), UnauthorizedError);

    const prm = await (await fetch(`${gw.url}/.well-known/oauth-protected-resource/mcp`)).json();
    assert.deepEqual(prm.authorization_servers, [gw.url], 'the PRM names the gateway');
    assert.deepEqual(prm.scopes_supported, scopes.filter((s) => s !== 'offline_access'), "the PRM advertises the authorization server's scopes");
    const asMeta = await (await fetch(`${gw.url}/.well-known/oauth-authorization-server`)).json();
    assert.deepEqual(asMeta.scopes_supported, scopes, "and so does the gateway's authorization server metadata");
    const dcr = exchanges.find((e) => e.url === `${gw.url}/register`);
    assert.equal(dcr?.status, 201, 'the client registered with the gateway');
    assert.deepEqual(as.registrations, [], 'nothing registered at the authorization server');
    assert.match(provider.client.client_id, /^mcpgw_/);

    const authz = provider.authorizationURLs[0];
    assert.equal(authz.origin + authz.pathname, `${gw.url}/authorize`);
    assert.equal(authz.searchParams.get('resource'), gw.mcpURL);
    const trail = provider.trails[0];
    assert.deepEqual(trail.slice(0, 2).map((s) => [s.method, new URL(s.url).pathname, s.status]), [
      ['GET', '/authorize', 200],
      ['POST', '/authorize', 302],
    ], 'the consent page, then the decision');
    const upstream = new URL(trail[2].url);
    assert.equal(upstream.origin + upstream.pathname, `${as.issuer}/oauth2/authorize`);
    assert.equal(upstream.searchParams.get('client_id'), upstreamClientID);
    assert.equal(upstream.searchParams.get('redirect_uri'), `${gw.url}/callback`);
    assert.equal(upstream.searchParams.get('resource'), gw.mcpURL, 'resource kept');
    assert.equal(upstream.searchParams.get('code_challenge'), authz.searchParams.get('code_challenge'), 'PKCE kept');
    assert.equal(authz.searchParams.get('scope'), prm.scopes_supported.join(' '), 'the SDK took its scope from the PRM');
    assert.equal(upstream.searchParams.get('scope'), authz.searchParams.get('scope'), 'scope kept');
    assert.ok(trail.some((s) => new URL(s.url).pathname === '/callback' && s.status === 302), 'through the gateway callback');

    const callback = provider.callbacks[0];
    assert.equal(callback.get('iss'), gw.url, 'RFC 9207 iss is the gateway');
    assert.equal(callback.get('state'), authz.searchParams.get('state'), "the client's own state");

    const t = transport();
    await t.finishAuth(callback.get('code'));
    assert.equal(exchanges.findLast((e) => e.url === `${gw.url}/token`)?.status, 200);
    const claims = jwtClaims(provider.tokens().access_token);
    assert.equal(claims.iss, as.issuer, 'the token is the authorization server’s');
    assert.deepEqual([claims.aud].flat(), [gw.mcpURL]);
    assert.equal(claims.client_id, upstreamClientID);
    assert.equal(claims.sub, alice.id);
    assert.ok(provider.tokens().refresh_token);
    await client.connect(t);
    assert.equal(client.getServerVersion()?.name, 'mcp-gateway-tools');
  });

  test('calls the three tools', async () => {
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((x) => x.name).sort(), ['get-user-info', 'get-user-permissions', 'get-workos-user']);
    const info = await client.callTool({ name: 'get-user-info', arguments: {} });
    assert.equal(info.structuredContent.userId, alice.id);
    const perms = await client.callTool({ name: 'get-user-permissions', arguments: {} });
    assert.deepEqual(perms.structuredContent.roles, [alice.role]);
    // No WorkOS API key in this set-up: the tool answers with a tool error, through the gateway.
    const user = await client.callTool({ name: 'get-workos-user', arguments: {} });
    assert.ok(user.content?.length, JSON.stringify(user));
  });

  test('refreshes through the gateway once the access token expires', async () => {
    const old = provider.tokens();
    const { exp } = jwtClaims(old.access_token);
    const wait = exp * 1000 + 1000 - Date.now();
    if (wait > 0) await sleep(wait);
    const grantsBefore = env.as.grants.length;
    const info = await client.callTool({ name: 'get-user-info', arguments: {} });
    assert.equal(info.structuredContent.userId, alice.id);
    assert.deepEqual(
      env.as.grants.slice(grantsBefore),
      [{ grantType: 'refresh_token', clientId: upstreamClientID }],
      'exactly one refresh, as the pre-registered client',
    );
    assert.notEqual(provider.tokens().access_token, old.access_token);
  });
});

for (const upstreamAuthMethod of ['client_secret_basic', 'client_secret_post']) {
  describe(`Option B: confidential and hostile clients (${upstreamAuthMethod} upstream)`, () => {
    let env, meta;

    before(async () => {
      env = await startOptionB(`optb-${upstreamAuthMethod}`, upstreamAuthMethod);
      meta = (await discover(env.gw.mcpURL)).as;
    });
    after(() => env?.stop());

    /** Registers a client with the gateway and signs in through consent; returns the registration and the callback. */
    async function signIn(authMethod) {
      const res = await fetch(meta.registration_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ client_name: `e2e ${authMethod}`, redirect_uris: [redirectURI], token_endpoint_auth_method: authMethod }),
      });
      assert.equal(res.status, 201);
      const reg = await res.json();
      const { verifier, challenge } = pkce();
      const url = authorizationURL(meta, { clientId: reg.client_id, redirectURI, challenge, state: 'st', resource: env.gw.mcpURL });
      const cb = await followToRedirect(url, redirectURI, { consent: 'allow' });
      assert.equal(cb.get('iss'), env.gw.url);
      return { reg, verifier, code: cb.get('code') };
    }

    for (const authMethod of ['client_secret_basic', 'client_secret_post']) {
      test(`a ${authMethod} client gets a token and a refresh`, async () => {
        const { reg, verifier, code } = await signIn(authMethod);
        assert.ok(reg.client_secret, 'a confidential registration gets a secret');
        assert.equal(reg.token_endpoint_auth_method, authMethod);
        const tok = await exchangeCode(meta, { clientId: reg.client_id, clientSecret: reg.client_secret, authMethod, redirectURI, code, verifier, resource: env.gw.mcpURL });
        const res = await initialize(env.gw.mcpURL, tok.access_token);
        assert.equal(res.status, 200);
        await res.body?.cancel();

        const refreshed = await tokenRequest(meta, {
          grant: { grant_type: 'refresh_token', refresh_token: tok.refresh_token, resource: env.gw.mcpURL },
          clientId: reg.client_id,
          clientSecret: reg.client_secret,
          authMethod,
          json: authMethod === 'client_secret_post',
        });
        const body = await refreshed.json();
        assert.equal(refreshed.status, 200, JSON.stringify(body));
        assert.deepEqual([jwtClaims(body.access_token).aud].flat(), [env.gw.mcpURL]);
      });
    }

    test('a wrong client secret is refused before the authorization server is asked', async () => {
      const { reg, verifier, code } = await signIn('client_secret_basic');
      const before = env.as.grants.length;
      const res = await tokenRequest(meta, {
        grant: { grant_type: 'authorization_code', code, redirect_uri: redirectURI, code_verifier: verifier },
        clientId: reg.client_id,
        clientSecret: 'guessed',
        authMethod: 'client_secret_basic',
      });
      assert.equal(res.status, 401);
      assert.equal((await res.json()).error, 'invalid_client');
      assert.equal(env.as.grants.length, before);
    });

    test("a code presented with another client's id is refused", async () => {
      const { verifier, code } = await signIn('none');
      const other = await register(meta, redirectURI, 'another client');
      const res = await tokenRequest(meta, {
        grant: { grant_type: 'authorization_code', code, redirect_uri: redirectURI, code_verifier: verifier },
        clientId: other.client_id,
      });
      assert.equal(res.status, 400);
      assert.equal((await res.json()).error, 'invalid_grant');
    });

    test('client_credentials is refused by the gateway, never passed on', async () => {
      const reg = await register(meta, redirectURI, 'client credentials');
      const before = env.as.grants.length;
      const res = await tokenRequest(meta, { grant: { grant_type: 'client_credentials' }, clientId: reg.client_id });
      assert.equal(res.status, 400);
      assert.equal((await res.json()).error, 'unsupported_grant_type');
      assert.equal(env.as.grants.length, before);
    });

    test('a client that sends no scope and no resource signs in with the default scope, for this MCP server only', async () => {
      const reg = await register(meta, redirectURI, 'no scope');
      const { verifier, challenge } = pkce();
      const trail = [];
      const cb = await followToRedirect(authorizationURL(meta, { clientId: reg.client_id, redirectURI, challenge, state: 'ns' }), redirectURI, { consent: 'allow', trail });
      assert.ok(cb.get('code'), `the authorization server refused: ${cb}`);
      const upstream = new URL(trail.find((s) => s.url.startsWith(`${env.as.issuer}/oauth2/authorize`)).url);
      assert.equal(upstream.searchParams.get('scope'), 'openid profile email', 'the default scope went upstream');
      assert.equal(upstream.searchParams.get('resource'), env.gw.mcpURL, "and the gateway's resource");
      const tok = await exchangeCode(meta, { clientId: reg.client_id, redirectURI, code: cb.get('code'), verifier });
      assert.deepEqual([jwtClaims(tok.access_token).aud].flat(), [env.gw.mcpURL]);
      const res = await initialize(env.gw.mcpURL, tok.access_token);
      assert.equal(res.status, 200);
      await res.body?.cancel();
    });

    test('a token for another resource is refused at /authorize and /token', async () => {
      const reg = await register(meta, redirectURI, 'another resource');
      const { challenge } = pkce();
      const url = authorizationURL(meta, { clientId: reg.client_id, redirectURI, challenge, state: 'g', resource: 'https://graph.example.com/', scope: 'Mail.ReadWrite' });
      const res = await fetch(url, { redirect: 'manual' });
      assert.equal(res.status, 400);
      assert.equal(res.headers.get('location'), null);
      assert.match(await res.text(), /issues tokens for resource/);
      const before = env.as.grants.length;
      const tok = await tokenRequest(meta, {
        grant: { grant_type: 'refresh_token', refresh_token: 'x', resource: 'https://graph.example.com/' },
        clientId: reg.client_id,
      });
      assert.equal(tok.status, 400);
      assert.equal((await tok.json()).error, 'invalid_target');
      assert.equal(env.as.grants.length, before);
    });

    test('a callback opened without the browser that started the sign-in stops on a page', async () => {
      const reg = await register(meta, redirectURI, 'bound state');
      const { challenge } = pkce();
      const url = authorizationURL(meta, { clientId: reg.client_id, redirectURI, challenge, state: 'b' });
      const cb = await followUntil(url, (u) => u.origin === env.gw.url && u.pathname === '/callback', { consent: 'allow' });
      cb.searchParams.set('error', 'access_denied');
      cb.searchParams.set('error_uri', 'https://attacker.example/');
      const res = await fetch(cb, { redirect: 'manual' });
      assert.equal(res.status, 400);
      assert.equal(res.headers.get('location'), null);
      assert.match(await res.text(), /another browser/);
    });

    test('registration refuses redirect URIs a browser or the system would run, and keeps private-use ones', async () => {
      for (const uri of ['javascript:alert(1)', 'data:text/html,x', 'ms-msdt:/id x', 'file:///etc/passwd', 'http://192.0.2.1/cb']) {
        const res = await fetch(meta.registration_endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ redirect_uris: [uri], token_endpoint_auth_method: 'none' }),
        });
        assert.equal(res.status, 400, uri);
        assert.equal((await res.json()).error, 'invalid_redirect_uri', uri);
      }
      const res = await fetch(meta.registration_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          redirect_uris: ['cursor://anysphere.cursor-mcp/oauth/callback', 'com.example.app:/cb', 'https://vscode.dev/redirect', 'http://127.0.0.1:33418/'],
          token_endpoint_auth_method: 'none',
        }),
      });
      assert.equal(res.status, 201);
      await res.body?.cancel();
    });

    test('a wrong redirect URI, a forged client id and a replayed state stop with a page, not a redirect', async () => {
      const reg = await register(meta, redirectURI, 'redirects');
      const { challenge } = pkce();
      const wrong = authorizationURL(meta, { clientId: reg.client_id, redirectURI: 'http://127.0.0.1:8977/elsewhere', challenge, state: 's' });
      let res = await fetch(wrong, { redirect: 'manual' });
      assert.equal(res.status, 400);
      assert.equal(res.headers.get('location'), null);
      assert.match(await res.text(), /did not register/);

      const forged = authorizationURL(meta, { clientId: `${reg.client_id.slice(0, -2)}xx`, redirectURI, challenge, state: 's' });
      res = await fetch(forged, { redirect: 'manual' });
      assert.equal(res.status, 400);
      assert.match(await res.text(), /Unknown application/);

      const trail = [];
      const jar = new CookieJar();
      await followToRedirect(authorizationURL(meta, { clientId: reg.client_id, redirectURI, challenge, state: 's' }), redirectURI, { consent: 'allow', trail, jar });
      const callback = trail.find((s) => new URL(s.url).pathname === '/callback');
      res = await fetch(callback.url, { redirect: 'manual', headers: { cookie: jar.header(callback.url) } });
      assert.equal(res.status, 400, 'the same callback a second time');
      assert.match(await res.text(), /already used/);
    });

    test('denying consent sends access_denied back to the client', async () => {
      const reg = await register(meta, redirectURI, 'denied');
      const { challenge } = pkce();
      const cb = await followToRedirect(authorizationURL(meta, { clientId: reg.client_id, redirectURI, challenge, state: 'd1' }), redirectURI, { consent: 'deny' });
      assert.equal(cb.get('error'), 'access_denied');
      assert.equal(cb.get('state'), 'd1');
      assert.equal(cb.get('iss'), env.gw.url);
    });
  });
}
