// Client ID Metadata Documents for the end-to-end tests: an https server on loopback that publishes clients' metadata
// documents, with a certificate from a certificate authority made for the run (openssl), whose PEM file the gateway
// is told to trust (GATEWAY_CIMD_CA_FILE). The TypeScript SDK accepts only an https clientMetadataUrl, so an http
// document server cannot stand in.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Makes a CA and a server certificate for 127.0.0.1 and localhost in a new directory; returns the file paths. */
function makeCertificates() {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cimd-'));
  const p = (f) => join(dir, f);
  const run = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  run('req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '1', '-subj', '/CN=mcp-gateway e2e test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  run('req', ...ec, '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=127.0.0.1');
  writeFileSync(p('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  run('x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial',
    '-out', p('server.pem'), '-days', '1', '-extfile', p('server.ext'));
  return { dir, ca: p('ca.pem'), key: p('server.key'), cert: p('server.pem') };
}

/**
 * Starts the document server. documents maps a path to a function of the document's own URL that returns the JSON
 * body, or to {status, headers} for a non-document answer (a redirect). Every request is counted in hits, by path.
 * @returns {Promise<{url: (path: string) => string, caFile: string, hits: Map<string, number>, close: () => Promise<void>}>}
 */
export async function startDocumentServer(documents) {
  const certs = makeCertificates();
  const hits = new Map();
  let origin;
  const server = https.createServer({ key: readFileSync(certs.key), cert: readFileSync(certs.cert) }, (req, res) => {
    const path = new URL(req.url, origin).pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const doc = documents[path];
    if (doc === undefined) {
      res.writeHead(404).end();
    } else if (typeof doc === 'function') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' }).end(JSON.stringify(doc(origin + path)));
    } else {
      res.writeHead(doc.status, doc.headers).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `https://127.0.0.1:${server.address().port}`;
  return {
    url: (path) => origin + path,
    caFile: certs.ca,
    hits,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      rmSync(certs.dir, { recursive: true, force: true });
    },
  };
}
