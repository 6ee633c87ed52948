#include "notify/email_config.hpp"

#include <boost/json.hpp>

#include <algorithm>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"

namespace harmar::notify {

namespace js = boost::json;

const std::vector<std::string>& notification_kinds() {
  static const std::vector<std::string> kinds = {"task-created",  "task-completed", "task-failed",
                                                 "device-online", "device-offline", "announcement"};
  return kinds;
}

bool EmailConfig::wants(const std::string& kind) const {
  return enabled && std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
}

js::object EmailConfig::to_json() const {
  js::array r, k;
  for (const auto& x : recipients) r.push_back(js::value(x));
  for (const auto& x : kinds) k.push_back(js::value(x));
  js::object o{{"id", id},
               {"device_id", device_id.empty() ? js::value(nullptr) : js::value(device_id)},
               {"recipients", std::move(r)},
               {"kinds", std::move(k)},
               {"enabled", enabled},
               {"created_at", format_rfc3339(created_at)},
               {"updated_at", format_rfc3339(updated_at)}};
  if (smtp) {
    o["smtp"] = js::object{{"host", smtp->host},
                           {"port", smtp->port},
                           {"security", smtp->security},
                           {"user", smtp->user},
                           {"from", smtp->from},
                           {"password", smtp->password ? js::value("********") : js::value(nullptr)},
                           {"password_set", smtp->password.has_value()}};
  } else {
    o["smtp"] = nullptr;
  }
  return o;
}

SmtpSettings smtp_settings(const SmtpOverride& o, const SmtpSettings& base) {
  SmtpSettings s = base;
  std::string host = o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;
  s.url = (o.security == "tls" ? "smtps://" : "smtp://") + host + ":" + std::to_string(o.port);
  s.starttls = StartTls::Auto;
  s.user = o.user;
  s.password = o.password.value_or("");
  if (!o.from.empty()) s.from = o.from;
  return s;
}

std::vector<store::Migration> email_config_migrations(int version) {
  const char* sql =
      "CREATE TABLE email_configs (id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL, device_id TEXT NOT NULL,"
      " recipients TEXT NOT NULL, kinds TEXT NOT NULL, enabled BOOLEAN NOT NULL, smtp TEXT, smtp_password TEXT,"
      " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (user_id, device_id));";
  const char* mysql =
      "CREATE TABLE email_configs (id VARCHAR(64) NOT NULL UNIQUE, user_id VARCHAR(64) NOT NULL, device_id"
      " VARCHAR(255) NOT NULL, recipients LONGTEXT NOT NULL, kinds LONGTEXT NOT NULL, enabled BOOLEAN NOT NULL,"
      " smtp LONGTEXT, smtp_password LONGTEXT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY"
      " KEY (user_id, device_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;";
  return {{version, "email_configs", sql, sql, mysql}};
}

namespace {

std::string json_list(const std::vector<std::string>& v) {
  js::array a;
  for (const auto& x : v) a.push_back(js::value(x));
  return js::serialize(a);
}

std::vector<std::string> list_of(const std::string& text) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  auto v = js::parse(text, ec);
  if (ec || !v.is_array()) return out;
  for (const auto& x : v.as_array())
    if (x.is_string()) out.emplace_back(x.as_string());
  return out;
}

constexpr const char* kSelect =
    "SELECT id, user_id, device_id, recipients, kinds, enabled, smtp, smtp_password, created_at, updated_at FROM email_configs";

}  // namespace

