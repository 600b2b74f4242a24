// The test OpenID provider: panva's oidc-provider 8.8.1 on 127.0.0.1, configured only by environment.
//
// Environment (all optional except IDP_PORT):
//   IDP_PORT                       port to listen on; issuer = http://127.0.0.1:<port>
//   IDP_ACCESS_TOKEN_TTL           seconds (default 300)
//   IDP_REFRESH_TOKEN_TTL          seconds (default 86400)
//   IDP_ID_TOKEN_TTL               seconds (default 3600)
//   IDP_ACCESS_TOKEN_FORMAT        "opaque" (default) or "jwt" (RFC 9068: typ at+jwt, aud, scope, client_id,
//                                  sub, jti, plus email/groups/realm_access)
//   IDP_RESOURCE                   audience string of the API (default "api"). It is put verbatim in `aud`
//                                  of JWT access tokens and of introspection answers for resource-bound tokens.
//                                  oidc-provider requires the resource *indicator* to be an absolute URI, so
//                                  when IDP_RESOURCE is not one (e.g. "api") the indicator is
//                                  "urn:tokengate:resource:<IDP_RESOURCE>" while `aud` stays "api".
//                                  A value that already is an absolute URI (e.g. "urn:api") is used for both.
//                                  jwt format: every token request gets an access token for this resource
//                                  (no `resource` parameter needed). opaque format: tokens carry no `aud`
//                                  unless the client sends resource=<indicator> in the authorization request.
//   IDP_EXTRA_RESOURCES            comma-separated absolute URIs of further resource servers (RFC 8707): a
//                                  client sending resource=<one of them> gets tokens whose `aud` is that
//                                  URI (the default resource above is unchanged). Tests of a token minted
//                                  for another resource use it.
//   IDP_REGISTRATION               "1" enables dynamic client registration (RFC 7591, features.registration:
//                                  open, no initial access token) at /reg, published as registration_endpoint
//   IDP_CLIENTS                    JSON array of oidc-provider client metadata (replaces the default clients)
//   IDP_REDIRECT_URIS              comma-separated (default http://127.0.0.1:8080/oauth2/callback)
//   IDP_POST_LOGOUT_REDIRECT_URIS  comma-separated (default: "<origin>/" of each redirect URI)
//   IDP_BACKCHANNEL_LOGOUT_URI     back-channel logout URI of the client "gw" (default none); the end-session
//                                  flow POSTs a logout_token there (v8 allows loopback http URIs)
//   IDP_BACKCHANNEL_LOGOUT_SESSION_REQUIRED  "0" registers backchannel_logout_session_required: false
//                                  (logout tokens then carry only sub, ID tokens no sid); default true
//   IDP_ACCOUNT_CLAIMS             JSON {"<login>": {"groups": [...], "realm_access": {...}, ...}}
//   IDP_KEY_FILE                   JWKS path: loaded if it exists, else fresh keys are written there
//                                  (without it, fresh RS256 + ES256 keys at every start = key rotation)
//   IDP_DISCOVERY                  "0" makes /.well-known/openid-configuration answer 404
//   IDP_ACR_VALUES                 comma-separated acr values (e.g. "pwd,mfa"): RFC 9470 step-up (off when
//                                  unset). Published as acr_values_supported; the acr of a login is the
//                                  password typed on the devInteractions form when it is one of these values
//                                  (password "mfa" -> acr "mfa"), else the first value ("pwd"). ID tokens
//                                  always carry `acr` and `auth_time`; so do JWT access tokens and
//                                  introspection answers (extraTokenClaims). A request whose `acr_values` does
//                                  not include the session's acr re-prompts the login (like `max_age`, which
//                                  oidc-provider honours itself); the acr of the login just made is final, so a
//                                  weak answer reaches the client instead of looping at the provider.
//   IDP_ACR_REPROMPT               "0": ignore `acr_values` (no re-prompt: an SSO session answers silently
//                                  with its old acr), as providers that treat acr_values as voluntary do
//   IDP_ACR_PUBLISH                "0": leave acr_values_supported out of the discovery document
//
// Default clients: gw/gw-secret (client_secret_basic), gw-post/gw-secret (client_secret_post), both with
// grants authorization_code + refresh_token; introspector/introspector-secret (no grants, introspection).
// Extra endpoints: GET /__counters (requests per path, JSON; /interaction/<uid> and /auth/<uid> are
// counted as /interaction/:uid and /auth/:uid), POST /__counters/reset (204).
// PUT /__accounts/<login> with a JSON object replaces that account's extra claims (IDP_ACCOUNT_CLAIMS
// entry) from then on: tests change a user's groups between login and refresh. Test-only, loopback only.
// Prints exactly one line "IDP READY <issuer>" on stdout when listening; everything else goes to stderr.
// SIGTERM / SIGINT close the server and exit 0.
//
// Fixed behaviour: PKCE required (S256 only); devInteractions (any login/password, sub = the login);
// refresh tokens for every client with the refresh_token grant (no prompt=consent needed) and rotated on
// every use (reusing a rotated-out one revokes the whole grant); clockTolerance 0; ID tokens carry the
// profile/email claims (conformIdTokenClaims off); cookies idp_session / idp_interaction / idp_resume
// (SameSite=Lax, signed with a fixed key). In jwt format the token response's `scope` lists only the
// resource scopes (e.g. "api:read"): oidc-provider reports the scope of the access token it issued.

