// The official TypeScript MCP client against `gateway --dev` and its example policy (docs/policy.md, "Development
// mode's policy"), signed in as each of the three demo users through its own OAuth flow and the development
// authorization server's sign-in and consent pages: what tools/list shows each user, that every listed tool can be
// called, and that a call the policy denies gets the unknown-tool error from the gateway and never goes to the tool
// service (the gateway's audit event of the call has no upstream status; a forwarded call's has one).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { McpError } from '@modelcontextprotocol/sdk/types.js';

import { jwtClaims } from '../lib/oauth.js';
import { connectSignedIn, HeadlessProvider, toolCalls } from '../lib/sdkclient.js';
import { metric, requestRecords, startDevGateway } from '../lib/services.js';

// The client's redirect URI; nothing listens there: the headless user agent stops at the redirect to it.
const redirectURI = 'http://127.0.0.1:8977/callback';
const allTools = ['get-user-info', 'get-user-permissions', 'get-workos-user'];
// What the development authorization server grants a client that asks for no scope.
const defaultScope = 'openid profile email offline_access';

// The demo users (cmd/gateway/internal/devauth/users.go) and what the example policy lets each do: the rule that
// grants each tool they may call, and the names they may not call, each denied by the last rule that covers it.
const users = [
  {
    id: 'user_dev_admin', email: 'admin@example.com', name: 'Ada Admin', org: 'org_dev_acme',
    roles: ['admin'], permissions: ['users:read', 'users:write', 'billing:manage'],
    allowed: { 'get-user-info': 'everyone-reads-themselves', 'get-user-permissions': 'everyone-reads-themselves', 'get-workos-user': 'directory-lookups' },
    denied: {},
  },
  {
    id: 'user_dev_member', email: 'member@example.com', name: 'Max Member', org: 'org_dev_acme',
    roles: ['member'], permissions: ['users:read'],
    allowed: { 'get-user-info': 'everyone-reads-themselves', 'get-user-permissions': 'everyone-reads-themselves', 'get-workos-user': 'directory-lookups' },
    denied: { 'no-such-tool': 'admins' },
  },
  {
    id: 'user_dev_guest', email: 'guest@example.com', name: 'Gus Guest', org: undefined,
    roles: [], permissions: [],
    allowed: { 'get-user-info': 'everyone-reads-themselves', 'get-user-permissions': 'everyone-reads-themselves' },
    // A hidden tool and a tool that exists nowhere get the same answer.
    denied: { 'get-workos-user': 'admins', 'no-such-tool': 'admins' },
  },
];

/** The members of an audit event that say who, what, the decision and whether the call went upstream. */
function decision(event) {
  const keys = ['gen_ai.tool.name', 'enduser.id', 'decision', 'security_rule.name', 'http.response.status_code', 'rpc.response.status_code'];
  return Object.fromEntries(keys.filter((k) => k in event).map((k) => [k, event[k]]));
}

