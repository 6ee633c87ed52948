#pragma once
// Long-poll waiters of this node and the signals that wake them. A waiter registers (by user and
// by device) before it looks for work, then sleeps on a timer of its own event loop until woken,
// its deadline, or shutdown — never polling. Signals come from LISTEN/NOTIFY on the database
// (payload "u:<user>" — new work for a user's devices; "d:<device>" — something for that device,
// e.g. a cancel), so a task created on any node wakes the waiters of every node.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace harmar::tasks {

namespace asio = boost::asio;

class Wakeups;

class Waiter {
 public:
  Waiter(Wakeups& w, std::string user_id, std::string device_id, asio::any_io_executor ex);
  ~Waiter();
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  std::chrono::steady_clock::time_point started() const { return started_; }
  // Sleeps until woken (since the last call) or `deadline`; true if woken.
  asio::awaitable<bool> wait_until(std::chrono::steady_clock::time_point deadline);

  struct State {
    explicit State(asio::any_io_executor ex) : timer(std::move(ex)) {}
    asio::steady_timer timer;
    std::atomic<bool> woken{false};
  };

 private:
  friend class Wakeups;
  Wakeups& w_;
  std::string user_id_, device_id_;
  std::shared_ptr<State> st_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

class Wakeups {
 public:
  // "u:<user>", "d:<device>", or "g:<device>" (the device said goodbye or was deleted: waits it
  // left behind must not claim any more); anything else wakes everyone (harmless).
  void signal(std::string_view payload);
  void wake_user(const std::string& user_id);
  void wake_device(const std::string& device_id);
  void wake_all();
  void depart(const std::string& device_id);
  // Whether the device said goodbye after `since` (a waiter that old belongs to a gone agent).
  bool departed_since(const std::string& device_id, std::chrono::steady_clock::time_point since) const;
  // From now on every wait returns at once.
  void stop();
  bool stopping() const { return stopping_.load(); }
  // Long-polls parked in their wait right now (harmar_tasks_waiting_polls).
  std::size_t waiting() const;

 private:
  friend class Waiter;
  void add(Waiter* w);
  void remove(Waiter* w);
  static void wake(const std::shared_ptr<Waiter::State>& st);

  std::atomic<std::size_t> parked_{0};  // polls suspended in Waiter::wait_until
  mutable std::mutex mu_;
  std::unordered_multimap<std::string, Waiter*> by_user_, by_device_;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> departed_;
  std::atomic<bool> stopping_{false};
};

}  // namespace harmar::tasks