import { createHash, generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

import Provider, { errors, interactionPolicy } from 'oidc-provider';

// oidc-provider prints its notices with console.info (stdout): keep stdout for the READY line only.
console.info = console.error; // eslint-disable-line no-console
console.log = console.error; // eslint-disable-line no-console

function fail(message) {
  process.stderr.write(`idp launcher: ${message}\n`);
  process.exit(2);
}

function intEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number.parseInt(raw, 10);
  if (!Number.isInteger(value) || value < 0) fail(`${name} must be a non-negative integer, got ${raw}`);
  return value;
}

function jsonEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  try {
    return JSON.parse(raw);
  } catch (err) {
    return fail(`${name} is not valid JSON: ${err.message}`);
  }
}

function listEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined) return fallback;
  return raw.split(',').map((s) => s.trim()).filter(Boolean);
}

function isAbsoluteUri(value) {
  try {
    new URL(value); // eslint-disable-line no-new
    return true;
  } catch {
    return false;
  }
}

const port = intEnv('IDP_PORT', undefined);
if (!port) fail('IDP_PORT is required');
const issuer = `http://127.0.0.1:${port}`;

const accessTokenTTL = intEnv('IDP_ACCESS_TOKEN_TTL', 300);
const refreshTokenTTL = intEnv('IDP_REFRESH_TOKEN_TTL', 86400);
const idTokenTTL = intEnv('IDP_ID_TOKEN_TTL', 3600);
const accessTokenFormat = process.env.IDP_ACCESS_TOKEN_FORMAT || 'opaque';
if (!['opaque', 'jwt'].includes(accessTokenFormat)) fail('IDP_ACCESS_TOKEN_FORMAT must be opaque or jwt');
const audience = process.env.IDP_RESOURCE || 'api';
const resourceIndicator = isAbsoluteUri(audience) ? audience : `urn:tokengate:resource:${audience}`;
const resourceScopes = 'api:read api:write';
const discoveryEnabled = process.env.IDP_DISCOVERY !== '0';
const extraResources = listEnv('IDP_EXTRA_RESOURCES', []);
for (const uri of extraResources) if (!isAbsoluteUri(uri)) fail(`IDP_EXTRA_RESOURCES: ${uri} is not an absolute URI`);
const registrationEnabled = process.env.IDP_REGISTRATION === '1';
const accountClaims = jsonEnv('IDP_ACCOUNT_CLAIMS', {});
const acrValues = listEnv('IDP_ACR_VALUES', []);
const acrReprompt = process.env.IDP_ACR_REPROMPT !== '0';
const acrPublish = process.env.IDP_ACR_PUBLISH !== '0';

// ---- signing keys -------------------------------------------------------------------------------------

function thumbprint(jwk) {
  // RFC 7638: the required members in lexicographic order, no whitespace.
  const members = jwk.kty === 'RSA' ? ['e', 'kty', 'n'] : ['crv', 'kty', 'x', 'y'];
  const canonical = JSON.stringify(Object.fromEntries(members.map((m) => [m, jwk[m]])));
  return createHash('sha256').update(canonical).digest('base64url');
}

function freshKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return [
    { ...rsa, use: 'sig', alg: 'RS256', kid: thumbprint(rsa) },
    { ...ec, use: 'sig', alg: 'ES256', kid: thumbprint(ec) },
  ];
}

function loadKeys() {
  const file = process.env.IDP_KEY_FILE;
  if (!file) return freshKeys();
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')).keys;
  const keys = freshKeys();
  writeFileSync(file, JSON.stringify({ keys }), { mode: 0o600 });
  return keys;
}

// ---- clients --------------------------------------------------------------------------------------------

const redirectUris = listEnv('IDP_REDIRECT_URIS', ['http://127.0.0.1:8080/oauth2/callback']);
const postLogoutRedirectUris = listEnv(
  'IDP_POST_LOGOUT_REDIRECT_URIS',
  [...new Set(redirectUris.map((uri) => `${new URL(uri).origin}/`))],
);
const backchannelLogoutUri = process.env.IDP_BACKCHANNEL_LOGOUT_URI || undefined;
const backchannelSessionRequired = process.env.IDP_BACKCHANNEL_LOGOUT_SESSION_REQUIRED !== '0';

