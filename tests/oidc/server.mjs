// A real OAuth2 / OpenID Connect authorization server for TokenKeep's browser test.
//
// oidc-provider (OpenID Certified) with its development interactions: a login
// page that accepts any login and password, then a consent page. It listens on
// 127.0.0.1 only, on a port the OS picks, and prints one line when it is ready:
//
//   READY http://127.0.0.1:PORT
//
// Configuration comes from the environment, so no secret is on a command line:
//   OIDC_CLIENTS       JSON {"client_id": "client_secret", ...}: confidential clients
//   OIDC_REDIRECT_URI  their only redirect URI (TokenKeep's /callback)
import http from 'node:http';

import Provider from 'oidc-provider';

const { OIDC_CLIENTS, OIDC_REDIRECT_URI } = process.env;
if (!OIDC_CLIENTS || !OIDC_REDIRECT_URI) {
  console.error('set OIDC_CLIENTS and OIDC_REDIRECT_URI');
  process.exit(2);
}
// One client per TokenKeep provider: a grant belongs to a client and a user, and
// revoking one connection's grant must not revoke another's.
const clients = Object.entries(JSON.parse(OIDC_CLIENTS)).map(([id, secret]) => ({
  client_id: id,
  client_secret: secret,
  redirect_uris: [OIDC_REDIRECT_URI],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
}));

// Listen first: the issuer must name the port, and port 0 lets the OS pick a free one.
const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients,
    // A refresh token comes only with the offline_access scope, which the
    // server keeps only when the authorization request says prompt=consent:
    // the same rule Google applies, so TokenKeep must send --param prompt=consent.
    scopes: ['openid', 'offline_access'],
    pkce: { required: () => true },
    ttl: { AccessToken: 3600, AuthorizationCode: 60, Interaction: 600, Session: 600, Grant: 3600 },
    features: { devInteractions: { enabled: true }, revocation: { enabled: true } },
  });
  // Grant errors all read "grant request is invalid" to the client; the reason
  // is only here. Never print tokens or the secret: only names and messages.
  for (const event of ['grant.error', 'server_error', 'authorization.error', 'userinfo.error']) {
    provider.on(event, (_ctx, error) => {
      console.error(`${event}: ${error.name}: ${error.message} ${error.error_detail ?? ''}`);
    });
  }
  server.on('request', provider.callback());
  console.log(`READY ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
