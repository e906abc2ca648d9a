// The project's binaries and the fakes around them, started for real on loopback ports.
import { execFile, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** The repository root and the e2e directory. */
export const e2eDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = path.resolve(e2eDir, '..');
/** Where screenshots, logs and reports are written (ignored by git, kept by CI as artefacts). */
export const artifactsDir = path.join(e2eDir, 'artifacts');

/** A secret the gateway signs identity headers with and the tool service checks. */
export const identitySecret = 'e2e-identity-secret-0123456789abcdef';

let built;

/**
 * Returns the paths of the gateway and tool service binaries: $E2E_BIN_DIR/{gateway,tools} when both exist there
 * (.ci/e2e builds them once), else builds them with `go build` into a temporary directory, once per process.
 * @returns {Promise<{gateway: string, tools: string}>}
 */
export function binaries() {
  built ??= (async () => {
    const dir = process.env.E2E_BIN_DIR;
    if (dir && existsSync(path.join(dir, 'gateway')) && existsSync(path.join(dir, 'tools'))) {
      return { gateway: path.join(dir, 'gateway'), tools: path.join(dir, 'tools') };
    }
    const out = mkdtempSync(path.join(tmpdir(), 'mcp-gateway-e2e-bin-'));
    const run = promisify(execFile);
    for (const name of ['gateway', 'tools']) {
      await run('go', ['build', '-o', path.join(out, name), `./cmd/${name}`], { cwd: repoRoot });
    }
    return { gateway: path.join(out, 'gateway'), tools: path.join(out, 'tools') };
  })();
  return built;
}

/** Returns a loopback port that was free a moment ago (for a server whose own URL must be known before it starts). */
export async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/**
 * A running binary: its JSON log lines (from stderr) are parsed and kept, and copied to artifacts/logs/<name>.log.
 */
export class Service {
  /** @type {Array<Record<string, unknown>>} */
  logs = [];
  #child;
  #exited;
  #waiters = [];

  constructor(name, file, args, env) {
    this.name = name;
    mkdirSync(path.join(artifactsDir, 'logs'), { recursive: true });
    const logFile = createWriteStream(path.join(artifactsDir, 'logs', `${name}.log`));
    // Only what is given: nothing of the test runner's environment (such as MCP_USE_OAUTH_* or GATEWAY_*) leaks in.
    this.#child = spawn(file, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#exited = new Promise((resolve) => this.#child.once('exit', (code, signal) => resolve({ code, signal })));
    this.#exited.then(({ code, signal }) => {
      logFile.end();
      for (const w of this.#waiters.splice(0)) w.reject(new Error(`${name} exited (code ${code}, signal ${signal}) before logging "${w.msg}"\n${this.text()}`));
    });
    let rest = '';
    const onData = (chunk) => {
      logFile.write(chunk);
      rest += chunk;
      let nl;
      while ((nl = rest.indexOf('\n')) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        let rec;
        try {
          rec = JSON.parse(line);
        } catch {
          rec = { msg: line };
        }
        this.logs.push(rec);
        for (const w of [...this.#waiters]) {
          if (rec.msg === w.msg) {
            this.#waiters.splice(this.#waiters.indexOf(w), 1);
            w.resolve(rec);
          }
        }
      }
    };
    this.#child.stderr.setEncoding('utf8').on('data', onData);
    this.#child.stdout.setEncoding('utf8').on('data', onData);
  }

  /** Resolves with the first log record whose msg is msg (already logged or to come). */
  waitForLog(msg, timeoutMs = 30_000) {
    const seen = this.logs.find((r) => r.msg === msg);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no "${msg}" log within ${timeoutMs} ms\n${this.text()}`)), timeoutMs);
      this.#waiters.push({
        msg,
        resolve: (r) => (clearTimeout(timer), resolve(r)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
  }

  /** The log so far, one JSON record a line. */
  text() {
    return this.logs.map((r) => JSON.stringify(r)).join('\n');
  }

  /** Stops the process with SIGTERM (SIGKILL after 10 s) and waits for it to exit. */
  async stop() {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      this.#child.kill('SIGTERM');
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), 10_000);
      await this.#exited;
      clearTimeout(timer);
    }
    return this.#exited;
  }
}

/**
 * Starts the tool service on a free loopback port.
 * @returns {Promise<{service: Service, url: string}>} url is its MCP endpoint
 */
export async function startTools(name, env = {}) {
  const { tools } = await binaries();
  const service = new Service(name, tools, [], { TOOLS_LISTEN_ADDR: '127.0.0.1:0', TOOLS_LOG_LEVEL: 'debug', ...env });
  const rec = await service.waitForLog('listening');
  return { service, url: `http://${rec.addr}/mcp` };
}

/**
 * Starts the gateway on a free loopback port, GATEWAY_PUBLIC_URL being its own URL, and waits until /readyz answers
 * 200 (the issuer's keys are loaded and the upstream accepts connections).
 * @param {object} [opts]
 * @param {number} [opts.port] the port to listen on (default a free one), for tests that must know the URL first
 * @returns {Promise<{service: Service, url: string, mcpURL: string, metricsURL: string}>}
 */
export async function startGateway(name, env, { port } = {}) {
  const { gateway } = await binaries();
  port ??= await freePort();
  const url = `http://127.0.0.1:${port}`;
  const service = new Service(name, gateway, [], {
    GATEWAY_LISTEN_ADDR: `127.0.0.1:${port}`,
    GATEWAY_PUBLIC_URL: url,
    GATEWAY_METRICS_ADDR: '127.0.0.1:0',
    GATEWAY_LOG_LEVEL: 'debug',
    ...env,
  });
  await service.waitForLog('gateway listening');
  const metrics = await service.waitForLog('metrics listening');
  await waitUntil(async () => (await fetch(`${url}/readyz`)).status === 200, `${name} /readyz 200`, service);
  return { service, url, mcpURL: `${url}/mcp`, metricsURL: `http://${metrics.addr}/metrics` };
}

/**
 * Starts `gateway --dev` (the development authorization server, the tool service in the same process, and the gateway,
 * each on a free loopback port, metrics on too) with env added, and waits until /readyz answers 200.
 * @returns {Promise<{service: Service, url: string, mcpURL: string, issuer: string, metricsURL: string}>}
 */
export async function startDevGateway(name, env = {}) {
  const { gateway } = await binaries();
  const service = new Service(name, gateway, ['--dev'], {
    GATEWAY_LISTEN_ADDR: '127.0.0.1:0',
    GATEWAY_DEV_ISSUER_ADDR: '127.0.0.1:0',
    GATEWAY_METRICS_ADDR: '127.0.0.1:0',
    GATEWAY_LOG_LEVEL: 'debug',
    ...env,
  });
  const banner = await service.waitForLog('development mode');
  await service.waitForLog('authorization server ready');
  const metrics = await service.waitForLog('metrics listening');
  const url = new URL(banner.mcp_url).origin;
  await waitUntil(async () => (await fetch(`${url}/readyz`)).status === 200, `${name} /readyz 200`, service);
  return { service, url, mcpURL: banner.mcp_url, issuer: banner.issuer, metricsURL: `http://${metrics.addr}/metrics` };
}

/** Polls check every 100 ms until it resolves true; fails after timeoutMs with what service logged. */
export async function waitUntil(check, what, service, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${service ? service.text() : ''}`);
    await sleep(100);
  }
}

/**
 * Waits for the gateway's records of the request whose X-Request-Id is id, and returns them: its access line (msg
 * "request") and, with a policy, its audit events (one per MCP message, on the same stderr, written within 20 ms of
 * the request's end).
 * @returns {Promise<{access: Record<string, unknown>, audit: Array<Record<string, unknown>>}>}
 */
export async function requestRecords(service, id) {
  const access = () => service.logs.find((r) => r.msg === 'request' && r.request_id === id);
  const audit = () => service.logs.filter((r) => r.request_id === id && 'mcp.method.name' in r);
  await waitUntil(() => access() !== undefined && audit().length > 0, `the access line and audit event of request ${id}`, service);
  return { access: access(), audit: audit() };
}

/**
 * A fake of the WorkOS User Management API: GET /user_management/users/{id} with the right API key answers the user
 * object for a known id, 404 for another, 401 without the key. Every request is recorded.
 * @param {string} apiKey
 * @param {Record<string, object>} users by id
 */
export async function startFakeWorkOS(apiKey, users) {
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method, url: req.url, authorization: req.headers.authorization });
    const json = (status, body) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.headers.authorization !== `Bearer ${apiKey}`) {
      return json(401, { message: 'Unauthorized' });
    }
    const m = /^\/user_management\/users\/([^/?]+)$/.exec(req.url);
    if (req.method !== 'GET' || !m) return json(404, { message: 'Not Found' });
    const user = users[decodeURIComponent(m[1])];
    if (!user) return json(404, { code: 'entity_not_found', message: 'User not found' });
    return json(200, user);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Reads one sample of a Prometheus text exposition: the value of the line that starts with series, or undefined. */
export async function metric(metricsURL, series) {
  const text = await (await fetch(metricsURL)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
