// A real OpenID provider for Sekisho's identity tests (loopback only).
//
//   node server.js [config.json]        (or SEKISHO_OIDC_CONFIG=config.json)
//
// Binds 127.0.0.1 on the configured port (default 0 = any free port), builds the provider with
// the real port as issuer, and prints one line `READY <issuer>` on stdout.
//
// What differs from a stock oidc-provider:
// - the development login pages are off; a tiny login form of our own checks a password from
//   the configuration and logs the user in with the configured `amr`/`acr`;
// - consent is granted automatically (every prompt that is not `login`);
// - refresh tokens are issued to every client allowed the refresh_token grant, with or without
//   `offline_access` (OIDC Core 11 would otherwise demand prompt=consent);
// - JWT access tokens come through resource indicators (`resource=` parameter);
// - `POST /__admin/users/<id>` with a JSON body `{"groups": [...]}` changes a user's claims at
//   run time (for the group-change test). Guarded by the `adminToken` from the configuration.
//
// Config file (all keys optional):
// {
//   "port": 0,
//   "adminToken": "...",
//   "users": { "alice": { "password": "pw", "email": "...", "name": "...",
//                         "groups": ["staff"], "amr": ["pwd", "otp"], "acr": "urn:sekisho:loa:2" } },
//   "clients": [ { ...oidc-provider client metadata... } ],
//   "resources": ["https://api.sekisho.test"],
//   "ttl": { "AccessToken": 600, "IdToken": 600, "RefreshToken": 86400 }
// }
import http from 'node:http';
import fs from 'node:fs';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const configPath = process.argv[2] || process.env.SEKISHO_OIDC_CONFIG;
const cfg = configPath ? JSON.parse(fs.readFileSync(configPath, 'utf8')) : {};

const users = cfg.users || {
  alice: {
    password: 'alice-password',
    email: 'alice@city.example.jp',
    name: '山田 花子',
    groups: ['staff'],
    amr: ['pwd', 'otp'],
    acr: 'urn:sekisho:loa:2',
  },
};
const clients = cfg.clients || [
  {
    client_id: 'sekisho',
    client_secret: 'sekisho-test-secret',
    redirect_uris: ['https://127.0.0.1:8443/.sekisho/callback'],
    post_logout_redirect_uris: ['https://127.0.0.1:8443/.sekisho/logged-out'],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    require_auth_time: true,
  },
];
const resources = new Set(cfg.resources || ['https://api.sekisho.test']);
const adminToken = cfg.adminToken || '';
const ttl = cfg.ttl || {};

// Fresh signing keys with a unique `kid` in every process, so a restart is a key rotation.
function signingKey(type, options, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`, alg, use: 'sig' };
}
const jwks = {
  keys: [
    signingKey('rsa', { modulusLength: 2048 }, 'RS256'),
    signingKey('ec', { namedCurve: 'P-256' }, 'ES256'),
  ],
};

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 65536) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function loginPage(uid, message) {
  return `<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>Test IdP login</title></head>
<body><h1>Test IdP</h1>${message ? `<p class="error">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<input name="username" autocomplete="username"><input name="password" type="password">
<button type="submit">Sign in</button></form></body></html>`;
}

const server = http.createServer();
server.listen(cfg.port || 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients,
    jwks,
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    conformIdTokenClaims: false,
    acrValues: ['urn:sekisho:loa:1', 'urn:sekisho:loa:2'],
    claims: {
      openid: ['sub', 'amr', 'acr'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (!resources.has(resourceIndicator)) {
            throw new Provider.errors.InvalidTarget();
          }
          return {
            scope: 'api:read',
            audience: resourceIndicator,
            accessTokenTTL: ttl.AccessToken || 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: {
      AccessToken: ttl.AccessToken || 600,
      IdToken: ttl.IdToken || 600,
      RefreshToken: ttl.RefreshToken || 86400,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 86400,
      Grant: 86400,
      ClientCredentials: ttl.AccessToken || 600,
    },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    extraTokenClaims: async (ctx, token) => {
      const user = token.accountId && users[token.accountId];
      return user ? { groups: user.groups || [] } : undefined;
    },
    findAccount: async (ctx, id) => {
      if (!users[id]) return undefined;
      return {
        accountId: id,
        claims: async () => {
          const u = users[id];
          return {
            sub: id,
            email: u.email,
            email_verified: true,
            name: u.name,
            groups: u.groups || [],
          };
        },
      };
    },
  });

  provider.use(async (ctx, next) => {
    // Admin hook: change a user's claims at run time.
    const admin = ctx.path.match(/^\/__admin\/users\/([^/]+)$/);
    if (admin && ctx.method === 'POST') {
      if (adminToken && ctx.get('x-admin-token') !== adminToken) {
        ctx.status = 403;
        return;
      }
      const id = decodeURIComponent(admin[1]);
      if (!users[id]) {
        ctx.status = 404;
        return;
      }
      const patch = JSON.parse(await readBody(ctx.req));
      for (const key of ['groups', 'email', 'name', 'amr', 'acr', 'password']) {
        if (key in patch) users[id][key] = patch[key];
      }
      ctx.status = 204;
      return;
    }

    const show = ctx.path.match(/^\/interaction\/([^/]+)$/);
    const login = ctx.path.match(/^\/interaction\/([^/]+)\/login$/);
    if (show && ctx.method === 'GET') {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      if (details.prompt.name === 'login') {
        ctx.type = 'html';
        ctx.body = loginPage(details.uid);
        return;
      }
      // Automatic consent for every other prompt.
      const { prompt: { details: missing }, params, session } = details;
      let { grantId } = details;
      const grant = grantId
        ? await provider.Grant.find(grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      if (missing.missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
      }
      const saved = await grant.save();
      const result = { consent: {} };
      if (!grantId) {
        grantId = saved;
        result.consent.grantId = grantId;
      }
      const redirectTo = await provider.interactionResult(ctx.req, ctx.res, result, {
        mergeWithLastSubmission: true,
      });
      ctx.redirect(redirectTo);
      return;
    }
    if (login && ctx.method === 'POST') {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      const form = new URLSearchParams(await readBody(ctx.req));
      const id = form.get('username') || '';
      const user = users[id];
      if (!user || form.get('password') !== user.password) {
        ctx.status = 401;
        ctx.type = 'html';
        ctx.body = loginPage(details.uid, 'invalid username or password');
        return;
      }
      const redirectTo = await provider.interactionResult(
        ctx.req,
        ctx.res,
        { login: { accountId: id, amr: user.amr || ['pwd'], acr: user.acr || 'urn:sekisho:loa:1' } },
        { mergeWithLastSubmission: false },
      );
      ctx.redirect(redirectTo);
      return;
    }
    await next();
  });

  server.on('request', provider.callback());
  process.stdout.write(`READY ${issuer}\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
