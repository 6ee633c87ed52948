#include "notify/email_api.hpp"

#include <boost/json.hpp>

#include <algorithm>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/json.hpp"
#include "devices/devices.hpp"
#include "notify/outbox.hpp"
#include "platform/api.hpp"
#include "platform/idempotency.hpp"

namespace harmar::notify {

namespace js = boost::json;
using net::Request;
using net::Response;

namespace {

using Api = std::shared_ptr<EmailApi>;
constexpr const char* kSecretHeader = "X-Harmar-Inbound-Secret";
constexpr std::size_t kMaxRecipients = 10;


bool valid_host(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  for (unsigned char c : h)
    if (!(std::isalnum(c) || c == '.' || c == '-' || c == ':')) return false;
  return true;
}

// The device must be the caller's (404 otherwise, as for anything not theirs).
asio::awaitable<Status> check_device(platform::Services& s, const Principal& who, const std::string& device_id) {
  if (device_id.empty()) co_return Status{};
  if (!is_uuid(device_id)) co_return Error::not_found("no such device");
  auto dir = s.find<devices::Directory>();
  if (!dir) co_return Error::unavailable("the devices module is not running");
  auto d = co_await dir->find(device_id);
  if (!d.ok()) co_return d.error();
  if (!*d || (*d)->user_id != who.user_id) co_return Error::not_found("no such device");
  co_return Status{};
}

asio::awaitable<Response> put_config(Api api, platform::Services& s, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"device_id", "recipients", "kinds", "enabled", "smtp"});
  EmailConfig cfg;
  const Principal& who = platform::principal(req);
  cfg.user_id = who.user_id;
  cfg.device_id = r.optional_string("device_id", 1, 64).value_or("");
  cfg.recipients = r.optional_strings("recipients", kMaxRecipients, 254).value_or(std::vector<std::string>{});
  for (const auto& a : cfg.recipients)
    if (!valid_address(a)) r.fail("recipients", "'" + a.substr(0, 64) + "' is not an email address (local@domain)");
  if (auto kinds = r.optional_strings("kinds", 20, 64)) {
    for (const auto& k : *kinds)
      if (std::find(notification_kinds().begin(), notification_kinds().end(), k) == notification_kinds().end())
        r.fail("kinds", "'" + k.substr(0, 64) + "' is not a kind (task-created, task-completed, task-failed, device-online, device-offline, announcement)");
    cfg.kinds = *kinds;
  } else {
    cfg.kinds = notification_kinds();
  }
  cfg.enabled = r.optional_bool("enabled").value_or(true);
  const js::value* smtp_v = body.if_contains("smtp");
  if (smtp_v && !smtp_v->is_null()) {
    if (!smtp_v->is_object()) {
      r.fail("smtp", "must be an object or null");
    } else if (!api->user_smtp) {
      r.fail("smtp", "this server does not allow SMTP servers of your own (email.user_smtp)");
    } else {
      const js::object& so = smtp_v->as_object();
      json::Reader sr(so);
      sr.reject_unknown({"host", "port", "security", "user", "password", "from"});
      SmtpOverride o;
      o.host = sr.required_string("host", 1, 253);
      if (!o.host.empty() && !valid_host(o.host)) sr.fail("host", "is not a host name or address");
      o.port = sr.optional_int("port", 1, 65535).value_or(587);
      o.security = sr.optional_string("security", 1, 16).value_or("starttls");
      if (o.security != "starttls" && o.security != "tls") sr.fail("security", "must be starttls or tls");
      o.user = sr.optional_string("user", 0, 254).value_or("");
      o.password = sr.optional_string("password", 1, 512);
      o.from = sr.optional_string("from", 0, 320).value_or("");
      if (!o.from.empty() && !address_of(o.from)) sr.fail("from", "is not a mailbox (Name <addr> or addr)");
      if (!sr.ok())
        for (const auto& fe : sr.error().errors) r.fail("smtp." + fe.field, fe.message);
      cfg.smtp = std::move(o);
    }
  }
  if (!r.ok()) co_return r.error();
  auto owned = co_await check_device(s, who, cfg.device_id);
  if (!owned.ok()) co_return owned.error();
  auto saved = co_await api->configs->put(std::move(cfg));
  if (!saved.ok()) co_return saved.error();
  int status = saved->created_at == saved->updated_at ? 201 : 200;
  co_return Response::json(status, js::serialize(js::object{{"config", saved->to_json()}}));
}

