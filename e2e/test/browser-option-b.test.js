// A real browser through Option B: Chromium (playwright-core) opens the gateway's /authorize, sees its consent page,
// allows, passes the authorization server (oidc-provider, registration off, signing a fixed user in) and the gateway's
// /callback, and lands at the test's loopback redirect URI with a code the gateway's /token turns into a token the
// gateway accepts. A second sign-in of the same client skips the consent page (remembered in a cookie); Deny sends
// access_denied. A callback that another browser started ends on the gateway's page, never at a redirect URI.
// Screenshots in artifacts/screenshots/option-b-*.png.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import { defaultUser as alice } from '../lib/authserver.js';
import { chromiumArgs, chromiumPath, screenshots, startCallbackServer } from '../lib/browser.js';
import { followUntil } from '../lib/headless.js';
import { authorizationURL, discover, exchangeCode, initialize, jwtClaims, pkce, register } from '../lib/oauth.js';
import { startOptionB, upstreamClientID } from '../lib/optionb.js';

describe('a browser signs in through the gateway consent page (Option B)', () => {
  let env, callback, context, profileDir, meta, resource;

  before(async () => {
    assert.ok(existsSync(chromiumPath), `no Chromium at ${chromiumPath}: apt-get install chromium (or set CHROMIUM_PATH)`);
    env = await startOptionB('browser-optb', 'client_secret_basic');
    callback = await startCallbackServer();
    const found = await discover(env.gw.mcpURL);
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
    await env?.stop();
  });

  /** Opens an authorization request for client in a new page; returns the page. */
  async function open(client, state, challenge) {
    const url = authorizationURL(meta, { clientId: client.client_id, redirectURI: callback.redirectURI, challenge, state, resource });
    const page = await context.newPage();
    await page.goto(url.href);
    return page;
  }

  test('consent, sign-in at the authorization server, code, token, and the gateway accepts the token', async () => {
    assert.equal(meta.issuer, env.gw.url, 'the gateway is the authorization server the client sees');
    const client = await register(meta, callback.redirectURI, 'Browser e2e client');
    const { verifier, challenge } = pkce();
    const page = await open(client, 'optb-state-1', challenge);
    await page.getByRole('heading', { name: /^Allow .*Browser e2e client.* to use/ }).waitFor();
    const text = await page.textContent('body');
    assert.ok(text.includes(callback.redirectURI), 'the consent page names the redirect URI');
    assert.ok(text.includes(env.as.issuer), 'and the authorization server');
    const listed = await page.locator('#scopes li').allTextContents();
    assert.deepEqual(listed, ['openid', 'profile', 'email'], 'and the scopes it will ask for (the default: the client sent none)');
    await page.screenshot({ path: path.join(screenshots, 'option-b-1-consent.png'), fullPage: true });

    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(callback.redirectURI)),
      page.click('button[name=decision][value=allow]'),
    ]);
    await page.getByRole('heading', { name: 'Signed in' }).waitFor();
    await page.screenshot({ path: path.join(screenshots, 'option-b-2-redirect-uri.png'), fullPage: true });
    await page.close();

    const query = callback.received.at(-1);
    assert.equal(query.get('state'), 'optb-state-1');
    assert.equal(query.get('iss'), env.gw.url, 'RFC 9207 iss is the gateway');
    const tokens = await exchangeCode(meta, { clientId: client.client_id, redirectURI: callback.redirectURI, code: query.get('code'), verifier, resource });
    const claims = jwtClaims(tokens.access_token);
    assert.equal(claims.sub, alice.id);
    assert.equal(claims.client_id, upstreamClientID);
    assert.deepEqual([claims.aud].flat(), [env.gw.mcpURL]);
    const res = await initialize(env.gw.mcpURL, tokens.access_token);
    assert.equal(res.status, 200, await res.clone().text());
    await res.body?.cancel();

    // The same client again: consent is remembered, the browser goes straight through.
    const second = pkce();
    const again = await context.newPage();
    const seen = [];
    again.on('framenavigated', (f) => seen.push(f.url()));
    await Promise.all([
      again.waitForURL((u) => u.href.startsWith(callback.redirectURI)),
      again.goto(authorizationURL(meta, { clientId: client.client_id, redirectURI: callback.redirectURI, challenge: second.challenge, state: 'optb-state-2', resource }).href),
    ]);
    await again.screenshot({ path: path.join(screenshots, 'option-b-3-remembered.png'), fullPage: true });
    await again.close();
    assert.equal(callback.received.at(-1).get('state'), 'optb-state-2');
    assert.ok(callback.received.at(-1).get('code'), `${callback.received.at(-1)}`);
    const cookies = await context.cookies(env.gw.url);
    const consent = cookies.find((c) => c.name === 'mcpgw-consent');
    assert.ok(consent?.httpOnly, 'consent is remembered in an HttpOnly cookie');
    assert.equal(consent.sameSite, 'Lax');
  });

  test('deny on the consent page sends access_denied to the redirect URI', async () => {
    const client = await register(meta, callback.redirectURI, 'Browser e2e client (denied)');
    const { challenge } = pkce();
    const before = callback.received.length;
    const page = await open(client, 'optb-state-3', challenge);
    await page.getByRole('heading', { name: /Allow/ }).waitFor();
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(callback.redirectURI)),
      page.click('button[name=decision][value=deny]'),
    ]);
    await page.screenshot({ path: path.join(screenshots, 'option-b-4-denied.png'), fullPage: true });
    await page.close();
    const query = callback.received[before];
    assert.equal(query.get('error'), 'access_denied');
    assert.equal(query.get('state'), 'optb-state-3');
    assert.equal(query.get('code'), null);
  });

  test("a sign-in started in another browser ends on a page when its callback is opened here", async () => {
    // The other browser (headless, with its own cookies) registers its client, allows it and signs in, and stops at
    // the gateway's callback URL, which it then gets this browser to open, with an error of its choosing.
    const client = await register(meta, callback.redirectURI, 'Someone else');
    const { challenge } = pkce();
    const url = authorizationURL(meta, { clientId: client.client_id, redirectURI: callback.redirectURI, challenge, state: 'elsewhere', resource });
    const cb = await followUntil(url, (u) => u.origin === env.gw.url && u.pathname === '/callback', { consent: 'allow' });
    const lure = new URL(cb);
    lure.searchParams.delete('code');
    lure.searchParams.set('error', 'access_denied');
    lure.searchParams.set('error_description', 'Your session expired: call +1 555 0100');
    lure.searchParams.set('error_uri', 'https://attacker.example/help');
    const before = callback.received.length;
    for (const [i, target] of [cb, lure].entries()) {
      const page = await context.newPage();
      const response = await page.goto(target.href);
      assert.equal(response.status(), 400);
      assert.equal(new URL(page.url()).origin + new URL(page.url()).pathname, `${env.gw.url}/callback`, 'no redirect');
      await page.getByRole('heading', { name: 'Sign-in started elsewhere' }).waitFor();
      const text = await page.textContent('body');
      assert.ok(!text.includes('555') && !text.includes('attacker'), text);
      if (i === 0) await page.screenshot({ path: path.join(screenshots, 'option-b-5-other-browser.png'), fullPage: true });
      await page.close();
    }
    assert.equal(callback.received.length, before, 'the redirect URI was never reached');
  });

  test('the consent page cannot be framed', async () => {
    const client = await register(meta, callback.redirectURI, 'Framed');
    const { challenge } = pkce();
    const page = await open(client, 'optb-state-4', challenge);
    const response = await page.reload();
    assert.match(response.headers()['content-security-policy'], /frame-ancestors 'none'/);
    assert.equal(response.headers()['x-frame-options'], 'DENY');
    await page.close();
  });
});
