// The endpoints of shared/API.md "Accounts and auth", plus roles, API keys and the audit log:
// parse and validate the DTO → call AuthService → write the DTO.
#include "auth/api.hpp"

#include <boost/json.hpp>

#include "core/clock.hpp"
#include "core/json.hpp"
#include "platform/api.hpp"
#include "platform/idempotency.hpp"

namespace harmar::auth {

namespace js = boost::json;
using net::Request;
using net::Response;

namespace {

constexpr std::size_t kMaxEmail = 320;
constexpr std::size_t kMaxPasswordBytes = 1024;
constexpr std::size_t kMaxToken = 512;

js::value time_or_null(const std::optional<int64_t>& ms) {
  if (!ms) return nullptr;
  return js::value(format_rfc3339(*ms));
}

js::array strings(const std::vector<std::string>& v) {
  js::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

js::object session_json(const repo::SessionRow& s, const std::string& current) {
  return js::object{{"id", s.id},
                    {"method", s.method},
                    {"ip", s.ip},
                    {"user_agent", s.user_agent},
                    {"created_at", format_rfc3339(s.created_at)},
                    {"last_used_at", format_rfc3339(s.last_used_at)},
                    {"expires_at", format_rfc3339(s.expires_at)},
                    {"current", s.id == current}};
}

js::object api_key_json(const repo::ApiKeyRow& k) {
  return js::object{{"id", k.id},
                    {"name", k.name},
                    {"prefix", k.prefix},
                    {"permissions", strings(k.permissions)},
                    {"created_at", format_rfc3339(k.created_at)},
                    {"expires_at", time_or_null(k.expires_at)},
                    {"last_used_at", time_or_null(k.last_used_at)}};
}

js::object role_json(const repo::RoleRow& r) {
  return js::object{{"name", r.name},
                    {"description", r.description},
                    {"permissions", strings(r.permissions)},
                    {"builtin", r.builtin},
                    {"created_at", format_rfc3339(r.created_at)}};
}

js::object audit_json(const repo::AuditRow& a) {
  js::value detail = js::object{};
  boost::system::error_code ec;
  js::value parsed = js::parse(a.detail, ec);
  if (!ec) detail = std::move(parsed);
  return js::object{{"id", a.id},
                    {"at", format_rfc3339(a.at)},
                    {"user_id", a.user_id.empty() ? js::value(nullptr) : js::value(a.user_id)},
                    {"ip", a.ip},
                    {"user_agent", a.user_agent},
                    {"event", a.event},
                    {"detail", std::move(detail)}};
}

Response token_response(int status, const TokenPair& pair) {
  Response r = Response::json(status, pair.to_json());
  r.header("Cache-Control", "no-store");
  return r;
}

Error user_only() { return Error::forbidden("this endpoint takes a user's access token, not an API key"); }

}  // namespace

void install_routes(net::Router& router, platform::Services& services, std::shared_ptr<AuthService> svc) {
  auto idem = platform::idempotent(services);
  AuthService* s = svc.get();
  // The service outlives the router (it is owned by the module); handlers capture the raw pointer
  // plus one shared_ptr to keep it alive in tests that tear down in any order.
  auto keep = svc;

  router.post("/v1/auth/register", [s, keep](Request& req) -> asio::awaitable<Response> {
    HARMAR_CO_TRY(js::object body, platform::json_body(req));
    json::Reader r(body);
    AuthService::Credentials c;
    c.email = r.required_string("email", 1, kMaxEmail);
    c.password = r.required_string("password", 1, kMaxPasswordBytes);
    c.name = r.optional_string("name", 0, 200).value_or("");
    r.reject_unknown({"email", "password", "name"});
    if (!r.ok()) co_return r.error();
    auto pair = co_await s->register_user(std::move(c), ClientInfo::from(req));
    if (!pair.ok()) co_return pair.error();
    co_return token_response(201, *pair);
  }, {.middleware = {idem}});

  router.post("/v1/auth/login", [s, keep](Request& req) -> asio::awaitable<Response> {
    HARMAR_CO_TRY(js::object body, platform::json_body(req));
    json::Reader r(body);
    AuthService::Credentials c;
    c.email = r.required_string("email", 1, kMaxEmail);
    c.password = r.required_string("password", 1, kMaxPasswordBytes);
    c.captcha_id = r.optional_string("captcha_id", 0, 128);
    c.captcha_answer = r.optional_string("captcha_answer", 0, 64);
    r.reject_unknown({"email", "password", "captcha_id", "captcha_answer"});
    if (!r.ok()) co_return r.error();
    auto pair = co_await s->login(std::move(c), ClientInfo::from(req));
    if (!pair.ok()) co_return pair.error();
    co_return token_response(200, *pair);
  });

  router.post("/v1/auth/refresh", [s, keep](Request& req) -> asio::awaitable<Response> {
    HARMAR_CO_TRY(js::object body, platform::json_body(req));
    json::Reader r(body);
    std::string token = r.required_string("refresh_token", 1, kMaxToken);
    r.reject_unknown({"refresh_token"});
    if (!r.ok()) co_return r.error();
    auto pair = co_await s->refresh(std::move(token), ClientInfo::from(req));
    if (!pair.ok()) co_return pair.error();
    co_return token_response(200, *pair);
  });

  router.post("/v1/auth/logout", [s, keep](Request& req) -> asio::awaitable<Response> {
    HARMAR_CO_TRY(js::object body, platform::json_body(req));
    json::Reader r(body);
    auto token = r.optional_string("refresh_token", 0, kMaxToken);
    r.reject_unknown({"refresh_token"});
    if (!r.ok()) co_return r.error();
    // An expired access token must not stop a logout that names its refresh token.
    std::optional<Principal> who;
    if (req.has_header("Authorization")) {
      auto p = co_await s->authenticate(req);
      if (p.ok()) {
        who = std::move(p).value();
      } else if (!token || token->empty()) {
        co_return p.error();
      }
    }
    auto st = co_await s->logout(std::move(who), std::move(token), ClientInfo::from(req));
    if (!st.ok()) co_return st.error();
    co_return Response::no_content();
  });

  router.post("/v1/auth/verify-email", [s, keep](Request& req) -> asio::awaitable<Response> {
    HARMAR_CO_TRY(js::object body, platform::json_body(req));
    json::Reader r(body);
    std::string token = r.required_string("token", 1, kMaxToken);
    r.reject_unknown({"token"});
    if (!r.ok()) co_return r.error();
    auto user = co_await s->verify_email(std::move(token), ClientInfo::from(req));
    if (!user.ok()) co_return user.error();
    co_return Response::json(200, js::object{{"user", user->to_json()}});
  });

  router.post("/v1/auth/verify-email/resend", [s, keep](Request& req) -> asio::awaitable<Response> {
    const Principal& p = platform::principal(req);
    auto st = co_await s->resend_verification(p.user_id, ClientInfo::from(req));
    if (!st.ok()) co_return st.error();
    co_return Response(202, R"({"status":"sent"})");
  }, {.auth = net::Auth::User});

  router.post("/v1/auth/forgot-password", [s, keep](Request& req) -> asio::awaitable<Response> {
    HARMAR_CO_TRY(js::object body, platform::json_body(req));
    json::Reader r(body);
    std::string email = r.required_string("email", 1, kMaxEmail);
    r.reject_unknown({"email"});
    if (!r.ok()) co_return r.error();
    auto st = co_await s->forgot_password(std::move(email), ClientInfo::from(req));
    if (!st.ok()) co_return st.error();
    co_return Response(202, R"({"status":"accepted"})");
  });

  router.post("/v1/auth/reset-password", [s, keep](Request& req) -> asio::awaitable<Response> {
    HARMAR_CO_TRY(js::object body, platform::json_body(req));
    json::Reader r(body);
    std::string token = r.required_string("token", 1, kMaxToken);
    std::string password = r.required_string("password", 1, kMaxPasswordBytes);
    r.reject_unknown({"token", "password"});
    if (!r.ok()) co_return r.error();
    auto user = co_await s->reset_password(std::move(token), std::move(password), ClientInfo::from(req));
    if (!user.ok()) co_return user.error();
    co_return Response::json(200, js::object{{"user", user->to_json()}});
  });

  router.get("/v1/auth/me", [s, keep](Request& req) -> asio::awaitable<Response> {
    const Principal& p = platform::principal(req);
    auto user = co_await s->find_user(p.user_id);
    if (!user.ok()) co_return user.error();
    co_return Response::json(200, user->to_json());
  }, {.auth = net::Auth::User});

  router.get("/v1/auth/sessions", [s, keep](Request& req) -> asio::awaitable<Response> {
    const Principal& p = platform::principal(req);
    if (p.kind != Principal::Kind::User) co_return user_only();
    HARMAR_CO_TRY(platform::Page page, platform::page_params(req));
    auto rows = co_await s->sessions(p.user_id, page.after, page.limit + 1);
    if (!rows.ok()) co_return rows.error();
    co_return platform::page_response(
        *rows, page.limit, [&](const auto& row) { return session_json(row, p.session_id); },
        [](const auto& row) { return row.id; });
  }, {.auth = net::Auth::User});

  router.del("/v1/auth/sessions/{id}", [s, keep](Request& req) -> asio::awaitable<Response> {
    const Principal& p = platform::principal(req);
    if (p.kind != Principal::Kind::User) co_return user_only();
    auto st = co_await s->end_session(p, std::string(req.param("id")), ClientInfo::from(req));
    if (!st.ok()) co_return st.error();
    co_return Response::no_content();
  }, {.auth = net::Auth::User});

  router.get("/.well-known/jwks.json", [s, keep](Request&) -> asio::awaitable<Response> {
    auto ready = co_await s->ensure_ready();
    if (!ready.ok()) co_return ready.error();
    Response r = Response::json(200, s->keys().jwks(now_ms()));
    r.header("Cache-Control", "public, max-age=300");
    co_return r;
  });

  // --- API keys ---
  router.post("/v1/api-keys", [s, keep](Request& req) -> asio::awaitable<Response> {
    const Principal& p = platform::principal(req);
    HARMAR_CO_TRY(js::object body, platform::json_body(req));
    json::Reader r(body);
    std::string name = r.required_string("name", 1, 100);
    auto perms = r.optional_strings("permissions", 256, 128);
    auto expires = r.optional_string("expires_at", 1, 64);
    r.reject_unknown({"name", "permissions", "expires_at"});
    std::optional<int64_t> expires_at;
    if (expires) {
      expires_at = parse_rfc3339(*expires);
      if (!expires_at) r.fail("expires_at", "must be an RFC 3339 date-time");
    }
    if (!r.ok()) co_return r.error();
    auto made = co_await s->create_api_key(p, std::move(name), perms.value_or(std::vector<std::string>{}), expires_at,
                                           ClientInfo::from(req));
    if (!made.ok()) co_return made.error();
    js::object o = api_key_json(made->key);
    o["key"] = made->secret;
    Response resp = Response::json(201, o);
    resp.header("Cache-Control", "no-store");
    resp.header("Location", "/v1/api-keys/" + made->key.id);
    co_return resp;
  }, {.auth = net::Auth::User, .middleware = {idem}});

  router.get("/v1/api-keys", [s, keep](Request& req) -> asio::awaitable<Response> {
    const Principal& p = platform::principal(req);
    HARMAR_CO_TRY(platform::Page page, platform::page_params(req));
    auto rows = co_await s->api_keys(p.user_id, page.after, page.limit + 1);
    if (!rows.ok()) co_return rows.error();
    co_return platform::page_response(
        *rows, page.limit, [&](const auto& row) { return api_key_json(row); },
        [](const auto& row) { return row.id; });
  }, {.auth = net::Auth::User});

  router.del("/v1/api-keys/{id}", [s, keep](Request& req) -> asio::awaitable<Response> {
    const Principal& p = platform::principal(req);
    auto st = co_await s->revoke_api_key(p, std::string(req.param("id")), ClientInfo::from(req));
    if (!st.ok()) co_return st.error();
    co_return Response::no_content();
  }, {.auth = net::Auth::User});

  // --- roles ---
  const net::RouteOptions manage{.auth = net::Auth::User, .permission = "roles.manage"};
  router.get("/v1/roles", [s, keep](Request&) -> asio::awaitable<Response> {
    auto roles = co_await s->roles();
    if (!roles.ok()) co_return roles.error();
    js::array items;
    for (const auto& r : *roles) items.push_back(role_json(r));
    co_return platform::list_response(std::move(items), std::nullopt);
  }, manage);

  router.post("/v1/roles", [s, keep](Request& req) -> asio::awaitable<Response> {
    HARMAR_CO_TRY(js::object body, platform::json_body(req));
    json::Reader r(body);
    repo::RoleRow role;
    role.name = r.required_string("name", 1, 64);
    role.description = r.optional_string("description", 0, 500).value_or("");
    role.permissions = r.optional_strings("permissions", 256, 128).value_or(std::vector<std::string>{});
    r.reject_unknown({"name", "description", "permissions"});
    if (!r.ok()) co_return r.error();
    auto made = co_await s->create_role(std::move(role), platform::principal(req), ClientInfo::from(req));
    if (!made.ok()) co_return made.error();
    Response resp = Response::json(201, role_json(*made));
    resp.header("Location", "/v1/roles/" + made->name);
    co_return resp;
  }, {.auth = net::Auth::User, .permission = "roles.manage", .middleware = {idem}});

  router.get("/v1/roles/{name}", [s, keep](Request& req) -> asio::awaitable<Response> {
    auto roles = co_await s->roles();
    if (!roles.ok()) co_return roles.error();
    for (const auto& r : *roles)
      if (r.name == req.param("name")) co_return Response::json(200, role_json(r));
    co_return Error::not_found("no such role");
  }, manage);

  router.put("/v1/roles/{name}", [s, keep](Request& req) -> asio::awaitable<Response> {
    HARMAR_CO_TRY(js::object body, platform::json_body(req));
    json::Reader r(body);
    auto description = r.optional_string("description", 0, 500);
    auto perms = r.optional_strings("permissions", 256, 128);
    r.reject_unknown({"description", "permissions"});
    if (!r.ok()) co_return r.error();
    auto role = co_await s->update_role(std::string(req.param("name")), std::move(description), std::move(perms),
                                        platform::principal(req), ClientInfo::from(req));
    if (!role.ok()) co_return role.error();
    co_return Response::json(200, role_json(*role));
  }, manage);

  router.del("/v1/roles/{name}", [s, keep](Request& req) -> asio::awaitable<Response> {
    auto st = co_await s->delete_role(std::string(req.param("name")), platform::principal(req), ClientInfo::from(req));
    if (!st.ok()) co_return st.error();
    co_return Response::no_content();
  }, manage);

  router.put("/v1/users/{id}/roles", [s, keep](Request& req) -> asio::awaitable<Response> {
    HARMAR_CO_TRY(js::object body, platform::json_body(req));
    json::Reader r(body);
    auto roles = r.optional_strings("roles", 64, 64);
    if (!roles) r.fail("roles", "is required");
    r.reject_unknown({"roles"});
    if (!r.ok()) co_return r.error();
    auto user = co_await s->set_user_roles(std::string(req.param("id")), std::move(*roles), platform::principal(req),
                                           ClientInfo::from(req));
    if (!user.ok()) co_return user.error();
    co_return Response::json(200, js::object{{"user", user->to_json()}});
  }, manage);

  // --- audit ---
  router.get("/v1/auth/audit", [s, keep](Request& req) -> asio::awaitable<Response> {
    HARMAR_CO_TRY(platform::Page page, platform::page_params(req));
    auto user_id = req.query_param("user_id");
    auto event = req.query_param("event");
    if ((user_id && user_id->size() > 64) || (event && event->size() > 64))
      co_return Error::validation("filters too long", {{"user_id", "at most 64 bytes"}});
    auto rows = co_await s->audit_log(std::move(user_id), std::move(event), page.after, page.limit + 1);
    if (!rows.ok()) co_return rows.error();
    co_return platform::page_response(
        *rows, page.limit, [&](const auto& row) { return audit_json(row); },
        [](const auto& row) { return row.id; });
  }, {.auth = net::Auth::User, .permission = "audit.read"});
}

}  // namespace harmar::auth