asio::awaitable<Response> get_config(Api api, platform::Services& s, Request& req) {
  const Principal& who = platform::principal(req);
  std::string device(req.param("device_id"));
  if (device == "default") device.clear();
  auto owned = co_await check_device(s, who, device);
  if (!owned.ok()) co_return owned.error();
  auto cfg = co_await api->configs->get(who.user_id, device);
  if (!cfg.ok()) co_return cfg.error();
  if (!*cfg) co_return Error::not_found("no email config for this device");
  co_return Response::json(200, js::serialize(js::object{{"config", (*cfg)->to_json()}}));
}

asio::awaitable<Response> test_mail(Api api, platform::Services& s, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"device_id"});
  std::string device = r.optional_string("device_id", 1, 64).value_or("");
  if (!r.ok()) co_return r.error();
  const Principal& who = platform::principal(req);
  auto owned = co_await check_device(s, who, device);
  if (!owned.ok()) co_return owned.error();
  auto cfg = co_await api->configs->resolve(who.user_id, device);
  if (!cfg.ok()) co_return cfg.error();
  if (!*cfg || (*cfg)->recipients.empty())
    co_return Error{422, "no_recipients", "set an email config with recipients first (POST /v1/email/config)"};
  const EmailConfig& c = **cfg;
  std::optional<SmtpSettings> smtp = api->mailer->settings().smtp;
  if (c.smtp) smtp = smtp_settings(*c.smtp, api->mailer->settings().smtp_base());
  if (!smtp) co_return Error{422, "smtp_not_configured", "neither the server (smtp.url) nor this config has an SMTP server"};
  js::array results;
  bool all = true;
  for (const auto& to : c.recipients) {
    TemplateVars vars;
    vars["config_id"] = c.id;
    if (c.smtp) vars["smtp_host"] = c.smtp->host;
    auto mail = api->mailer->render("email-test", to, vars);
    if (!mail.ok()) co_return mail.error();
    if (c.smtp) mail->smtp_config = c.id;
    auto outcome = co_await api->mailer->send_now(std::move(mail).value(), *smtp);
    if (!outcome.ok()) co_return outcome.error();
    js::object one{{"to", to}, {"ok", outcome->ok}};
    if (!outcome->ok) {
      one["error"] = outcome->error.substr(0, 500);
      one["transient"] = outcome->transient;
      all = false;
    }
    results.push_back(std::move(one));
  }
  co_return Response::json(200, js::serialize(js::object{
                                    {"delivered", all}, {"config_id", c.id}, {"results", std::move(results)}}));
}

asio::awaitable<Response> incoming(Api api, Request& req) {
  if (api->inbound_secret.empty()) co_return Error::not_found("inbound mail is not enabled (email.inbound_secret)");
  std::string_view given = req.header(kSecretHeader);
  if (given.empty() || !secrets_equal(given, api->inbound_secret))
    co_return Error::unauthorized("the inbound mail secret is missing or wrong", "invalid_inbound_secret");
  std::string_view ct = req.header("Content-Type");
  std::string type(ct.substr(0, ct.find(';')));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (type != "message/rfc822" && type != "application/octet-stream")
    co_return Error{415, "unsupported_media_type", "send the raw message as message/rfc822 or application/octet-stream"};
  auto out = co_await api->incoming->receive(std::move(req.body));
  if (!out.ok()) co_return out.error();
  co_return Response::json(200, js::serialize(*out));
}

