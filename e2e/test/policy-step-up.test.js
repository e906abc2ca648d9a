// Step-up with the official TypeScript MCP client: `gateway --dev` with a policy in which get-workos-user needs the
// scope users:read, which the client does not ask for at first (it asks for none; the development authorization server
// grants its default scopes, and grants any scope asked for). The call gets 403 insufficient_scope with every scope it
// needs, the client signs the user in again for them, and the call then succeeds.
//
// The TypeScript SDK 1.32 replaces its scope with the challenge's, but when it holds a refresh token it refreshes
// instead of signing in again: StreamableHTTPClientTransport.send (dist/esm/client/streamableHttp.js) passes the
// challenge's scope to auth(), whose authInternal (dist/esm/client/auth.js) tries the refresh token before a new
// authorization, and refreshAuthorization sends no scope (a refresh cannot widen it, RFC 6749 §6). The refreshed
// token has the old scopes, the retry gets the same 403, and the guard against repeating an upscoping throws
// "Server returned 403 after trying upscoping" (typescript-sdk issue #2255; the SDK's v2 skips the refresh when the
// challenge asks for more, PR #2356). So with 1.32, step-up works for a client that keeps no refresh token, which
// the first test is; the second pins the behaviour of one that keeps it, and that the gateway's side is right.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { jwtClaims } from '../lib/oauth.js';
import { connectSignedIn, HeadlessProvider, toolCalls } from '../lib/sdkclient.js';
import { requestRecords, startDevGateway } from '../lib/services.js';

const redirectURI = 'http://127.0.0.1:8978/callback';
const user = 'user_dev_member'; // has the permission users:read, so only the scope is missing
const policy = `# get-workos-user needs the permission users:read (the member has it) and the scope users:read (asked for
# only when a call needs it).
default: deny
rules:
  - name: everyone-reads-themselves
    tools: ["get-user-info", "get-user-permissions"]
  - name: directory-lookups
    tools: ["get-workos-user"]
    require:
      permissions: ["users:read"]
      scopes: ["users:read"]
`;
// What the development authorization server grants a client that asks for no scope, and what the 403 asks for: the
// rule's scopes and the token's, sorted.
const defaultScope = 'openid profile email offline_access';
const stepUpScope = 'email offline_access openid profile users:read';

/** The members of an audit event that say what was decided and whether the call went upstream. */
function decision(event) {
  const keys = ['gen_ai.tool.name', 'enduser.id', 'decision', 'security_rule.name', 'scopes_required', 'http.response.status_code'];
  return Object.fromEntries(keys.filter((k) => k in event).map((k) => [k, event[k]]));
}

/** The token requests recorded in log, as their form parameters. */
function tokenRequests(log, issuer) {
  return log.filter((e) => e.url === `${issuer}/oauth2/token`).map((e) => Object.fromEntries(new URLSearchParams(e.body)));
}

