#pragma once
// A read-through cache of records by id for hot reads, used when Redis is configured (--redis):
// a small in-process LRU per node in front of Redis, in front of the database.
//
//   read:   local LRU → Redis GET → database; a database read fills Redis with SET-if-absent
//           (so it never overwrites a newer value a writer put there) and fills the LRU only
//           with what Redis then holds.
//   write:  the writer SETs the new record (or a tombstone for a delete) in Redis after its
//           commit, and tells every node on PubSub "data:cache" to drop its LRU entry.
// Keys carry the collection's definition revision, so a schema change starts a fresh cache.
// Staleness is bounded: Redis entries live `ttl`, LRU entries at most `local_ttl`.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "core/result.hpp"
#include "data/registry.hpp"
#include "store/kv.hpp"
#include "store/pubsub.hpp"
#include "store/sql.hpp"

namespace harmar::data {

namespace asio = boost::asio;

class RecordCache {
 public:
  static constexpr const char* kChannel = "data:cache";
  struct Options {
    int64_t ttl_ms = 60'000;
    int64_t local_ttl_ms = 5'000;
    std::size_t local_entries = 10'000;
  };

  RecordCache(store::Kv& kv, store::PubSub& pubsub, Options opts);
  ~RecordCache();

  // Drops LRU entries other nodes invalidate (call once, with the node's background executor).
  void start(asio::any_io_executor ex);

  // The record with `id` (API form), or nullopt when there is none. No rule is applied here.
  asio::awaitable<Result<std::optional<js::object>>> get(const Entry& e, const std::string& id, store::Database& db);
  // After a committed write: the record as it is now (nullopt: deleted).
  asio::awaitable<void> written(const Entry& e, const std::string& id, std::optional<js::object> record);

  struct Stats {
    uint64_t local_hits = 0, redis_hits = 0, misses = 0;
  };
  Stats stats() const;

 private:
  std::string key(const Entry& e, const std::string& id) const;
  std::optional<std::string> local_get(const std::string& key);
  void local_put(const std::string& key, std::string value);
  void local_drop(const std::string& key);

  store::Kv& kv_;
  store::PubSub& pubsub_;
  Options opts_;
  mutable std::mutex mu_;
  struct Item {
    std::string key, value;
    int64_t expires_ms;
  };
  std::list<Item> lru_;
  std::unordered_map<std::string, std::list<Item>::iterator> index_;
  std::unique_ptr<store::Subscription> sub_;
  mutable std::mutex stats_mu_;
  Stats stats_;
};

}  // namespace harmar::data
