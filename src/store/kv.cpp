// Kv: in-process (sharded hash maps with expiry) and Redis, with the same semantics.
#include "store/kv.hpp"

#include <array>
#include <charconv>
#include <mutex>
#include <unordered_map>

#include "core/clock.hpp"
#include "store/redis.hpp"

namespace harmar::store {

namespace {

Status check_key(const std::string& key) {
  if (key.empty() || key.size() > Kv::kMaxKeyBytes) {
    return Error::validation("kv key must be 1.." + std::to_string(Kv::kMaxKeyBytes) + " bytes");
  }
  return {};
}

Status check_value(const std::string& value) {
  if (value.size() > Kv::kMaxValueBytes) {
    return Error::validation("kv value is larger than " + std::to_string(Kv::kMaxValueBytes) + " bytes");
  }
  return {};
}

Status check_ttl(int64_t ttl_ms) {
  if (ttl_ms < 0 || ttl_ms > Kv::kMaxTtlMs) return Error::validation("kv ttl_ms must be between 0 and ten years");
  return {};
}

Error not_an_integer() { return Error::conflict("kv value is not an integer or would overflow", "not_an_integer"); }

// Redis's own rule for integer strings: optional '-', no leading zeros, no '+', no spaces.
bool parse_integer(std::string_view s, int64_t& out) {
  std::string_view digits = s.starts_with('-') ? s.substr(1) : s;
  if (digits.empty() || digits.size() > 19 || (digits[0] == '0' && (digits.size() > 1 || s.size() > 1))) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

Error unexpected(const char* command) { return Error::internal(std::string("unexpected redis reply to ") + command); }

// --- in-process -------------------------------------------------------------------------------

class LocalKv final : public Kv {
 public:
  asio::awaitable<Result<std::optional<std::string>>> get(std::string key) override {
    if (auto st = check_key(key); !st.ok()) co_return st.error();
    Shard& s = shard(key);
    std::lock_guard lock(s.mu);
    const Entry* e = find_live(s, key, mono_ms());
    co_return e ? std::optional<std::string>(e->value) : std::nullopt;
  }

  asio::awaitable<Status> set(std::string key, std::string value, int64_t ttl_ms) override {
    if (auto st = check_write(key, value, ttl_ms); !st.ok()) co_return st;
    Shard& s = shard(key);
    std::lock_guard lock(s.mu);
    int64_t now = mono_ms();
    s.map.insert_or_assign(std::move(key), Entry{std::move(value), expiry(now, ttl_ms)});
    sweep(s, now);
    co_return Status{};
  }

  asio::awaitable<Result<bool>> set_if_absent(std::string key, std::string value, int64_t ttl_ms) override {
    if (auto st = check_write(key, value, ttl_ms); !st.ok()) co_return st.error();
    Shard& s = shard(key);
    std::lock_guard lock(s.mu);
    int64_t now = mono_ms();
    if (find_live(s, key, now)) co_return false;
    s.map.insert_or_assign(std::move(key), Entry{std::move(value), expiry(now, ttl_ms)});
    sweep(s, now);
    co_return true;
  }

  asio::awaitable<Result<bool>> del(std::string key) override {
    if (auto st = check_key(key); !st.ok()) co_return st.error();
    Shard& s = shard(key);
    std::lock_guard lock(s.mu);
    bool existed = find_live(s, key, mono_ms()) != nullptr;
    s.map.erase(key);
    co_return existed;
  }

  asio::awaitable<Result<int64_t>> incr(std::string key, int64_t by, int64_t ttl_ms) override {
    if (auto st = check_key(key); !st.ok()) co_return st.error();
    if (auto st = check_ttl(ttl_ms); !st.ok()) co_return st.error();
    Shard& s = shard(key);
    std::lock_guard lock(s.mu);
    int64_t now = mono_ms();
    Entry* e = find_live(s, key, now);
    int64_t value = by;
    if (e) {
      int64_t old = 0;
      if (!parse_integer(e->value, old) || __builtin_add_overflow(old, by, &value)) co_return not_an_integer();
      e->value = std::to_string(value);  // an increment keeps the expiry, as in Redis
    } else {
      s.map.insert_or_assign(std::move(key), Entry{std::to_string(value), expiry(now, ttl_ms)});
    }
    sweep(s, now);
    co_return value;
  }

  asio::awaitable<Result<std::optional<int64_t>>> ttl(std::string key) override {
    if (auto st = check_key(key); !st.ok()) co_return st.error();
    Shard& s = shard(key);
    std::lock_guard lock(s.mu);
    int64_t now = mono_ms();
    const Entry* e = find_live(s, key, now);
    if (!e || e->expires_ms == 0) co_return std::nullopt;
    co_return e->expires_ms - now;
  }

  asio::awaitable<Status> ping() override { co_return Status{}; }

 private:
  struct Entry {
    std::string value;
    int64_t expires_ms = 0;  // monotonic; 0 = never
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Entry> map;
    std::size_t sweep_bucket = 0;
  };
  static constexpr std::size_t kShards = 16;
  // Buckets the sweep examines per write: expired keys nobody reads again still go away, and no
  // write pays for more than a few.
  static constexpr std::size_t kSweepBuckets = 4;

  static Status check_write(const std::string& key, const std::string& value, int64_t ttl_ms) {
    if (auto st = check_key(key); !st.ok()) return st;
    if (auto st = check_value(value); !st.ok()) return st;
    return check_ttl(ttl_ms);
  }
  static int64_t expiry(int64_t now, int64_t ttl_ms) { return ttl_ms > 0 ? now + ttl_ms : 0; }
  static bool expired(const Entry& e, int64_t now) { return e.expires_ms != 0 && e.expires_ms <= now; }

  Shard& shard(const std::string& key) { return shards_[std::hash<std::string>{}(key) % kShards]; }

  // The live entry for `key`, erasing it if it has expired.
  static Entry* find_live(Shard& s, const std::string& key, int64_t now) {
    auto it = s.map.find(key);
    if (it == s.map.end()) return nullptr;
    if (expired(it->second, now)) {
      s.map.erase(it);
      return nullptr;
    }
    return &it->second;
  }

  static void sweep(Shard& s, int64_t now) {
    std::size_t buckets = s.map.bucket_count();
    if (buckets == 0) return;
    std::vector<std::string> dead;
    for (std::size_t i = 0; i < kSweepBuckets; ++i) {
      std::size_t b = s.sweep_bucket++ % buckets;
      for (auto it = s.map.begin(b); it != s.map.end(b); ++it) {
        if (expired(it->second, now)) dead.push_back(it->first);
      }
    }
    for (const auto& k : dead) s.map.erase(k);
  }

  std::array<Shard, kShards> shards_;
};

// --- Redis ------------------------------------------------------------------------------------

class RedisKv final : public Kv {
 public:
  explicit RedisKv(const redis::Url& url)
      : io_(std::make_unique<redis::IoThread>("redis-kv")),
        conn_(redis::Connection::start(io_->context(), redis::ConnectionOptions{.url = url, .role = "kv"})) {}

  ~RedisKv() override { conn_->stop(); }

  asio::awaitable<Result<std::optional<std::string>>> get(std::string key) override {
    if (auto st = check_key(key); !st.ok()) co_return st.error();
    std::vector<std::string> cmd{"GET", std::move(key)};  // (g++ 12 miscompiles braced lists inside co_await)
    HARMAR_CO_TRY(auto r, co_await conn_->command(std::move(cmd)));
    if (r.is_nil()) co_return std::nullopt;
    if (r.type != redis::Reply::Type::String) co_return unexpected("GET");
    co_return std::optional<std::string>(std::move(r.str));
  }

  asio::awaitable<Status> set(std::string key, std::string value, int64_t ttl_ms) override {
    if (auto st = check_write(key, value, ttl_ms); !st.ok()) co_return st;
    HARMAR_CO_TRY(auto r, co_await conn_->command(set_command(std::move(key), std::move(value), ttl_ms, false)));
    if (!r.is_ok()) co_return unexpected("SET");
    co_return Status{};
  }

  asio::awaitable<Result<bool>> set_if_absent(std::string key, std::string value, int64_t ttl_ms) override {
    if (auto st = check_write(key, value, ttl_ms); !st.ok()) co_return st.error();
    HARMAR_CO_TRY(auto r, co_await conn_->command(set_command(std::move(key), std::move(value), ttl_ms, true)));
    if (r.is_nil()) co_return false;
    if (!r.is_ok()) co_return unexpected("SET NX");
    co_return true;
  }

  asio::awaitable<Result<bool>> del(std::string key) override {
    if (auto st = check_key(key); !st.ok()) co_return st.error();
    std::vector<std::string> cmd{"DEL", std::move(key)};
    HARMAR_CO_TRY(auto r, co_await conn_->command(std::move(cmd)));
    if (r.type != redis::Reply::Type::Integer) co_return unexpected("DEL");
    co_return r.integer > 0;
  }

  asio::awaitable<Result<int64_t>> incr(std::string key, int64_t by, int64_t ttl_ms) override {
    if (auto st = check_key(key); !st.ok()) co_return st.error();
    if (auto st = check_ttl(ttl_ms); !st.ok()) co_return st.error();
    if (ttl_ms == 0) {
      std::vector<std::string> cmd{"INCRBY", std::move(key), std::to_string(by)};
      auto r = co_await conn_->command(std::move(cmd));
      co_return integer_result(std::move(r));
    }
    // Creating the key with its expiry and incrementing it is one transaction: a key that
    // expires between the two can never be re-created without an expiry. (A Lua script would
    // lose precision above 2^53, since Lua numbers are doubles.)
    std::vector<std::vector<std::string>> tx{{"MULTI"},
                                             {"SET", key, "0", "NX", "PX", std::to_string(ttl_ms)},
                                             {"INCRBY", key, std::to_string(by)},
                                             {"EXEC"}};
    HARMAR_CO_TRY(auto r, co_await conn_->commands(std::move(tx)));
    if (r.elements.size() != 4) co_return unexpected("MULTI");
    for (std::size_t i = 0; i < 3; ++i) {
      if (r.elements[i].type == redis::Reply::Type::Error) co_return Error{500, "redis_error", r.elements[i].str};
    }
    redis::Reply& exec = r.elements[3];
    if (exec.type == redis::Reply::Type::Error) co_return Error{500, "redis_error", exec.str};
    if (exec.type != redis::Reply::Type::Array || exec.elements.size() != 2) co_return unexpected("EXEC");
    redis::Reply& incr = exec.elements[1];
    if (incr.type == redis::Reply::Type::Error) co_return integer_result(Error{500, "redis_error", incr.str});
    co_return integer_result(std::move(incr));
  }

  asio::awaitable<Result<std::optional<int64_t>>> ttl(std::string key) override {
    if (auto st = check_key(key); !st.ok()) co_return st.error();
    std::vector<std::string> cmd{"PTTL", std::move(key)};
    HARMAR_CO_TRY(auto r, co_await conn_->command(std::move(cmd)));
    if (r.type != redis::Reply::Type::Integer) co_return unexpected("PTTL");
    if (r.integer < 0) co_return std::nullopt;  // -2 absent, -1 no expiry
    co_return std::optional<int64_t>(r.integer);
  }

  asio::awaitable<Status> ping() override {
    std::vector<std::string> cmd{"PING"};
    HARMAR_CO_TRY(auto r, co_await conn_->command(std::move(cmd)));
    (void)r;
    co_return Status{};
  }

 private:
  static Status check_write(const std::string& key, const std::string& value, int64_t ttl_ms) {
    if (auto st = check_key(key); !st.ok()) return st;
    if (auto st = check_value(value); !st.ok()) return st;
    return check_ttl(ttl_ms);
  }

  static std::vector<std::string> set_command(std::string key, std::string value, int64_t ttl_ms, bool nx) {
    std::vector<std::string> cmd{"SET", std::move(key), std::move(value)};
    if (nx) cmd.emplace_back("NX");
    if (ttl_ms > 0) {
      cmd.emplace_back("PX");
      cmd.push_back(std::to_string(ttl_ms));
    }
    return cmd;
  }

  static Result<int64_t> integer_result(Result<redis::Reply> r) {
    if (!r.ok()) {
      const Error& e = r.error();
      bool bad_value = e.code == "redis_error" &&
                       (e.detail.find("not an integer") != std::string::npos || e.detail.find("overflow") != std::string::npos);
      if (bad_value) return not_an_integer();
      return std::move(r).error();
    }
    if (r->type != redis::Reply::Type::Integer) return unexpected("INCRBY");
    return r->integer;
  }

  std::unique_ptr<redis::IoThread> io_;  // first: its thread is joined after the connection lets go
  std::shared_ptr<redis::Connection> conn_;
};

}  // namespace

Result<std::unique_ptr<Kv>> Kv::open(const std::string& redis_url) {
  if (redis_url.empty()) return std::unique_ptr<Kv>(std::make_unique<LocalKv>());
  HARMAR_TRY(auto url, redis::parse_url(redis_url));
  return std::unique_ptr<Kv>(std::make_unique<RedisKv>(url));
}

}  // namespace harmar::store
