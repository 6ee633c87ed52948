#pragma once
// Third-party sign-in: OAuth 2.0 authorization code with PKCE (S256) and `state`, for GitHub,
// WeChat (its own token and userinfo endpoints, `appid`/`secret` parameters, no PKCE) and any
// OpenID Connect issuer (discovery document, JWKS cached, id_token checked: RS256/ES256
// signature, iss, aud, azp, exp, iat, nbf, nonce; RFC 9207 `iss` on the callback).
//
//   GET /v1/auth/oauth/{provider}/authorize[?redirect_uri=APP_URL]
//       → 302 to the provider. state, the PKCE verifier, the nonce and the app URL are kept in
//         services.kv (expiring, single use), keyed by SHA-256(state). A cookie binds the flow to
//         the browser that started it (against login CSRF): harmar_oauth_<id>, HttpOnly, Lax.
//   GET /v1/auth/oauth/{provider}/callback?code&state
//       → the identity, linked to an account (see signin_module.cpp), then 200 with the token pair,
//         or 302 to the app URL with the tokens in the fragment (#access_token=...).
//
// Providers come from `auth.oauth.<name>` maps (see OAuthSettings::add_keys), e.g.
//
//   auth:
//     oauth:
//       github: {type: github, client_id: ..., client_secret: ...}
//       corp:   {type: oidc, issuer: https://login.example.com, client_id: ..., client_secret: ...}
//     oauth_redirect_urls: [https://app.example.com/auth/done]
#include <boost/asio/awaitable.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "auth/oauth_idtoken.hpp"
#include "core/result.hpp"
#include "store/kv.hpp"

namespace harmar::config {
class Config;
class Schema;
}  // namespace harmar::config

namespace harmar::auth::oauth {

namespace asio = boost::asio;

enum class Kind { GitHub, WeChat, Oidc };

struct ProviderConfig {
  std::string name;  // the {provider} of the routes, and the provider recorded with linked identities
  Kind kind = Kind::Oidc;
  std::string client_id, client_secret;
  std::string issuer;  // OIDC
  std::string scopes;  // space-separated
  // Endpoints: GitHub and WeChat have defaults; OIDC ones come from discovery unless set here.
  std::string authorize_url, token_url, userinfo_url, emails_url, jwks_url;
  bool secret_in_body = false;  // OIDC: client_secret_post instead of client_secret_basic
  std::string redirect_uri;     // our callback: PUBLIC_URL/v1/auth/oauth/NAME/callback
};

struct OAuthSettings {
  std::string public_url;
  std::vector<ProviderConfig> providers;
  std::vector<std::string> redirect_urls;  // app URLs a flow may end at (exact, or a prefix ending in '/')
  int64_t state_ttl_ms = 10 * 60 * 1000;
  int64_t jwks_ttl_ms = 60 * 60 * 1000;
  int64_t http_timeout_ms = 10'000;
  int64_t clock_skew_s = 120;
  int per_ip_per_minute = 30;

  static void add_keys(config::Schema& s);
  // 422 naming the bad key (auth.oauth.NAME.FIELD) when a provider is misconfigured.
  static Result<OAuthSettings> from_config(const config::Config& cfg);
};

// Who the provider says signed in.
struct Identity {
  std::string subject;  // stable at the provider: GitHub user id, WeChat unionid (else openid), OIDC sub
  std::string email;    // "" if none
  bool email_verified = false;
  std::string name;
};

struct AuthorizeResult {
  std::string location;     // the provider's authorization URL
  std::string cookie_name;  // the browser binding
  std::string cookie_value;
};

struct CallbackParams {
  std::optional<std::string> code, state, iss, error, error_description;
  std::string cookie_header;  // the request's Cookie header, for the browser binding
};

struct CallbackResult {
  Identity identity;
  std::optional<std::string> app_redirect;
  std::string cookie_name;  // to clear
};

class OAuthService {
 public:
  OAuthService(OAuthSettings settings, store::Kv& kv);

  const ProviderConfig* provider(std::string_view name) const;
  const OAuthSettings& settings() const { return settings_; }
  // Whether `url` is an allow-listed app URL.
  bool allowed_app_redirect(std::string_view url) const;

  // 404 for an unknown provider (checked by the caller), 422 for a redirect_uri not allowed,
  // 429 past the per-IP limit, 502 when OIDC discovery fails.
  asio::awaitable<Result<AuthorizeResult>> authorize(const ProviderConfig& p, std::optional<std::string> app_redirect,
                                                     std::string ip);
  // 400 `invalid_state` (unknown, expired, replayed, another provider's, or another browser's),
  // 401 `oauth_denied` (the user or provider refused), 401 `invalid_id_token`, 502 when the
  // provider's endpoints fail. On failure after the state was accepted, the error carries the
  // app redirect (if any) in `app_redirect`.
  asio::awaitable<Result<CallbackResult>> callback(const ProviderConfig& p, CallbackParams params,
                                                   std::optional<std::string>* app_redirect_on_error);

  // The OIDC key set of `p` (cached; refetched when stale, or when `want_kid` is unknown and the
  // last fetch is older than 30 s).
  asio::awaitable<Result<std::shared_ptr<const JwkSet>>> jwks(const ProviderConfig& p, std::optional<std::string> want_kid);

 private:
  struct Discovery {
    std::string authorization_endpoint, token_endpoint, userinfo_endpoint, jwks_uri;
    bool iss_parameter_supported = false;
    int64_t fetched_ms = 0;
  };
  struct KeyCache {
    std::shared_ptr<const JwkSet> keys;
    int64_t fetched_ms = 0;
  };
  asio::awaitable<Result<Discovery>> discovery(const ProviderConfig& p);
  asio::awaitable<Result<Identity>> github_identity(const ProviderConfig& p, const std::string& code,
                                                    const std::string& verifier);
  asio::awaitable<Result<Identity>> wechat_identity(const ProviderConfig& p, const std::string& code);
  asio::awaitable<Result<Identity>> oidc_identity(const ProviderConfig& p, const std::string& code,
                                                  const std::string& verifier, const std::string& nonce);

  OAuthSettings settings_;
  store::Kv& kv_;
  std::mutex mu_;
  std::map<std::string, Discovery> discovery_;
  std::map<std::string, KeyCache> jwks_;
};

// base64url(SHA-256(verifier)), the S256 code_challenge (RFC 7636).
std::string pkce_challenge(std::string_view verifier);

}  // namespace harmar::auth::oauth