describe('TypeScript SDK client as each demo user of gateway --dev and its example policy', () => {
  let dev;
  const clients = [];
  let lookups = 0; // the limit test's calls of get-workos-user: each is allowed by directory-lookups, then counted

  before(async () => {
    // No GATEWAY_POLICY_FILE: development mode loads its example policy. No GATEWAY_DEV_AUTOLOGIN: the users choose
    // themselves on the sign-in page.
    dev = await startDevGateway('policy-dev-gateway');
    assert.ok(dev.service.logs.some((r) => r.msg === 'policy loaded: tools, prompts and resources are decided per caller'));
  });

  after(async () => {
    for (const c of clients) await c.close();
    await dev?.service.stop();
  });

  for (const user of users) {
    test(`${user.id}: signs in, lists ${Object.keys(user.allowed).length} tools, calls them, and is refused the others unforwarded`, async () => {
      const log = [];
      const provider = new HeadlessProvider(redirectURI, { signIn: user.id });
      const { client } = await connectSignedIn(dev.mcpURL, provider, log);
      clients.push(client);

      // Through the sign-in page (choosing the user) and the consent page.
      const posts = provider.trails[0].filter((r) => r.method === 'POST').map((r) => [new URL(r.url).pathname.split('/').at(-1), r.status]);
      assert.deepEqual(posts, [['sign-in', 303], ['consent', 303]]);
      // The SDK's own defaults: no scope asked for (the gateway's challenge and metadata name none), the resource the
      // metadata names; the token is the chosen user's.
      const authz = provider.authorizationURLs[0];
      assert.equal(authz.searchParams.get('scope'), null);
      assert.equal(authz.searchParams.get('resource'), dev.mcpURL);
      const claims = jwtClaims(provider.tokens().access_token);
      assert.equal(claims.sub, user.id);
      assert.equal(claims.scope, defaultScope);

      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((t) => t.name), Object.keys(user.allowed));
      const listed = log.findLast((e) => e.rpc?.method === 'tools/list');
      const [listEvent] = (await requestRecords(dev.service, listed.requestId)).audit;
      assert.equal(listEvent.items_in, allTools.length);
      assert.equal(listEvent.items_out, Object.keys(user.allowed).length);

      for (const [name, rule] of Object.entries(user.allowed)) {
        const res = await client.callTool({ name, arguments: {} });
        assert.equal(res.isError, undefined, `${name}: ${JSON.stringify(res)}`);
        const got = res.structuredContent;
        if (name === 'get-user-info') {
          assert.deepEqual(got, { userId: user.id, email: user.email, name: user.name, ...(user.org && { organizationId: user.org }) });
        } else if (name === 'get-user-permissions') {
          assert.deepEqual([got.roles ?? [], got.permissions ?? []], [user.roles, user.permissions]);
        } else {
          assert.deepEqual([got.object, got.id, got.email], ['user', user.id, user.email]);
        }
        const [call] = toolCalls(log, dev.mcpURL, name);
        const { audit } = await requestRecords(dev.service, call.requestId);
        assert.deepEqual(audit.map(decision), [
          { 'gen_ai.tool.name': name, 'enduser.id': user.id, decision: 'allow', 'security_rule.name': rule, 'http.response.status_code': 200 },
        ]);
      }

      for (const [name, rule] of Object.entries(user.denied)) {
        await assert.rejects(client.callTool({ name, arguments: {} }), (err) => {
          assert.ok(err instanceof McpError, String(err));
          assert.equal(err.code, -32602);
          assert.equal(err.message, `MCP error -32602: Unknown tool: ${name}`);
          return true;
        });
        // Answered by the gateway: the audit event has no upstream status, the decision is the policy's, and the
        // access line is the request's only one.
        const [call] = toolCalls(log, dev.mcpURL, name);
        assert.equal(call.status, 200);
        const { access, audit } = await requestRecords(dev.service, call.requestId);
        assert.deepEqual(audit.map(decision), [
          { 'gen_ai.tool.name': name, 'enduser.id': user.id, decision: 'deny', 'security_rule.name': rule, 'rpc.response.status_code': -32602 },
        ]);
        assert.equal(access.status, 200);
        assert.equal(access.sub, user.id);
      }
    });
  }

  test('a lookup over the rule\'s limit gets 429 with the gateway\'s JSON-RPC error, unforwarded, and the session goes on', async () => {
    // directory-lookups allows each user 5 lookups at once, then one every 2 s: a burst of calls runs out.
    const log = [];
    const provider = new HeadlessProvider(redirectURI, { signIn: 'user_dev_member' });
    const { client } = await connectSignedIn(dev.mcpURL, provider, log);
    clients.push(client);
    let err;
    for (let i = 0; i < 10 && !err; i++) {
      lookups++;
      err = await client.callTool({ name: 'get-workos-user', arguments: {} }).then(() => undefined, (e) => e);
    }
    assert.ok(err, 'ten lookups in a row all passed a limit of 5 at once');
    assert.equal(err.code, 429, String(err));
    const body = JSON.parse(err.message.slice(err.message.indexOf('{')));
    const call = toolCalls(log, dev.mcpURL, 'get-workos-user').at(-1);
    assert.equal(call.status, 429);
    assert.equal(body.error.code, 429);
    assert.match(body.error.message, /^Rate limit exceeded for tool get-workos-user: retry after [12] s$/);
    assert.ok(body.error.data.retryAfterSeconds >= 1);
    const { access, audit } = await requestRecords(dev.service, call.requestId);
    assert.deepEqual(audit.map(decision), [
      { 'gen_ai.tool.name': 'get-workos-user', 'enduser.id': 'user_dev_member', decision: 'allow', 'security_rule.name': 'directory-lookups', 'rpc.response.status_code': 429 },
    ]);
    assert.equal(access.status, 429);
    assert.equal(access.limit, 'tool_rate');
    // The same session goes on: other tools are not counted.
    const res = await client.callTool({ name: 'get-user-info', arguments: {} });
    assert.equal(res.isError, undefined);
  });

  test('a name the policy grants but the tool service lacks is forwarded, and the tool service answers', async () => {
    // The contrast to the denials above: the admin's rule covers every name, so the gateway forwards the call, the
    // tool service answers with its own unknown-tool error, and the audit event carries the upstream's status.
    const log = [];
    const provider = new HeadlessProvider(redirectURI, { signIn: 'user_dev_admin' });
    const { client } = await connectSignedIn(dev.mcpURL, provider, log);
    clients.push(client);
    const err = await client.callTool({ name: 'no-such-tool', arguments: {} }).then(() => undefined, (e) => e);
    assert.ok(err instanceof McpError, String(err));
    assert.equal(err.code, -32602);
    assert.notEqual(err.message, 'MCP error -32602: Unknown tool: no-such-tool', 'the tool service words it its own way');
    const [call] = toolCalls(log, dev.mcpURL, 'no-such-tool');
    const { audit } = await requestRecords(dev.service, call.requestId);
    assert.deepEqual(audit.map(decision), [
      { 'gen_ai.tool.name': 'no-such-tool', 'enduser.id': 'user_dev_admin', decision: 'allow', 'security_rule.name': 'admins', 'http.response.status_code': 200 },
    ]);
  });

  test('decisions are counted by outcome and rule', async () => {
    const count = (outcome, rule) => metric(dev.metricsURL, `mcp_gateway_policy_decisions_total{outcome="${outcome}",rule="${rule}"}`);
    assert.equal(await count('deny', 'admins'), 3, 'the member once, the guest twice');
    assert.equal(await count('allow', 'directory-lookups'), 2 + lookups, 'the admin\'s and the member\'s get-workos-user, and the limit test\'s');
    assert.equal(await count('allow', 'admins'), 1, 'the admin\'s no-such-tool');
  });
});
