// What the browser tests share: Debian's Chromium and its flags, the screenshot directory, and a loopback redirect URI.
import http from 'node:http';
import path from 'node:path';

import { artifactsDir } from './services.js';

// Debian's Chromium; never a browser build of Playwright's own.
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// Flags for a closed, loopback-only machine: no sandbox as root, and none of Chromium's own network traffic.
export const chromiumArgs = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const screenshots = path.join(artifactsDir, 'screenshots');

/** A loopback redirect URI: answers a small page and hands each callback's query to the test. */
export async function startCallbackServer() {
  const received = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname !== '/callback') return res.writeHead(404).end();
    received.push(url.searchParams);
    const ok = url.searchParams.has('code');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>${ok ? 'Signed in' : 'Not signed in'}</title>` +
      `<h1>${ok ? 'Signed in' : 'Not signed in'}</h1><p>The client received ${ok ? 'an authorization code' : 'an error'}. You can close this window.</p>`);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    redirectURI: `http://127.0.0.1:${server.address().port}/callback`,
    received,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
