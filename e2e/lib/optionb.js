// Option B's set-up for the end-to-end tests: oidc-provider with Dynamic Client Registration off and one client
// pre-registered there (redirect URI: the gateway's /callback), the tool service, and the gateway configured with that
// client.
import { startAuthServer } from './authserver.js';
import { freePort, identitySecret, startGateway, startTools } from './services.js';

// Access tokens live this long, so that a test can wait for one to expire.
export const accessTokenTTL = 5;
export const upstreamClientID = 'mcp-gateway-preregistered';
export const upstreamSecret = 'preregistered secret: only the gateway knows it';

/**
 * Starts the authorization server (registration off, one pre-registered client authenticating with upstreamAuthMethod),
 * the tool service and the gateway in Option B, with gatewayEnv added to the gateway's environment.
 * @returns {Promise<{as: object, tools: object, gw: object, stop: () => Promise<void>}>}
 */
export async function startOptionB(name, upstreamAuthMethod, gatewayEnv = {}) {
  const port = await freePort();
  const gatewayURL = `http://127.0.0.1:${port}`;
  const as = await startAuthServer({
    accessTokenTTL,
    registration: false,
    clients: [
      {
        client_id: upstreamClientID,
        client_secret: upstreamSecret,
        redirect_uris: [`${gatewayURL}/callback`],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: upstreamAuthMethod,
      },
    ],
  });
  const tools = await startTools(`${name}-tools`, { GATEWAY_IDENTITY_SECRET: identitySecret });
  const gw = await startGateway(
    `${name}-gateway`,
    {
      GATEWAY_ISSUER_URL: as.issuer,
      GATEWAY_UPSTREAM_URL: tools.url,
      GATEWAY_IDENTITY_SECRET: identitySecret,
      GATEWAY_CLOCK_SKEW: '0s',
      MCP_USE_OAUTH_WORKOS_CLIENT_ID: upstreamClientID,
      MCP_USE_OAUTH_WORKOS_CLIENT_SECRET: upstreamSecret,
      GATEWAY_CLIENT_AUTH_METHOD: upstreamAuthMethod,
      ...gatewayEnv,
    },
    { port },
  );
  return {
    as,
    tools,
    gw,
    stop: async () => {
      await gw.service.stop();
      await tools.service.stop();
      await as.close();
    },
  };
}
