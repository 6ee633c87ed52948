#pragma once
// LISTEN/NOTIFY plumbing shared by the SQL backends (see "LISTEN/NOTIFY" in store/sql.hpp).
// Internal to src/store.
#include <boost/asio/any_io_executor.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/result.hpp"
#include "store/sql.hpp"

namespace harmar::store::detail {

// 422 unless `channel` is a PostgreSQL-safe identifier and `payload` fits.
Status check_notify(std::string_view channel, std::string_view payload);

// One listen() call: where and what to deliver. Shared with the posted deliveries, so a
// listener destroyed meanwhile is simply skipped.
struct ListenEntry : std::enable_shared_from_this<ListenEntry> {
  std::string channel;
  asio::any_io_executor ex;
  NotifyHandler on_notify;
  std::function<void()> on_gap;
  std::atomic<bool> alive{true};
  std::atomic<bool> confirmed{false};  // LISTEN is in force for this entry's channel

  void deliver(std::string payload);
  void gap();
};

// The listeners of one Database, by channel.
class ListenRegistry {
 public:
  void add(const std::shared_ptr<ListenEntry>& e);
  void remove(const std::shared_ptr<ListenEntry>& e);
  void deliver(std::string_view channel, std::string_view payload);
  void gap_all();
  // Every channel that has at least one listener.
  std::vector<std::string> channels();
  // Marks every entry of `channel` as listening (or not).
  void confirm(std::string_view channel, bool on);

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<std::shared_ptr<ListenEntry>>, std::less<>> by_channel_;
};

// A Listener handle over a registry entry; `on_remove` runs after the entry left the registry.
class RegistryListener final : public Listener {
 public:
  RegistryListener(std::shared_ptr<ListenRegistry> reg, std::shared_ptr<ListenEntry> e,
                   std::chrono::milliseconds ready_timeout, std::function<void()> on_remove)
      : reg_(std::move(reg)), entry_(std::move(e)), ready_timeout_(ready_timeout), on_remove_(std::move(on_remove)) {}
  ~RegistryListener() override;
  asio::awaitable<Status> ready() override;

 private:
  std::shared_ptr<ListenRegistry> reg_;
  std::shared_ptr<ListenEntry> entry_;
  std::chrono::milliseconds ready_timeout_;
  std::function<void()> on_remove_;
};

// The PostgreSQL side: one dedicated connection on its own thread that LISTENs to every channel
// of the registry, reconnecting with backoff. Started on first use, stopped by the destructor.
class PgListenThread {
 public:
  PgListenThread(std::string conninfo, std::string described, std::shared_ptr<ListenRegistry> reg);
  ~PgListenThread();
  PgListenThread(const PgListenThread&) = delete;
  PgListenThread& operator=(const PgListenThread&) = delete;

  // Starts the thread if needed and makes it (UN)LISTEN to match the registry.
  void sync();

 private:
  void run();
  void wake();
  bool sleep_or_wake(int ms);  // false when stopping

  std::string conninfo_, described_;
  std::shared_ptr<ListenRegistry> reg_;
  std::mutex mu_;
  bool started_ = false;
  std::atomic<bool> stop_{false};
  int wake_fd_ = -1;
  std::thread thread_;
};

}  // namespace harmar::store::detail
