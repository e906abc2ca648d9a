// A real browser through `gateway --dev`: Debian's Chromium, driven by playwright-core, signs in on the development
// authorization server's sign-in page and approves its consent page; the code that arrives at the test's loopback
// redirect URI is exchanged for a token the gateway accepts. A screenshot of each page is saved in
// artifacts/screenshots/.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { chromium } from 'playwright-core';

import { chromiumArgs, chromiumPath, screenshots, startCallbackServer } from '../lib/browser.js';
import { authorizationURL, discover, exchangeCode, initialize, jwtClaims, pkce, register } from '../lib/oauth.js';
import { binaries, Service } from '../lib/services.js';

describe('a browser signs in through the --dev sign-in and consent pages', () => {
  let dev, mcpURL, issuer, callback, context, profileDir, meta, resource;

  before(async () => {
    assert.ok(existsSync(chromiumPath), `no Chromium at ${chromiumPath}: apt-get install chromium (or set CHROMIUM_PATH)`);
    const { gateway } = await binaries();
    dev = new Service('dev-gateway', gateway, ['--dev'], {
      GATEWAY_LISTEN_ADDR: '127.0.0.1:0',
      GATEWAY_DEV_ISSUER_ADDR: '127.0.0.1:0',
      GATEWAY_LOG_LEVEL: 'debug',
    });
    const banner = await dev.waitForLog('development mode');
    mcpURL = banner.mcp_url;
    issuer = banner.issuer;
    await dev.waitForLog('authorization server ready');
    callback = await startCallbackServer();
    const found = await discover(mcpURL);
    meta = found.as;
    resource = found.prm.resource;

    mkdirSync(screenshots, { recursive: true });
    profileDir = mkdtempSync(path.join(tmpdir(), 'mcp-gateway-e2e-chromium-'));
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: chromiumPath,
      headless: true,
      args: chromiumArgs,
      viewport: { width: 900, height: 800 },
    });
  });

  after(async () => {
    await context?.close();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
    await callback?.close();
    await dev?.stop();
  });

  test('sign in, consent, code, token, and the gateway accepts the token', async () => {
    assert.equal(meta.issuer, issuer);
    assert.equal(resource, mcpURL);
    const client = await register(meta, callback.redirectURI, 'Browser e2e client');
    const { verifier, challenge } = pkce();
    const state = 'browser-state-1';
    const url = authorizationURL(meta, { clientId: client.client_id, redirectURI: callback.redirectURI, challenge, state, resource });

    const page = await context.newPage();
    await page.goto(url.href);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.match(await page.textContent('main'), /Browser e2e client/);
    await page.screenshot({ path: path.join(screenshots, '1-sign-in.png'), fullPage: true });

    await page.click('button[name=user][value=user_dev_member]');
    await page.getByRole('heading', { name: 'Allow access?' }).waitFor();
    const consent = await page.textContent('main');
    assert.match(consent, /Max Member/);
    assert.ok(consent.includes(callback.redirectURI), 'the consent page names the redirect URI');
    await page.screenshot({ path: path.join(screenshots, '2-consent.png'), fullPage: true });

    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(callback.redirectURI)),
      page.click('button[name=decision][value=allow]'),
    ]);
    await page.getByRole('heading', { name: 'Signed in' }).waitFor();
    await page.screenshot({ path: path.join(screenshots, '3-redirect-uri.png'), fullPage: true });
    await page.close();

    assert.equal(callback.received.length, 1);
    const query = callback.received[0];
    assert.equal(query.get('state'), state);
    assert.equal(query.get('iss'), issuer, 'RFC 9207 iss');
    const tokens = await exchangeCode(meta, {
      clientId: client.client_id,
      redirectURI: callback.redirectURI,
      code: query.get('code'),
      verifier,
      resource,
    });
    const claims = jwtClaims(tokens.access_token);
    assert.equal(claims.sub, 'user_dev_member');
    assert.deepEqual([claims.aud].flat(), [mcpURL]);

    const res = await initialize(mcpURL, tokens.access_token);
    assert.equal(res.status, 200, await res.clone().text());
    await res.body?.cancel();

    // And the tools see the user chosen on the page.
    const transport = new StreamableHTTPClientTransport(new URL(mcpURL), {
      requestInit: { headers: { authorization: `Bearer ${tokens.access_token}` } },
    });
    const mcp = new Client({ name: 'mcp-gateway-e2e-browser', version: '1.0.0' });
    await mcp.connect(transport);
    try {
      const info = await mcp.callTool({ name: 'get-user-info', arguments: {} });
      assert.deepEqual(info.structuredContent, {
        userId: 'user_dev_member',
        email: 'member@example.com',
        name: 'Max Member',
        organizationId: 'org_dev_acme',
      });
    } finally {
      await mcp.close();
    }
  });

  test('deny on the consent page sends access_denied to the redirect URI', async () => {
    const client = await register(meta, callback.redirectURI, 'Browser e2e client (denied)');
    const { challenge } = pkce();
    const url = authorizationURL(meta, {
      clientId: client.client_id,
      redirectURI: callback.redirectURI,
      challenge,
      state: 'browser-state-2',
      resource,
    });
    const before = callback.received.length;
    const page = await context.newPage();
    await page.goto(url.href);
    await page.click('button[name=user][value=user_dev_guest]');
    await page.getByRole('heading', { name: 'Allow access?' }).waitFor();
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(callback.redirectURI)),
      page.click('button[name=decision][value=deny]'),
    ]);
    await page.close();
    const query = callback.received[before];
    assert.equal(query.get('error'), 'access_denied');
    assert.equal(query.get('state'), 'browser-state-2');
    assert.equal(query.get('code'), null);
  });
});
