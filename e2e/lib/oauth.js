// The client side of OAuth 2.1 by hand, for tests that drive the steps themselves (the TypeScript SDK does all of
// this on its own): discovery, Dynamic Client Registration, PKCE, the code exchange.
import { createHash, randomBytes } from 'node:crypto';

/** Fetches url and returns its JSON body; throws unless the status is 200. */
export async function getJSON(url) {
  const res = await fetch(url, { headers: { accept: 'application/json' } });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${body.slice(0, 300)}`);
  return JSON.parse(body);
}

/**
 * Discovers from an MCP URL what a client needs: the gateway's protected resource metadata (RFC 9728) and the
 * authorization server metadata of its first issuer (RFC 8414, else OpenID Connect discovery).
 */
export async function discover(mcpURL) {
  const u = new URL(mcpURL);
  const prm = await getJSON(`${u.origin}/.well-known/oauth-protected-resource${u.pathname}`);
  const issuer = prm.authorization_servers[0];
  let as;
  try {
    as = await getJSON(`${issuer}/.well-known/oauth-authorization-server`);
  } catch {
    as = await getJSON(`${issuer}/.well-known/openid-configuration`);
  }
  return { prm, as };
}

/** Registers a public client (RFC 7591) with redirectURI; returns the registration response. */
export async function register(as, redirectURI, clientName = 'mcp-gateway e2e') {
  const res = await fetch(as.registration_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({
      client_name: clientName,
      redirect_uris: [redirectURI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
  });
  const body = await res.text();
  if (res.status !== 201) throw new Error(`register: ${res.status} ${body.slice(0, 300)}`);
  return JSON.parse(body);
}

/** A PKCE pair (RFC 7636, S256). */
export function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

/** Builds an authorization request URL with PKCE and an RFC 8707 resource. */
export function authorizationURL(as, { clientId, redirectURI, challenge, state, resource, scope }) {
  const u = new URL(as.authorization_endpoint);
  u.searchParams.set('response_type', 'code');
  u.searchParams.set('client_id', clientId);
  u.searchParams.set('redirect_uri', redirectURI);
  u.searchParams.set('code_challenge', challenge);
  u.searchParams.set('code_challenge_method', 'S256');
  u.searchParams.set('state', state);
  if (resource) u.searchParams.set('resource', resource);
  if (scope) u.searchParams.set('scope', scope);
  return u;
}

/** Exchanges an authorization code at the token endpoint; returns the token response. */
export async function exchangeCode(as, { clientId, clientSecret, authMethod, redirectURI, code, verifier, resource }) {
  const res = await tokenRequest(as, {
    grant: { grant_type: 'authorization_code', code, redirect_uri: redirectURI, code_verifier: verifier, resource },
    clientId,
    clientSecret,
    authMethod,
  });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`token: ${res.status} ${body.slice(0, 300)}`);
  return JSON.parse(body);
}

/**
 * Sends a token request and returns the fetch Response. The client authenticates as authMethod says:
 * client_secret_basic (an Authorization header, form-encoded id and secret as RFC 6749 §2.3.1 asks),
 * client_secret_post (client_id and client_secret in the body) or none (client_id in the body).
 */
export function tokenRequest(as, { grant, clientId, clientSecret, authMethod = 'none', json = false }) {
  const params = Object.fromEntries(Object.entries(grant).filter(([, v]) => v !== undefined));
  const headers = { accept: 'application/json' };
  if (authMethod === 'client_secret_basic') {
    const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
    headers.authorization = `Basic ${Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`).toString('base64')}`;
  } else {
    params.client_id = clientId;
    if (authMethod === 'client_secret_post') params.client_secret = clientSecret;
  }
  headers['content-type'] = json ? 'application/json' : 'application/x-www-form-urlencoded';
  return fetch(as.token_endpoint, {
    method: 'POST',
    headers,
    body: json ? JSON.stringify(params) : new URLSearchParams(params),
  });
}

/** Decodes a JWT's claims without checking anything (the gateway is what checks). */
export function jwtClaims(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

/** Sends an MCP initialize to mcpURL with token; returns the fetch Response (body not read). */
export function initialize(mcpURL, token, protocolVersion = '2025-11-25') {
  return fetch(mcpURL, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion, capabilities: {}, clientInfo: { name: 'mcp-gateway-e2e', version: '1.0.0' } },
    }),
  });
}
