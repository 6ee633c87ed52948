// A real OpenID Connect provider for the integration tests: the npm `oidc-provider` (installed by
// scripts/install-deps.sh into tests/services/node_modules), started by scripts/test-services.sh.
//
//   node tests/services/oidc_provider.js --port 4000 --dir STATE_DIR
//
// What tests rely on:
// - issuer http://127.0.0.1:PORT, discovery at /.well-known/openid-configuration;
// - open dynamic client registration (POST /reg), so a test registers a client whose
//   redirect_uri carries the port of the harmar it starts; PKCE (S256) is required of every client;
// - signing keys: one RSA (RS256) and one P-256 (ES256) key, made at start and written with their
//   private parts to STATE_DIR/oidc-keys.json, so a test can mint a token the provider's keys sign
//   (to prove harmar checks the claims, not only the signature);
// - interactions a test drives without a browser:
//     GET  /interaction/:uid         → JSON {uid, prompt, client_id, scope}
//     POST /interaction/:uid/login   form login=<account> → 303 back into the authorization flow
//     POST /interaction/:uid/abort   → 303 back with error=access_denied
//   Any account name logs in. Its claims: sub = the name, email = NAME@example.test, name = NAME,
//   email_verified = true unless the name starts with "unverified".
//   Consent is granted automatically (openid email profile) for every client.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: { port: { type: 'string' }, dir: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' } },
});
const port = Number(args.port);
const issuer = `http://${args.host}:${port}`;

function makeKey(kind, alg) {
  const { privateKey } = kind === 'rsa'
    ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
    : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}` };
}
const keys = [makeKey('rsa', 'RS256'), makeKey('ec', 'ES256')];
fs.writeFileSync(path.join(args.dir, 'oidc-keys.json'), JSON.stringify({ keys }, null, 2), { mode: 0o600 });

const provider = new Provider(issuer, {
  jwks: { keys },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
  },
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  enabledJWA: { idTokenSigningAlgValues: ['RS256', 'ES256'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.test`, email_verified: !id.startsWith('unverified'), name: id };
      },
    };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { Session: 600, Interaction: 600, Grant: 600, AuthorizationCode: 120, AccessToken: 600, IdToken: 600 },
});
provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error', err));

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10000) throw new Error('body too large');
  }
  return new URLSearchParams(body);
}

async function interaction(req, res) {
  const [, , uid, action] = req.url.split('?')[0].split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    res.writeHead(400, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: 'interaction cookie does not match' }));
    return;
  }
  if (req.method === 'GET' && !action) {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({
      uid, prompt: details.prompt.name, client_id: details.params.client_id, scope: details.params.scope,
    }));
    return;
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const login = form.get('login');
    if (!login) {
      res.writeHead(400, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: 'login is required' }));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  if (req.method === 'POST' && action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'the user refused',
    }, { mergeWithLastSubmission: false });
    return;
  }
  res.writeHead(404);
  res.end();
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.writeHead(400, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: String(err && err.message) }));
    });
    return;
  }
  callback(req, res);
});
server.listen(port, args.host, () => console.log(`oidc-provider listening on ${issuer}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
