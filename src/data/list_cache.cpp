#include "data/list_cache.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <fmt/format.h>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"

namespace harmar::data {

namespace {

metrics::Counter& hits() {
  static auto& c = metrics::registry().counter("harmar_data_list_cache_hits_total", "Record lists answered from the cache.");
  return c;
}
metrics::Counter& misses() {
  static auto& c =
      metrics::registry().counter("harmar_data_list_cache_misses_total", "Cacheable record lists that went to the database.");
  return c;
}

// Parameters as key text: a type letter, the value, and a separator no value holds unescaped.
void append_param(std::string& out, const store::Param& p) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::nullptr_t>) {
          out += 'n';
        } else if constexpr (std::is_same_v<T, int64_t>) {
          out += 'i';
          out += std::to_string(v);
        } else if constexpr (std::is_same_v<T, double>) {
          out += fmt::format("d{}", v);
        } else if constexpr (std::is_same_v<T, bool>) {
          out += v ? "t" : "f";
        } else {
          const std::string& s = [&]() -> const std::string& {
            if constexpr (std::is_same_v<T, std::string>) return v;
            else return v.data;
          }();
          out += std::is_same_v<T, std::string> ? 's' : 'b';
          out += std::to_string(s.size());
          out += ':';
          out += s;
        }
      },
      p);
  out += '\x1f';
}

}  // namespace

ListCache::~ListCache() = default;

void ListCache::share(store::PubSub& pubsub, asio::any_io_executor background) {
  pubsub_ = &pubsub;
  background_ = background;
  sub_ = pubsub.subscribe(kChannel, std::move(background),
                          [this](std::string_view, std::string_view collection) { advance(std::string(collection)); });
}

std::string ListCache::key(std::string_view collection, std::string_view sql, const store::Params& params,
                           std::string_view fields) {
  uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    if (auto it = generations_.find(std::string(collection)); it != generations_.end()) generation = it->second;
  }
  std::string k;
  k.reserve(collection.size() + sql.size() + fields.size() + 32 + params.size() * 16);
  k += std::to_string(collection.size());
  k += ':';
  k += collection;
  k += '\x1f';
  k += std::to_string(generation);
  k += '\x1f';
  k += std::to_string(fields.size());
  k += ':';
  k += fields;
  k += '\x1f';
  for (const auto& p : params) append_param(k, p);
  k += sql;
  return k;
}

std::optional<std::string> ListCache::get(const std::string& k) {
  std::lock_guard lock(mu_);
  auto it = index_.find(k);
  if (it == index_.end() || it->second->expires_ms < mono_ms()) {
    ++stats_.misses;
    misses().inc();
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  ++stats_.hits;
  hits().inc();
  return it->second->body;
}

void ListCache::put(const std::string& k, std::string body) {
  if (body.size() > opts_.max_page_bytes) return;
  std::lock_guard lock(mu_);
  if (auto it = index_.find(k); it != index_.end()) {
    bytes_ -= it->second->key.size() + it->second->body.size();
    auto node = it->second;
    index_.erase(it);
    lru_.erase(node);
  }
  bytes_ += k.size() + body.size();
  lru_.push_front({k, std::move(body), mono_ms() + opts_.ttl_ms});
  index_[lru_.front().key] = lru_.begin();
  while (bytes_ > opts_.max_bytes && !lru_.empty()) {
    auto& last = lru_.back();
    bytes_ -= last.key.size() + last.body.size();
    index_.erase(last.key);
    lru_.pop_back();
  }
}

void ListCache::advance(const std::string& collection) {
  std::lock_guard lock(mu_);
  ++generations_[collection];
}

void ListCache::written(const std::string& collection) {
  advance(collection);
  if (!pubsub_) return;
  {
    std::lock_guard lock(mu_);
    bool& telling = telling_[collection];
    if (telling) return;  // the message about to go covers this write too
    telling = true;
  }
  asio::co_spawn(background_, tell_others(collection), asio::detached);
}

asio::awaitable<void> ListCache::tell_others(std::string collection) {
  {
    std::lock_guard lock(mu_);
    telling_[collection] = false;  // writes from now on need a message of their own
  }
  auto sent = co_await pubsub_->publish(kChannel, collection);
  if (!sent)
    log::get("data")->warn(log::fields({{"msg", "list cache invalidation not sent; other nodes may list stale pages"},
                                        {"collection", collection}, {"error", sent.error().detail}}));
}

ListCache::Stats ListCache::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace harmar::data