const defaultClients = [
  {
    client_id: 'gw',
    client_secret: 'gw-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: redirectUris,
    post_logout_redirect_uris: postLogoutRedirectUris,
    ...(backchannelLogoutUri
      ? {
        backchannel_logout_uri: backchannelLogoutUri,
        backchannel_logout_session_required: backchannelSessionRequired,
      }
      : {}),
  },
  {
    client_id: 'gw-post',
    client_secret: 'gw-secret',
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: redirectUris,
    post_logout_redirect_uris: postLogoutRedirectUris,
  },
  {
    client_id: 'introspector',
    client_secret: 'introspector-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  },
];
const clients = jsonEnv('IDP_CLIENTS', defaultClients);

// ---- accounts -------------------------------------------------------------------------------------------

function capitalise(login) {
  return login.charAt(0).toUpperCase() + login.slice(1);
}

function baseClaims(login) {
  return {
    sub: login,
    email: login.includes('@') ? login : `${login}@example.com`,
    email_verified: true,
    name: capitalise(login),
    preferred_username: login,
  };
}

function allClaims(login) {
  return { ...baseClaims(login), ...(accountClaims[login] || {}), sub: login };
}

// Every extra claim name of IDP_ACCOUNT_CLAIMS is released with the profile scope.
const extraClaimNames = new Set(['groups', 'realm_access']);
for (const claims of Object.values(accountClaims)) {
  for (const name of Object.keys(claims)) if (name !== 'sub') extraClaimNames.add(name);
}

// ---- request counters ------------------------------------------------------------------------------------

const counters = Object.create(null);

// ---- step-up (IDP_ACR_VALUES): stock oidc-provider never sets acr and ignores acr_values -------------------

// The koa context of the request being handled, for the interactionFinished wrapper (it sees only req).
const CTX = Symbol('tokengate ctx');

function chosenAcr(password) {
  return acrValues.includes(password) ? password : acrValues[0];
}

// acr / auth_time of the authentication behind a token being minted: the code at the code grant, the
// refresh token at a refresh (oidc-provider keeps them there, not on the access token).
function authenticationClaims(ctx) {
  if (!acrValues.length || !ctx || !ctx.oidc) return {};
  const { entities } = ctx.oidc;
  const source = entities.AuthorizationCode || entities.RefreshToken;
  if (!source) return {};
  return { acr: source.acr, auth_time: source.authTime };
}

function stepUpPolicy() {
  const policy = interactionPolicy.base();
  if (!acrReprompt) return policy;
  policy.get('login').checks.add(new interactionPolicy.Check(
    'acr_values_unmet',
    'none of the requested acr_values is met by the current session',
    (ctx) => {
      const { oidc } = ctx;
      const requested = typeof oidc.params.acr_values === 'string' ? oidc.params.acr_values.split(' ') : [];
      if (!requested.length || !oidc.session.accountId) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      // The login just made decides (its acr is final), as the max_age check does.
      if (oidc.result && oidc.result.login) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      return requested.includes(oidc.session.acr)
        ? interactionPolicy.Check.NO_NEED_TO_PROMPT
        : interactionPolicy.Check.REQUEST_PROMPT;
    },
  ));
  return policy;
}

// ---- the provider --------------------------------------------------------------------------------------

const configuration = {
  clients,
  jwks: { keys: loadKeys() },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return allClaims(sub);
      },
    };
  },
  claims: {
    // Step-up: acr and auth_time in every ID token (not only when acr_values / max_age ask for them).
    openid: acrValues.length ? ['sub', 'acr', 'auth_time'] : ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', ...extraClaimNames],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'api:read', 'api:write'],
  // Without this the ID token of a userinfo-usable token carries only `sub` (claims go to /me only).
  conformIdTokenClaims: false,
  async extraTokenClaims(ctx, token) {
    if (!token.accountId) return undefined;
    const { email, groups, realm_access: realmAccess } = allClaims(token.accountId);
    return { email, groups, realm_access: realmAccess, ...authenticationClaims(ctx) };
  },
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  rotateRefreshToken: true,
  pkce: { methods: ['S256'], required: () => true },
  clockTolerance: 0,
  ttl: {
    AccessToken: () => accessTokenTTL,
    RefreshToken: () => refreshTokenTTL,
    IdToken: () => idTokenTTL,
    Interaction: () => 3600,
    Session: () => 14 * 24 * 3600,
    Grant: () => 14 * 24 * 3600,
  },
  cookies: {
    names: { session: 'idp_session', interaction: 'idp_interaction', resume: 'idp_resume' },
    keys: ['tokengate-test-idp-cookie-key-1'],
    long: { httpOnly: true, sameSite: 'lax', signed: true },
    short: { httpOnly: true, sameSite: 'lax', signed: true },
  },
  features: {
    devInteractions: { enabled: true },
    introspection: {
      enabled: true,
      // Any authenticated confidential client may introspect any token (the default warns).
      allowedPolicy: async (ctx, client, token) => client.clientAuthMethod !== 'none'
        || token.clientId === client.clientId,
    },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    // RFC 9449: off by default in 8.x (on in v9); a DPoP header at /token binds the tokens (cnf.jkt).
    dPoP: { enabled: true },
    clientCredentials: { enabled: false },
    registration: { enabled: registrationEnabled },
    resourceIndicators: {
      enabled: true,
      // jwt format: the resource is implied by every authorization request (and so every token request).
      async defaultResource(ctx, client, oneOf) {
        if (oneOf) return oneOf.length === 1 ? oneOf[0] : oneOf;
        return accessTokenFormat === 'jwt' ? resourceIndicator : undefined;
      },
      async useGrantedResource() {
        return true;
      },
      async getResourceServerInfo(ctx, indicator) {
        const extra = extraResources.includes(indicator);
        if (indicator !== resourceIndicator && !extra) throw new errors.InvalidTarget();
        return {
          scope: resourceScopes,
          audience: extra ? indicator : audience,
          accessTokenTTL,
          accessTokenFormat,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ...(acrValues.length ? { acrValues, interactions: { policy: stepUpPolicy() } } : {}),
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(issuer, configuration);

provider.use(async (ctx, next) => {
  if (ctx.path === '/__counters' && ctx.method === 'GET') {
    ctx.type = 'json';
    ctx.body = { ...counters };
    return undefined;
  }
  if (ctx.path === '/__counters/reset' && ctx.method === 'POST') {
    for (const key of Object.keys(counters)) delete counters[key];
    ctx.status = 204;
    return undefined;
  }
  if (ctx.path.startsWith('/__accounts/') && ctx.method === 'PUT') {
    const login = decodeURIComponent(ctx.path.slice('/__accounts/'.length));
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    let claims;
    try {
      claims = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      claims = undefined;
    }
    if (!login || claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
      ctx.status = 400;
      ctx.type = 'json';
      ctx.body = { error: 'invalid_request', error_description: 'PUT a JSON object to /__accounts/<login>' };
      return undefined;
    }
    accountClaims[login] = claims;
    ctx.status = 204;
    return undefined;
  }
  // per-interaction paths are folded: /interaction/<uid>[/...] -> /interaction/:uid[/...], same for /auth
  const key = ctx.path.replace(/^\/(interaction|auth)\/[^/]+/, '/$1/:uid');
  counters[key] = (counters[key] || 0) + 1;
  if (!discoveryEnabled && ctx.path === '/.well-known/openid-configuration') {
    ctx.status = 404;
    ctx.type = 'json';
    ctx.body = { error: 'not_found', error_description: 'discovery is disabled (IDP_DISCOVERY=0)' };
    return undefined;
  }
  return next();
});

// Back-channel logout deliveries are counted (/__counters "backchannel.success" / "backchannel.error") so
// a test can tell that the RP answered 200; failures are logged with the RP's status.
provider.on('backchannel.success', () => {
  counters['backchannel.success'] = (counters['backchannel.success'] || 0) + 1;
});
provider.on('backchannel.error', (ctx, err) => {
  counters['backchannel.error'] = (counters['backchannel.error'] || 0) + 1;
  process.stderr.write(`idp backchannel logout failed: ${err.message}\n`);
});
if (acrValues.length) {
  provider.use(async (ctx, next) => {
    ctx.req[CTX] = ctx;
    await next();
    if (!acrPublish && ctx.path === '/.well-known/openid-configuration' && ctx.body) {
      delete ctx.body.acr_values_supported;
    }
  });
  // devInteractions' login form: the password chooses the acr of the login (see IDP_ACR_VALUES).
  const finish = provider.interactionFinished.bind(provider);
  provider.interactionFinished = async (req, res, result, options) => {
    if (result && result.login) {
      const ctx = req[CTX];
      const password = ctx && ctx.oidc && ctx.oidc.body ? ctx.oidc.body.password : undefined;
      result.login.acr = chosenAcr(typeof password === 'string' ? password : '');
    }
    return finish(req, res, result, options);
  };
}

provider.on('server_error', (ctx, err) => {
  process.stderr.write(`idp server_error on ${ctx.method} ${ctx.path}: ${err.stack || err}\n`);
});

// Static clients are validated lazily by oidc-provider: load them now so bad metadata fails the start.
try {
  await Promise.all(clients.map((client) => provider.Client.find(String(client.client_id))));
} catch (err) {
  fail(`invalid client metadata: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`);
}

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`IDP READY ${issuer}\n`);
});
server.on('error', (err) => fail(`cannot listen on 127.0.0.1:${port}: ${err.message}`));

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
