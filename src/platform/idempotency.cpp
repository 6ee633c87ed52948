#include "platform/idempotency.hpp"

#include <openssl/evp.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>

#include "core/clock.hpp"
#include "core/log.hpp"

namespace harmar::platform {
namespace {

constexpr int64_t kRetentionMs = 24 * 3600 * 1000;
constexpr std::size_t kMaxKey = 255;

std::string sha256_hex(std::string_view a, std::string_view b, std::string_view c) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  for (auto part : {a, b, c}) {
    EVP_DigestUpdate(ctx, part.data(), part.size());
    EVP_DigestUpdate(ctx, "\n", 1);
  }
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

bool valid_key(std::string_view k) {
  if (k.empty() || k.size() > kMaxKey) return false;
  for (char c : k)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

const char* static_type(std::string_view t) {
  if (t == "application/json") return "application/json";
  if (t == "application/problem+json") return "application/problem+json";
  return nullptr;
}

asio::awaitable<net::Response> replay_or_refuse(store::Database& db, const std::string& scope, const std::string& key,
                                                const std::string& hash) {
  auto rows = co_await db.query(
      "SELECT request_hash, status, content_type, body FROM idempotency_keys WHERE scope = $1 AND \"key\" = $2",
      {scope, key});
  if (!rows.ok()) co_return rows.error();
  if (rows->empty()) co_return Error::conflict("the request with this Idempotency-Key just expired; retry", "idempotency_in_progress");
  auto r = rows->front();
  if (r.text(0) != hash)
    co_return Error::conflict("this Idempotency-Key was already used with a different request", "idempotency_key_reused");
  if (r.integer(1) == 0) {
    Error e = Error::conflict("a request with this Idempotency-Key is still being processed", "idempotency_in_progress");
    e.retry_after_s = 1;
    co_return e;
  }
  net::Response resp(static_cast<int>(r.integer(1)), r.text(3), nullptr);
  std::string type = r.text(2);
  if (const char* st = static_type(type)) {
    resp.content_type = st;
  } else if (!type.empty()) {
    resp.header("Content-Type", type);
  }
  resp.header("Idempotent-Replayed", "true");
  co_return resp;
}

}  // namespace

net::Middleware idempotent(Services& services) {
  store::Database* db = &services.db;
  return [db](net::Request& req, const net::Handler& next) -> asio::awaitable<net::Response> {
    std::string key(req.header("Idempotency-Key"));
    if (key.empty()) co_return co_await next(req);
    if (!valid_key(key))
      co_return Error::validation("Idempotency-Key must be 1 to 255 visible ASCII characters",
                                  {{"Idempotency-Key", "is invalid"}});
    std::string scope = req.principal ? "p:" + req.principal->id : "ip:" + std::string(req.remote_ip());
    scope += " " + std::string(req.route());
    std::string hash = sha256_hex(req.method_text(), req.target(), req.body);
    auto claimed = co_await db->exec(
        "INSERT INTO idempotency_keys (scope, \"key\", request_hash, status, content_type, body, created_at) "
        "VALUES ($1, $2, $3, 0, '', '', $4) ON CONFLICT (scope, \"key\") DO NOTHING",
        {scope, key, hash, now_ms()});
    if (!claimed.ok()) co_return claimed.error();
    if (*claimed == 0) co_return co_await replay_or_refuse(*db, scope, key, hash);

    net::Response resp = co_await next(req);
    if (resp.status >= 500) {
      auto dropped = co_await db->exec("DELETE FROM idempotency_keys WHERE scope = $1 AND \"key\" = $2", {scope, key});
      (void)dropped;
      co_return resp;
    }
    std::string type = resp.content_type ? resp.content_type : std::string(resp.find_header("Content-Type"));
    auto kept = co_await db->exec(
        "UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5 WHERE scope = $1 AND \"key\" = $2",
        {scope, key, int64_t(resp.status), type, resp.body});
    if (!kept.ok())
      log::get("platform")->warn(log::fields({{"msg", "idempotent response not kept"}, {"error", kept.error().detail}}));
    co_return resp;
  };
}

namespace {

struct Sweeper {
  explicit Sweeper(asio::io_context& ioc) : timer(ioc) {}
  asio::steady_timer timer;
  bool stopped = false;
};

asio::awaitable<void> sweep_forever(store::Database& db, std::shared_ptr<Sweeper> s) {
  while (!s->stopped) {
    auto gone = co_await db.exec("DELETE FROM idempotency_keys WHERE created_at < $1", {now_ms() - kRetentionMs});
    if (!gone.ok())
      log::get("platform")->warn(log::fields({{"msg", "idempotency sweep failed"}, {"error", gone.error().detail}}));
    s->timer.expires_after(std::chrono::minutes(10));
    boost::system::error_code ec;
    co_await s->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace

Module platform_module() {
  Module m;
  m.name = "platform";
  m.migrations = {
      {1, "idempotency keys",
       "CREATE TABLE idempotency_keys (scope TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,"
       " status INTEGER NOT NULL, content_type TEXT NOT NULL, body BLOB NOT NULL, created_at BIGINT NOT NULL,"
       " PRIMARY KEY (scope, key));"
       "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);",
       "CREATE TABLE idempotency_keys (scope TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,"
       " status INTEGER NOT NULL, content_type TEXT NOT NULL, body TEXT NOT NULL, created_at BIGINT NOT NULL,"
       " PRIMARY KEY (scope, key));"
       "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);",
       "CREATE TABLE idempotency_keys (scope VARCHAR(255) NOT NULL, \"key\" VARCHAR(255) NOT NULL, request_hash"
       " VARCHAR(128) NOT NULL, status INTEGER NOT NULL, content_type LONGTEXT NOT NULL, body LONGBLOB NOT"
       " NULL, created_at BIGINT NOT NULL, PRIMARY KEY (scope, \"key\"), INDEX idempotency_keys_created"
       " (created_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"},
  };
  auto sweeper = std::make_shared<std::shared_ptr<Sweeper>>();
  m.start = [sweeper](Services& s) {
    *sweeper = std::make_shared<Sweeper>(s.background);
    asio::co_spawn(s.background, sweep_forever(s.db, *sweeper), asio::detached);
  };
  m.stop = [sweeper] {
    if (*sweeper) {
      (*sweeper)->stopped = true;
      (*sweeper)->timer.cancel();
    }
  };
  return m;
}

}  // namespace harmar::platform
