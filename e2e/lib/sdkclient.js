// The official TypeScript MCP client (@modelcontextprotocol/sdk) driven as an application drives it: an
// OAuthClientProvider kept in memory whose user is the headless user agent (lib/headless.js), a fetch that records
// every exchange, and the sign-in of the SDK's own examples (connect, UnauthorizedError, finishAuth with the code that
// arrived at the redirect URI, connect again).
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { followToRedirect } from './headless.js';

/**
 * An OAuthClientProvider kept in memory. Its client metadata names no scope, so the SDK chooses the scope as it does
 * on its own (the challenge's, else the protected resource metadata's scopes_supported, else none).
 * redirectToAuthorization plays the user: it follows the authorization server's redirects and pages headlessly
 * (choosing the user signIn on a sign-in page, allowing on a consent page) and keeps the query that arrives at the
 * redirect URI.
 */
export class HeadlessProvider {
  client;
  issued = []; // every token response the authorization server gave, oldest first
  authorizationURLs = []; // every authorization request, oldest first
  callbacks = []; // the query of each redirect to the redirect URI
  trails = []; // the requests the user agent made for each authorization request
  #tokens;
  #verifier;
  #signIn;
  #refreshTokens;

  /**
   * @param {string} redirectURI where codes arrive; nothing listens there (the user agent stops at the redirect)
   * @param {object} [opts]
   * @param {string} [opts.signIn] the demo user to choose on a sign-in page
   * @param {boolean} [opts.refreshTokens] false: a client that keeps no refresh token. It registers for the
   *   authorization_code grant only (RFC 7591 grant_types) and drops a refresh token it is given anyway, so that when
   *   its access token no longer serves it signs the user in again. Default true.
   */
  constructor(redirectURI, { signIn, refreshTokens = true } = {}) {
    this.redirectUrl = redirectURI;
    this.#signIn = signIn;
    this.#refreshTokens = refreshTokens;
    this.clientMetadata = {
      client_name: 'mcp-gateway e2e (TypeScript SDK)',
      redirect_uris: [redirectURI],
      grant_types: refreshTokens ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  clientInformation() {
    return this.client;
  }
  saveClientInformation(info) {
    this.client = info;
  }
  tokens() {
    return this.#tokens;
  }
  saveTokens(tokens) {
    this.issued.push(tokens);
    if (this.#refreshTokens) {
      this.#tokens = tokens;
    } else {
      const { refresh_token: _, ...kept } = tokens;
      this.#tokens = kept;
    }
  }
  saveCodeVerifier(v) {
    this.#verifier = v;
  }
  codeVerifier() {
    return this.#verifier;
  }
  async redirectToAuthorization(url) {
    this.authorizationURLs.push(new URL(url));
    const trail = [];
    this.trails.push(trail);
    this.callbacks.push(await followToRedirect(url, this.redirectUrl, { signIn: this.#signIn, consent: 'allow', trail }));
  }

  /** The code of the last redirect to the redirect URI; throws if it brought none. */
  lastCode() {
    const q = this.callbacks.at(-1);
    if (!q?.get('code')) throw new Error(`no code at the redirect URI: ${q}`);
    return q.get('code');
  }
}

/**
 * A fetch that records every exchange the SDK makes in log: method, URL, the JSON-RPC message sent (rpc) or the form
 * body, the status, the gateway's X-Request-Id and the WWW-Authenticate challenge.
 */
export function recordingFetch(log) {
  return async (input, init = {}) => {
    const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const url = input instanceof Request ? input.url : String(input);
    const body = typeof init.body === 'string' || init.body instanceof URLSearchParams ? String(init.body) : undefined;
    const entry = { method, url, body };
    try {
      entry.rpc = body === undefined ? undefined : JSON.parse(body);
    } catch {
      // a form
    }
    log.push(entry);
    const res = await fetch(input, init);
    entry.status = res.status;
    entry.requestId = res.headers.get('x-request-id');
    entry.wwwAuthenticate = res.headers.get('www-authenticate');
    return res;
  };
}

/** The recorded POSTs to mcpURL whose JSON-RPC message is a tools/call of name, oldest first. */
export function toolCalls(log, mcpURL, name) {
  return log.filter((e) => e.method === 'POST' && e.url === mcpURL && e.rpc?.method === 'tools/call' && e.rpc.params?.name === name);
}

/**
 * Connects a new Client to mcpURL and signs in as an application does: the first connect meets the gateway's 401,
 * the SDK discovers the authorization server, registers, sends the user to sign in (provider.redirectToAuthorization)
 * and throws UnauthorizedError; the application exchanges the code that arrived at its redirect URI (finishAuth) and
 * connects again.
 * @returns {Promise<{client: Client, transport: StreamableHTTPClientTransport}>}
 */
export async function connectSignedIn(mcpURL, provider, log) {
  const transport = () => new StreamableHTTPClientTransport(new URL(mcpURL), { authProvider: provider, fetch: recordingFetch(log) });
  const client = new Client({ name: 'mcp-gateway-e2e', version: '1.0.0' });
  try {
    await client.connect(transport());
    throw new Error('the first connect succeeded without signing in');
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
  }
  const t = transport();
  await t.finishAuth(provider.lastCode());
  await client.connect(t);
  return { client, transport: t };
}
