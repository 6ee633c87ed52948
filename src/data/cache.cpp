#include "data/cache.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "data/codec.hpp"
#include "data/records.hpp"

namespace harmar::data {

namespace {

constexpr std::string_view kTombstone = "-";

metrics::Counter& hits(const char* tier) {
  return metrics::registry().counter("harmar_data_cache_hits_total", "Record reads answered by the cache.",
                                     {{"tier", tier}});
}
metrics::Counter& misses() {
  static auto& c = metrics::registry().counter("harmar_data_cache_misses_total", "Record reads that went to the database.");
  return c;
}

}  // namespace

RecordCache::RecordCache(store::Kv& kv, store::PubSub& pubsub, Options opts) : kv_(kv), pubsub_(pubsub), opts_(opts) {}

RecordCache::~RecordCache() = default;

void RecordCache::start(asio::any_io_executor ex) {
  sub_ = pubsub_.subscribe(kChannel, std::move(ex), [this](std::string_view, std::string_view payload) {
    local_drop(std::string(payload));
  });
}

std::string RecordCache::key(const Entry& e, const std::string& id) const {
  return fmt::format("data:rec:{}:{}:{}", e.c.name, e.revision, id);
}

std::optional<std::string> RecordCache::local_get(const std::string& k) {
  std::lock_guard lock(mu_);
  auto it = index_.find(k);
  if (it == index_.end()) return std::nullopt;
  if (it->second->expires_ms < mono_ms()) {
    lru_.erase(it->second);
    index_.erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->value;
}

void RecordCache::local_put(const std::string& k, std::string value) {
  if (opts_.local_entries == 0) return;
  std::lock_guard lock(mu_);
  if (auto it = index_.find(k); it != index_.end()) {
    lru_.erase(it->second);
    index_.erase(it);
  }
  lru_.push_front({k, std::move(value), mono_ms() + opts_.local_ttl_ms});
  index_[k] = lru_.begin();
  while (lru_.size() > opts_.local_entries) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

void RecordCache::local_drop(const std::string& k) {
  std::lock_guard lock(mu_);
  if (auto it = index_.find(k); it != index_.end()) {
    lru_.erase(it->second);
    index_.erase(it);
  }
}

RecordCache::Stats RecordCache::stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

asio::awaitable<Result<std::optional<js::object>>> RecordCache::get(const Entry& e, const std::string& id,
                                                                    store::Database& db) {
  std::string k = key(e, id);
  auto decode = [](const std::string& text) -> std::optional<js::object> {
    if (text == kTombstone) return std::nullopt;
    boost::system::error_code ec;
    js::value v = js::parse(text, ec);
    if (ec || !v.is_object()) return std::nullopt;
    return std::move(v.as_object());
  };
  if (auto local = local_get(k)) {
    hits("local").inc();
    std::lock_guard lock(stats_mu_);
    ++stats_.local_hits;
    co_return decode(*local);
  }
  auto cached = co_await kv_.get(k);
  if (cached && cached->has_value()) {
    hits("redis").inc();
    {
      std::lock_guard lock(stats_mu_);
      ++stats_.redis_hits;
    }
    local_put(k, **cached);
    co_return decode(**cached);
  }
  misses().inc();
  {
    std::lock_guard lock(stats_mu_);
    ++stats_.misses;
  }
  auto rows = co_await db.query(detail::select_sql(e) + " WHERE \"id\" = $1", {id});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<js::object>();
  js::object record = record_from_row(e.c, rows->front());
  if (cached) {  // Redis answered (a miss): fill it, unless a writer got there first
    std::string text = js::serialize(record);
    auto set = co_await kv_.set_if_absent(k, text, opts_.ttl_ms);
    if (set && *set) local_put(k, std::move(text));
  }
  co_return std::optional<js::object>(std::move(record));
}

asio::awaitable<void> RecordCache::written(const Entry& e, const std::string& id, std::optional<js::object> record) {
  std::string k = key(e, id);
  local_drop(k);
  std::string value = record ? js::serialize(*record) : std::string(kTombstone);
  auto set = co_await kv_.set(k, std::move(value), opts_.ttl_ms);
  if (!set) {
    // Redis is down: the entry may outlive this write until its ttl; say so.
    log::get("data")->warn(log::fields({{"msg", "cache not updated after a write"}, {"key", k}, {"error", set.error().detail}}));
    auto del = co_await kv_.del(k);
    (void)del;
  }
  auto sent = co_await pubsub_.publish(kChannel, k);
  (void)sent;
}

}  // namespace harmar::data