describe('step-up: the TypeScript SDK client signs in again for the scope a 403 names', () => {
  let dev, dir, challenge;
  const clients = [];

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcp-gateway-e2e-policy-'));
    const file = path.join(dir, 'policy.yaml');
    writeFileSync(file, policy);
    // GATEWAY_DEV_AUTOLOGIN signs the member in without the pages, at every authorization request.
    dev = await startDevGateway('policy-step-up-gateway', { GATEWAY_POLICY_FILE: file, GATEWAY_DEV_AUTOLOGIN: user });
    challenge = `Bearer error="insufficient_scope", error_description="the access token lacks a required scope", scope="${stepUpScope}", resource_metadata="${dev.url}/.well-known/oauth-protected-resource/mcp"`;
  });

  after(async () => {
    for (const c of clients) await c.close();
    await dev?.service.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a client that keeps no refresh token: 403, sign-in with the challenged scope, the call succeeds', async () => {
    const log = [];
    // A client that keeps no refresh token, and signs the user in again whenever its access token no longer serves
    // (one that keeps its tokens for the session only, say): it registers for the authorization_code grant alone and
    // drops the refresh token the development authorization server issues anyway. Finding none, the SDK answers the
    // challenge with a new authorization request for the challenge's scopes, as the 2025-11-25 spec has clients do.
    const provider = new HeadlessProvider(redirectURI, { refreshTokens: false });
    const { client, transport } = await connectSignedIn(dev.mcpURL, provider, log);
    clients.push(client);
    assert.equal(provider.authorizationURLs[0].searchParams.get('scope'), null, 'no scope asked for at first');
    assert.equal(jwtClaims(provider.tokens().access_token).scope, defaultScope);
    assert.ok(provider.issued[0].refresh_token, 'issued');
    assert.equal(provider.tokens().refresh_token, undefined, 'not kept');

    // The tool stays listed (the call will ask for the scope), and the tools that need no scope work at once.
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((t) => t.name), ['get-user-info', 'get-user-permissions', 'get-workos-user']);
    assert.equal((await client.callTool({ name: 'get-user-info', arguments: {} })).structuredContent.userId, user);

    // The call: 403 with the scopes. The SDK takes the challenge's scope and sends the user to sign in for it; like the
    // first sign-in, that ends in UnauthorizedError, for the application to finish once the code arrives.
    await assert.rejects(client.callTool({ name: 'get-workos-user', arguments: {} }), UnauthorizedError);
    const [refused] = toolCalls(log, dev.mcpURL, 'get-workos-user');
    assert.equal(refused.status, 403);
    assert.equal(refused.wwwAuthenticate, challenge);
    assert.deepEqual((await requestRecords(dev.service, refused.requestId)).audit.map(decision), [
      { 'gen_ai.tool.name': 'get-workos-user', 'enduser.id': user, decision: 'step_up', 'security_rule.name': 'directory-lookups', scopes_required: stepUpScope.split(' ') },
    ]);
    assert.equal(provider.authorizationURLs.length, 2);
    assert.equal(provider.authorizationURLs[1].searchParams.get('scope'), stepUpScope, 'the scope of the challenge');
    assert.equal(provider.authorizationURLs[1].searchParams.get('resource'), dev.mcpURL);

    // What the application does with the code at its redirect URI: exchange it, then repeat the operation.
    await transport.finishAuth(provider.lastCode());
    const second = jwtClaims(provider.tokens().access_token);
    assert.equal(second.sub, user);
    assert.equal(second.scope, stepUpScope);
    assert.ok(second.scope.split(' ').includes('users:read'), 'the second token carries the scope');
    assert.deepEqual(tokenRequests(log, dev.issuer).map((f) => f.grant_type), ['authorization_code', 'authorization_code'], 'no refresh');

    const res = await client.callTool({ name: 'get-workos-user', arguments: {} });
    assert.equal(res.isError, undefined, JSON.stringify(res));
    assert.deepEqual([res.structuredContent.id, res.structuredContent.email], [user, 'member@example.com']);
    const calls = toolCalls(log, dev.mcpURL, 'get-workos-user');
    assert.deepEqual(calls.map((c) => c.status), [403, 200]);
    assert.deepEqual((await requestRecords(dev.service, calls[1].requestId)).audit.map(decision), [
      { 'gen_ai.tool.name': 'get-workos-user', 'enduser.id': user, decision: 'allow', 'security_rule.name': 'directory-lookups', 'http.response.status_code': 200 },
    ]);
  });

  test('SDK 1.32 holding a refresh token refreshes instead of signing in again, gets the same 403 and gives up', async () => {
    const log = [];
    const provider = new HeadlessProvider(redirectURI);
    const { client } = await connectSignedIn(dev.mcpURL, provider, log);
    clients.push(client);
    const old = provider.tokens();
    assert.ok(old.refresh_token);

    await assert.rejects(client.callTool({ name: 'get-workos-user', arguments: {} }), (err) => {
      assert.ok(err instanceof StreamableHTTPError, String(err));
      assert.equal(err.code, 403);
      assert.match(err.message, /Server returned 403 after trying upscoping/);
      return true;
    });
    // The gateway challenged twice alike, for the scope the refreshed token still lacks; the SDK refreshed without
    // asking for a scope and never sent the user to sign in again.
    const calls = toolCalls(log, dev.mcpURL, 'get-workos-user');
    assert.deepEqual(calls.map((c) => [c.status, c.wwwAuthenticate]), [[403, challenge], [403, challenge]]);
    const refresh = tokenRequests(log, dev.issuer).at(-1);
    assert.equal(refresh.grant_type, 'refresh_token');
    assert.equal(refresh.refresh_token, old.refresh_token);
    assert.equal(refresh.scope, undefined);
    assert.equal(jwtClaims(provider.tokens().access_token).scope, defaultScope);
    assert.equal(provider.authorizationURLs.length, 1);
  });
});
