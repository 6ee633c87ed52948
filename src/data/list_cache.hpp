#pragma once
// Pages of record lists as the API sends them (the JSON body), kept in process so that hot
// identical lists do not reach the database.
//
// A page is stored under its collection's write generation, read before its query ran; every
// committed write to the collection advances the generation before the writer is answered, so a
// page older than any write is never served again (read-your-writes on this node). With --redis
// the writes of other nodes advance it too, through PubSub "data:lists" (at most once: what a
// lost message leaves stale lives at most `ttl`).
// The key is the whole query (SQL and parameters, the caller's rule included, and the fields
// asked for), so callers who see different records never share a page. Lists that expand
// relations read other collections and are not kept. Memory is bounded by `max_bytes`.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "store/pubsub.hpp"
#include "store/sql.hpp"

namespace harmar::data {

namespace asio = boost::asio;

class ListCache {
 public:
  static constexpr const char* kChannel = "data:lists";
  struct Options {
    std::size_t max_bytes = 16 << 20;
    std::size_t max_page_bytes = 1 << 20;  // larger pages are not kept
    int64_t ttl_ms = 5'000;
  };

  explicit ListCache(Options opts) : opts_(opts) {}
  ~ListCache();

  // With another node's writes to hear about (--redis): listens on `pubsub`, and tells it of
  // this node's writes.
  void share(store::PubSub& pubsub, asio::any_io_executor background);

  // The key of a page: the collection, its generation now, and the query.
  std::string key(std::string_view collection, std::string_view sql, const store::Params& params,
                  std::string_view fields);
  std::optional<std::string> get(const std::string& key);
  void put(const std::string& key, std::string body);
  // After a committed write to `collection` (before its writer is answered).
  void written(const std::string& collection);

  struct Stats {
    uint64_t hits = 0, misses = 0;
  };
  Stats stats() const;

 private:
  void advance(const std::string& collection);
  asio::awaitable<void> tell_others(std::string collection);

  Options opts_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, uint64_t> generations_;
  struct Item {
    std::string key, body;
    int64_t expires_ms;
  };
  std::list<Item> lru_;
  std::unordered_map<std::string_view, std::list<Item>::iterator> index_;  // views into lru_ keys
  std::size_t bytes_ = 0;
  Stats stats_;
  // Sharing with other nodes.
  store::PubSub* pubsub_ = nullptr;
  asio::any_io_executor background_;
  std::unique_ptr<store::Subscription> sub_;
  std::unordered_map<std::string, bool> telling_;  // a message about the collection is about to go
};

}  // namespace harmar::data
