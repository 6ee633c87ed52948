#pragma once
// Helpers for the pub/sub, kv, blobs and Redis client tests: worker-like event loops on their own
// threads, polling with a deadline, and a plain blocking Redis connection for administration
// (CLIENT KILL, PUBSUB NUMSUB, ACL) that stays out of the code under test.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "store/redis.hpp"
#include "support/test_support.hpp"

namespace harmar::testing {

// co_spawn needs a default-constructible result (it builds a T() when the coroutine throws), which
// Result<T> is not; std::optional<T> carries any T through.
template <class T>
asio::awaitable<std::optional<T>> optional_of(asio::awaitable<T> aw) {
  co_return co_await std::move(aw);
}

// testing::run() for any T, Result<T> included.
template <class T>
T run_any(asio::awaitable<T> aw) {
  return std::move(*run(optional_of(std::move(aw))));
}

// An io_context run by its own thread, like one worker of `harmar serve`.
class Loop {
 public:
  Loop() : work_(asio::make_work_guard(ioc_)), thread_([this] { ioc_.run(); }) {}
  ~Loop() {
    ioc_.stop();
    thread_.join();
  }
  asio::any_io_executor executor() { return ioc_.get_executor(); }
  std::thread::id thread_id() const { return thread_.get_id(); }

  // Runs `aw` on this loop and waits (bounded) for its result on the calling thread.
  template <class T>
  T run(asio::awaitable<T> aw, std::chrono::seconds limit = std::chrono::seconds(30)) {
    auto fut = asio::co_spawn(ioc_, optional_of(std::move(aw)), asio::use_future);
    if (fut.wait_for(limit) != std::future_status::ready) throw std::runtime_error("coroutine did not finish in time");
    return std::move(*fut.get());
  }

 private:
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

// Polls `pred` until it holds or `limit` passes; the sleep is the polling period, not a wait for
// something to have happened.
inline bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A name no other test (or concurrent test process) uses.
inline std::string unique_name(const std::string& base) {
  static std::mt19937_64 rng{std::random_device{}()};
  return base + "-" + std::to_string(rng() % 1000000000);
}

// The test Redis URL with a client name, so this test's connections can be found and killed.
inline std::string named_redis_url(const std::string& name, const std::string& extra = {}) {
  std::string url = redis_url();
  url += url.find('?') == std::string::npos ? "?" : "&";
  url += "name=" + name;
  if (!extra.empty()) url += "&" + extra;
  return url;
}

// Collects what handlers see, from any thread.
template <class T>
class Collected {
 public:
  void add(T v) {
    std::lock_guard lock(mu_);
    items_.push_back(std::move(v));
  }
  std::vector<T> items() const {
    std::lock_guard lock(mu_);
    return items_;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return items_.size();
  }

 private:
  mutable std::mutex mu_;
  std::vector<T> items_;
};

// A scratch directory removed when the object goes away. (testing::temp_dir() reads its own
// destroyed string at exit, which AddressSanitizer reports; this avoids depending on it.)
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "harmar-events.XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A blocking hiredis connection to the test Redis, for administration only.
class RedisAdmin {
 public:
  RedisAdmin() {
    auto url = store::redis::parse_url(redis_url());
    if (!url.ok()) throw std::runtime_error("bad HARMAR_TEST_REDIS_URL");
    timeval tv{5, 0};
    c_ = redisConnectWithTimeout(url->host.c_str(), url->port, tv);
    if (!c_ || c_->err) throw std::runtime_error("cannot connect to the test redis");
    redisSetTimeout(c_, tv);
  }
  ~RedisAdmin() { redisFree(c_); }

  // The reply as text: strings and statuses as they are, integers in decimal, arrays joined by
  // '\n', nil as "(nil)", errors prefixed with "ERR:".
  std::string command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(c_, static_cast<int>(args.size()), argv.data(), lens.data()));
    if (!r) throw std::runtime_error("admin redis connection failed");
    std::string out = text(r);
    freeReplyObject(r);
    return out;
  }

  // Ids of the clients whose name is exactly `name`.
  std::vector<std::string> client_ids(const std::string& name, const std::string& cmd = {}) {
    std::vector<std::string> ids;
    std::string list = command({"CLIENT", "LIST"});
    std::size_t pos = 0;
    while (pos < list.size()) {
      std::size_t end = list.find('\n', pos);
      std::string line = list.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      pos = end == std::string::npos ? list.size() : end + 1;
      if (line.find(" name=" + name + " ") == std::string::npos) continue;
      if (!cmd.empty() && line.find(" cmd=" + cmd + " ") == std::string::npos) continue;
      std::size_t id = line.find("id=");
      ids.push_back(line.substr(id + 3, line.find(' ', id) - id - 3));
    }
    return ids;
  }

  // Kills the connections named `name`; returns how many.
  std::size_t kill(const std::string& name) {
    auto ids = client_ids(name);
    for (const auto& id : ids) command({"CLIENT", "KILL", "ID", id});
    return ids.size();
  }

 private:
  static std::string text(const redisReply* r) {
    switch (r->type) {
      case REDIS_REPLY_STRING:
      case REDIS_REPLY_STATUS: return std::string(r->str, r->len);
      case REDIS_REPLY_ERROR: return "ERR:" + std::string(r->str, r->len);
      case REDIS_REPLY_INTEGER: return std::to_string(r->integer);
      case REDIS_REPLY_ARRAY: {
        std::string out;
        for (std::size_t i = 0; i < r->elements; ++i) out += (i ? "\n" : "") + text(r->element[i]);
        return out;
      }
      default: return "(nil)";
    }
  }

  redisContext* c_ = nullptr;
};

}  // namespace harmar::testing
