// An independent authorization server for the end-to-end tests: oidc-provider (a certified OpenID provider)
// configured to behave like WorkOS AuthKit towards MCP clients.
//
// - Open Dynamic Client Registration for public clients (token_endpoint_auth_method "none").
// - PKCE (S256) required.
// - RFC 8707 resource indicators: the access token for a requested resource is a JWT (RS256, signed with the key
//   served at jwks_uri) whose aud is that resource; refresh grants keep the granted resource.
// - A refresh token is issued with every code grant and rotated on use (public clients).
// - AuthKit's endpoint paths (/oauth2/authorize, /oauth2/token, /oauth2/register, /oauth2/jwks, ...).
// - Access tokens carry AuthKit's MCP claims (sub, sid, org_id, client_id, scope) and, as a JWT template would add,
//   email, name, role and permissions.
//
// There is no sign-in page: the interaction endpoint signs the fixed user in and grants what the client asked for,
// so a client that follows the redirects with a cookie jar arrives at its redirect_uri with a code.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

// The user every sign-in signs in, shaped like a WorkOS user.
export const defaultUser = Object.freeze({
  id: 'user_01E2EALICE0000000000000000',
  email: 'alice@example.com',
  name: 'Alice Example',
  firstName: 'Alice',
  lastName: 'Example',
  orgId: 'org_01E2EACME00000000000000000',
  role: 'admin',
  permissions: ['widgets:read', 'widgets:write'],
});

// The scopes AuthKit advertises; an access token for the MCP resource carries those the client asked for.
export const scopes = ['openid', 'profile', 'email', 'offline_access'];

/**
 * Starts the authorization server on a loopback port.
 *
 * @param {object} [opts]
 * @param {number} [opts.accessTokenTTL] access token lifetime in seconds (default 3600)
 * @param {object} [opts.user] the user every sign-in signs in (default defaultUser)
 * @param {boolean} [opts.registration] Dynamic Client Registration on (default true); off, as an authorization server
 *   without it (the gateway's Option B)
 * @param {object[]} [opts.clients] pre-registered clients (oidc-provider client metadata)
 * @param {'jwt'|'opaque'} [opts.accessTokenFormat] access tokens as JWTs (default) or opaque strings, which only the
 *   introspection endpoint (/oauth2/introspection, for a confidential client) can tell about
 * @returns {Promise<{issuer: string, provider: Provider, grants: Array<{grantType: string, clientId: string}>,
 *   registrations: string[], signingKey: object, close: () => Promise<void>}>}
 *   grants lists every successful token request (grant_type and client); registrations the registered client ids;
 *   signingKey the private JWK the server signs with (kid e2e-rs256), for tests that forge tokens with it.
 */
export async function startAuthServer({ accessTokenTTL = 3600, user = defaultUser, registration = true, clients = [], accessTokenFormat = 'jwt' } = {}) {
  let handler = (req, res) => {
    res.writeHead(503).end();
  };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'e2e-rs256', alg: 'RS256', use: 'sig' };

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    routes: {
      authorization: '/oauth2/authorize',
      token: '/oauth2/token',
      registration: '/oauth2/register',
      jwks: '/oauth2/jwks',
      userinfo: '/oauth2/userinfo',
      introspection: '/oauth2/introspection',
      revocation: '/oauth2/revocation',
      end_session: '/oauth2/logout',
    },
    scopes,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name'],
    },
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: registration },
      revocation: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Without a resource parameter, no access token for any resource server is issued (AuthKit would fall back
        // to its environment-wide audience; the gateway would refuse that token either way).
        defaultResource: (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => ({
          scope: scopes.join(' '),
          audience: resourceIndicator,
          accessTokenTTL,
          accessTokenFormat,
          ...(accessTokenFormat === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
        }),
      },
    },
    ttl: {
      AccessToken: accessTokenTTL,
      AuthorizationCode: 60,
      Grant: 3600,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 86400,
      Session: 86400,
    },
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    findAccount: (_ctx, sub) => {
      if (sub !== user.id) return undefined;
      return {
        accountId: sub,
        claims: () => ({
          sub,
          email: user.email,
          email_verified: true,
          name: user.name,
          given_name: user.firstName,
          family_name: user.lastName,
        }),
      };
    },
    // AuthKit's access-token claims beyond the JWT profile's, plus what a JWT template would add.
    extraTokenClaims: (_ctx, token) => {
      if (token.kind !== 'AccessToken' || token.accountId !== user.id) return undefined;
      return {
        sid: token.sessionUid ? `session_${token.sessionUid}` : undefined,
        org_id: user.orgId,
        email: user.email,
        name: user.name,
        role: user.role,
        permissions: user.permissions,
      };
    },
    clientBasedCORS: () => true,
    renderError: (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  // Loopback http: the provider needs no proxy settings.
  provider.proxy = false;

  const grants = [];
  const registrations = [];
  provider.on('grant.success', (ctx) => {
    grants.push({ grantType: ctx.oidc.params.grant_type, clientId: ctx.oidc.client?.clientId });
  });
  provider.on('registration_create.success', (_ctx, client) => registrations.push(client.clientId));

  const callback = provider.callback();
  handler = async (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    if (req.method === 'GET' && path.startsWith('/interaction/')) {
      try {
        await interact(provider, user, req, res);
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`interaction failed: ${err.message}`);
      }
      return;
    }
    callback(req, res);
  };

  return {
    issuer,
    provider,
    grants,
    registrations,
    signingKey,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// interact finishes the pending interaction: a login prompt signs user in; a consent prompt grants every scope,
// claim and resource scope the request asked for. The provider then redirects back to the authorization endpoint.
async function interact(provider, user, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session, grantId } = details;
  if (prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: user.id } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name !== 'consent') {
    throw new Error(`unexpected prompt ${prompt.name}`);
  }
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, resourceScopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, resourceScopes.join(' '));
  }
  const id = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId: id } }, { mergeWithLastSubmission: true });
}