asio::awaitable<Response> list_outbox(Request& req, platform::Services& s) {
  HARMAR_CO_TRY(auto page, platform::page_params(req));
  std::string status = req.query_param("status").value_or("");
  static const std::vector<std::string> kStatuses = {"queued", "sending", "sent", "failed", "dead", "logged"};
  if (!status.empty() && std::find(kStatuses.begin(), kStatuses.end(), status) == kStatuses.end())
    co_return Error::validation("status is not an outbox status",
                                {{"status", "must be queued, sending, sent, failed, dead or logged"}});
  auto rows = co_await outbox::list(s.db, status, page.after, page.limit + 1);
  if (!rows.ok()) co_return rows.error();
  auto to_json = [](const outbox::Row& r) {
    auto opt_time = [](const std::optional<int64_t>& t) { return t ? js::value(format_rfc3339(*t)) : js::value(nullptr); };
    return js::object{{"id", r.id},
                      {"kind", r.kind},
                      {"to", r.to},
                      {"subject", r.subject},
                      {"status", r.status},
                      {"attempts", r.attempts},
                      {"max_attempts", r.max_attempts},
                      {"error", r.error ? js::value(*r.error) : js::value(nullptr)},
                      {"redacted", r.redacted},
                      {"config_id", r.config_id ? js::value(*r.config_id) : js::value(nullptr)},
                      {"created_at", format_rfc3339(r.created_at)},
                      {"sent_at", opt_time(r.sent_at)},
                      {"next_attempt_at", r.status == "queued" ? opt_time(r.next_at) : js::value(nullptr)}};
  };
  co_return platform::page_response(*rows, page.limit, to_json, [](const outbox::Row& r) { return r.id; });
}

asio::awaitable<Response> list_incoming(Api api, Request& req) {
  HARMAR_CO_TRY(auto page, platform::page_params(req));
  std::string status = req.query_param("status").value_or("");
  if (!status.empty() && status != "accepted" && status != "rejected")
    co_return Error::validation("status is not an inbound status", {{"status", "must be accepted or rejected"}});
  auto rows = co_await api->incoming->list(status, page.after, page.limit + 1);
  if (!rows.ok()) co_return rows.error();
  co_return platform::page_response(*rows, page.limit, [](const InboundRow& r) { return r.to_json(); },
                                    [](const InboundRow& r) { return r.id; });
}

// An admin sends template NAME with VARS (its preview in a real mailbox, or an announcement):
// it goes the way notifications go (email configs, reply tokens, the queue).
asio::awaitable<Response> send_template(Api api, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"to", "vars"});
  std::string to = r.required_string("to", 3, 254);
  if (!to.empty() && !valid_address(to)) r.fail("to", "is not an email address (local@domain)");
  TemplateVars vars;
  if (auto v = r.optional_object("vars", 32 << 10)) {
    if (v->size() > 50) r.fail("vars", "has more than 50 variables");
    for (const auto& [k, val] : *v) {
      if (!val.is_string()) r.fail("vars." + std::string(k), "must be a string");
      else vars[std::string(k)] = std::string(val.as_string());
    }
  }
  if (!r.ok()) co_return r.error();
  std::string name(req.param("name"));
  auto sent = co_await api->mailer->send_template(std::move(name), std::move(to), std::move(vars));
  if (!sent.ok()) co_return sent.error();
  co_return Response::json(202, js::serialize(js::object{{"queued", true}}));
}

}  // namespace

void install_email_routes(net::Router& router, platform::Services& services, std::shared_ptr<EmailApi> api) {
  using net::Auth;
  platform::Services* s = &services;
  auto idem = platform::idempotent(services);
  net::RouteOptions user{.auth = Auth::User};
  net::RouteOptions admin{.auth = Auth::User, .permission = "email.admin"};
  router.post("/v1/email/config", [api, s](Request& r) { return put_config(api, *s, r); },
              {.auth = Auth::User, .body_limit = 64 << 10, .middleware = {idem}});
  router.get("/v1/email/config/{device_id}", [api, s](Request& r) { return get_config(api, *s, r); }, user);
  router.post("/v1/email/test", [api, s](Request& r) { return test_mail(api, *s, r); }, user);
  router.post("/v1/email/incoming", [api](Request& r) { return incoming(api, r); },
              {.auth = Auth::None, .body_limit = api->inbound_max_bytes});
  router.post("/v1/email/templates/{name}/send", [api](Request& r) { return send_template(api, r); }, admin);
  router.get("/v1/email/outbox", [s](Request& r) { return list_outbox(r, *s); }, admin);
  router.get("/v1/email/incoming", [api](Request& r) { return list_incoming(api, r); }, admin);
}

}  // namespace harmar::notify
