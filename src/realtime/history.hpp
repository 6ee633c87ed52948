#pragma once
// The per-channel event history (repo): seq allocation, appends and reads.
#include <boost/asio/awaitable.hpp>

#include <string>
#include <vector>

#include "core/result.hpp"
#include "store/sql.hpp"

namespace harmar::realtime {

struct StoredEvent {
  std::string channel;
  int64_t seq = 0;
  std::string type;
  std::string data;  // JSON object text
  int64_t at_ms = 0;
};

struct NewEvent {
  std::string channel, type, data;
  int64_t at_ms = 0;
};

std::vector<store::Migration> history_migrations();

class History {
 public:
  explicit History(store::Database& db) : db_(db) {}
  // Appends every event in one transaction; returns their seqs in order.
  boost::asio::awaitable<Result<std::vector<int64_t>>> append(const std::vector<NewEvent>& events);
  // Events with seq in (after, upto] (upto 0: no bound), oldest first, at most `limit`.
  boost::asio::awaitable<Result<std::vector<StoredEvent>>> read(const std::string& channel, int64_t after, int64_t upto,
                                                                int limit);
  // The last seq given out on the channel (0 if none) and the oldest seq still kept.
  struct Bounds {
    int64_t head = 0;
    int64_t oldest = 0;  // 0 when nothing is kept
  };
  boost::asio::awaitable<Result<Bounds>> bounds(const std::string& channel);
  // Drops events older than `before_ms`, keeping at least the last `keep` per channel.
  boost::asio::awaitable<Result<int64_t>> trim(int64_t before_ms, int64_t keep);

 private:
  store::Database& db_;
};

}  // namespace harmar::realtime
