// A test-only stand-in for the gateway's forwarding step, so that a suite that knows nothing of OAuth (the MCP
// conformance suite) can reach the tool service, which refuses every request that carries no gateway identity.
//
// It listens on loopback, adds fixed identity headers (X-Auth-User-Id, ...) and passes everything else through
// unchanged, Host and Origin included: the tool service's own DNS-rebinding protection (go-sdk refuses a non-loopback
// Host on a loopback listener) is what a suite then sees. It does not sign the headers, so the tool service it fronts
// must run without GATEWAY_IDENTITY_SECRET, the README's mode for a service reachable from loopback only.
import http from 'node:http';

/** The identity the proxy asserts for every request. */
export const proxyIdentity = Object.freeze({
  'x-auth-user-id': 'user_01E2ECONFORMANCE000000000',
  'x-auth-email': 'conformance@example.com',
  'x-auth-name': 'Conformance Suite',
});

/**
 * Starts the proxy in front of upstreamURL (an http URL; only its origin is used, paths pass through).
 * @returns {Promise<{url: string, close: () => Promise<void>}>} url is the proxy's origin
 */
export async function startIdentityProxy(upstreamURL) {
  const upstream = new URL(upstreamURL);
  const server = http.createServer((req, res) => {
    const headers = { ...req.headers, ...proxyIdentity }; // req.headers keeps host and origin as the client sent them
    const out = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
      (up) => {
        res.writeHead(up.statusCode, up.rawHeaders);
        res.flushHeaders();
        up.pipe(res);
      },
    );
    out.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end('{"error":"bad_gateway"}');
    });
    // The client went away before the answer was complete: end the upstream request too (event streams stay open).
    res.on('close', () => {
      if (!res.writableFinished) out.destroy();
    });
    req.pipe(out);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