asio::awaitable<Result<std::optional<EmailConfig>>> EmailConfigs::one(std::string where, store::Params params) {
  auto rows = co_await db_.query(std::string(kSelect) + " WHERE " + where, std::move(params));
  if (!rows.ok()) co_return rows.error();
  if (rows->empty()) co_return std::optional<EmailConfig>{};
  const auto& r = rows->front();
  EmailConfig c;
  c.id = r.text(0);
  c.user_id = r.text(1);
  c.device_id = r.text(2);
  c.recipients = list_of(r.text(3));
  c.kinds = list_of(r.text(4));
  c.enabled = r.boolean(5);
  if (auto smtp = r.opt_text(6)) {
    boost::system::error_code ec;
    auto v = js::parse(*smtp, ec);
    if (!ec && v.is_object()) {
      const auto& o = v.as_object();
      SmtpOverride s;
      if (auto* x = o.if_contains("host"); x && x->is_string()) s.host = std::string(x->as_string());
      if (auto* x = o.if_contains("port"); x && x->is_int64()) s.port = x->as_int64();
      if (auto* x = o.if_contains("security"); x && x->is_string()) s.security = std::string(x->as_string());
      if (auto* x = o.if_contains("user"); x && x->is_string()) s.user = std::string(x->as_string());
      if (auto* x = o.if_contains("from"); x && x->is_string()) s.from = std::string(x->as_string());
      if (auto sealed = r.opt_text(7)) {
        s.password = crypto_->open(*sealed);
        if (!s.password)
          log::get("notify")->warn(log::fields({{"msg", "an email config's SMTP password does not open with this server key"},
                                                {"config_id", c.id}}));
      }
      c.smtp = std::move(s);
    }
  }
  c.created_at = r.integer(8);
  c.updated_at = r.integer(9);
  co_return std::optional<EmailConfig>(std::move(c));
}

asio::awaitable<Result<std::optional<EmailConfig>>> EmailConfigs::get(std::string user_id, std::string device_id) {
  store::Params p{user_id, device_id};
  std::string where = "user_id = $1 AND device_id = $2";
  co_return co_await one(std::move(where), std::move(p));
}

asio::awaitable<Result<std::optional<EmailConfig>>> EmailConfigs::by_id(std::string id) {
  store::Params p{id};
  std::string where = "id = $1";
  co_return co_await one(std::move(where), std::move(p));
}

asio::awaitable<Result<std::optional<EmailConfig>>> EmailConfigs::resolve(std::string user_id, std::string device_id) {
  if (!device_id.empty()) {
    auto dev = co_await get(user_id, device_id);
    if (!dev.ok() || *dev) co_return dev;
  }
  std::string none;
  co_return co_await get(std::move(user_id), std::move(none));
}

asio::awaitable<Result<EmailConfig>> EmailConfigs::put(EmailConfig cfg) {
  int64_t now = now_ms();
  auto existing = co_await get(cfg.user_id, cfg.device_id);
  if (!existing.ok()) co_return existing.error();
  cfg.id = *existing ? (*existing)->id : new_id();
  cfg.created_at = *existing ? (*existing)->created_at : now;
  cfg.updated_at = now;
  if (cfg.smtp && !cfg.smtp->password && *existing && (*existing)->smtp) cfg.smtp->password = (*existing)->smtp->password;
  std::optional<std::string> smtp_json, sealed;
  if (cfg.smtp) {
    smtp_json = js::serialize(js::object{{"host", cfg.smtp->host},
                                         {"port", cfg.smtp->port},
                                         {"security", cfg.smtp->security},
                                         {"user", cfg.smtp->user},
                                         {"from", cfg.smtp->from}});
    if (cfg.smtp->password) sealed = crypto_->seal(*cfg.smtp->password);
  }
  store::Params params{cfg.id,         cfg.user_id, cfg.device_id, json_list(cfg.recipients), json_list(cfg.kinds),
                       cfg.enabled,    store::nullable(smtp_json), store::nullable(sealed), cfg.created_at,
                       cfg.updated_at};
  auto done = co_await db_.query(
      "INSERT INTO email_configs (id, user_id, device_id, recipients, kinds, enabled, smtp, smtp_password, created_at,"
      " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
      " ON CONFLICT (user_id, device_id) DO UPDATE SET recipients = excluded.recipients, kinds = excluded.kinds,"
      " enabled = excluded.enabled, smtp = excluded.smtp, smtp_password = excluded.smtp_password,"
      " updated_at = excluded.updated_at RETURNING id, created_at",
      std::move(params));
  if (!done.ok()) co_return done.error();
  if (!done->empty()) {  // a concurrent put of the same (user, device) won the insert: its id stays
    cfg.id = done->front().text(0);
    cfg.created_at = done->front().integer(1);
  }
  co_return cfg;
}

}  // namespace harmar::notify
