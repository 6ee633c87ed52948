// LISTEN/NOTIFY for both SQL backends: the listener registry (SQLite delivers through it
// directly) and the PostgreSQL listening thread (see store/sql.hpp and detail/notify.hpp).
#include "store/detail/notify.hpp"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/as_tuple.hpp>

#include <algorithm>
#include <set>

#include "core/log.hpp"

namespace harmar::store::detail {
namespace {

std::shared_ptr<spdlog::logger> logger() { return log::get("store"); }

bool valid_channel(std::string_view c) {
  if (c.empty() || c.size() > 63) return false;
  return std::all_of(c.begin(), c.end(), [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'; });
}

}  // namespace

Status check_notify(std::string_view channel, std::string_view payload) {
  if (!valid_channel(channel))
    return Error::validation("a notification channel is 1 to 63 characters of a-z, 0-9 and _", {{"channel", "is invalid"}});
  if (payload.size() > kMaxNotifyPayload)
    return Error::validation("a notification payload is at most " + std::to_string(kMaxNotifyPayload) + " bytes",
                             {{"payload", "is too long"}});
  if (payload.find('\0') != std::string_view::npos)
    return Error::validation("a notification payload cannot hold a NUL byte", {{"payload", "is invalid"}});
  return {};
}

void ListenEntry::deliver(std::string payload) {
  asio::post(ex, [self = shared_from_this(), payload = std::move(payload)] {
    if (self->alive.load() && self->on_notify) self->on_notify(payload);
  });
}

void ListenEntry::gap() {
  if (!on_gap) return;
  asio::post(ex, [self = shared_from_this()] {
    if (self->alive.load()) self->on_gap();
  });
}

void ListenRegistry::add(const std::shared_ptr<ListenEntry>& e) {
  std::lock_guard lock(mu_);
  by_channel_[e->channel].push_back(e);
}

void ListenRegistry::remove(const std::shared_ptr<ListenEntry>& e) {
  std::lock_guard lock(mu_);
  auto it = by_channel_.find(e->channel);
  if (it == by_channel_.end()) return;
  std::erase(it->second, e);
  if (it->second.empty()) by_channel_.erase(it);
}

void ListenRegistry::deliver(std::string_view channel, std::string_view payload) {
  std::vector<std::shared_ptr<ListenEntry>> targets;
  {
    std::lock_guard lock(mu_);
    auto it = by_channel_.find(channel);
    if (it == by_channel_.end()) return;
    targets = it->second;
  }
  for (auto& t : targets) t->deliver(std::string(payload));
}

void ListenRegistry::gap_all() {
  std::vector<std::shared_ptr<ListenEntry>> targets;
  {
    std::lock_guard lock(mu_);
    for (auto& [ch, v] : by_channel_) targets.insert(targets.end(), v.begin(), v.end());
  }
  for (auto& t : targets) t->gap();
}

std::vector<std::string> ListenRegistry::channels() {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (auto& [ch, v] : by_channel_) out.push_back(ch);
  return out;
}

void ListenRegistry::confirm(std::string_view channel, bool on) {
  std::lock_guard lock(mu_);
  auto it = by_channel_.find(channel);
  if (it == by_channel_.end()) return;
  for (auto& e : it->second) e->confirmed.store(on);
}

RegistryListener::~RegistryListener() {
  entry_->alive.store(false);
  reg_->remove(entry_);
  if (on_remove_) on_remove_();
}

asio::awaitable<Status> RegistryListener::ready() {
  // Confirmation comes from the listening thread; this wait happens once per listener, at startup.
  auto deadline = std::chrono::steady_clock::now() + ready_timeout_;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!entry_->confirmed.load()) {
    if (std::chrono::steady_clock::now() >= deadline)
      co_return Error::unavailable("the database is not listening on " + entry_->channel + " yet");
    timer.expires_after(std::chrono::milliseconds(2));
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return Status{};
}

PgListenThread::PgListenThread(std::string conninfo, std::string described, std::shared_ptr<ListenRegistry> reg)
    : conninfo_(std::move(conninfo)), described_(std::move(described)), reg_(std::move(reg)) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

PgListenThread::~PgListenThread() {
  stop_.store(true);
  wake();
  if (thread_.joinable()) thread_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void PgListenThread::wake() {
  uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof one);
}

void PgListenThread::sync() {
  {
    std::lock_guard lock(mu_);
    if (!started_ && !stop_.load()) {
      started_ = true;
      thread_ = std::thread([this] { run(); });
    }
  }
  wake();
}

bool PgListenThread::sleep_or_wake(int ms) {
  pollfd p{wake_fd_, POLLIN, 0};
  ::poll(&p, 1, ms);
  uint64_t drained = 0;
  (void)!::read(wake_fd_, &drained, sizeof drained);
  return !stop_.load();
}

namespace {

std::string quote_ident(const std::string& channel) { return "\"" + channel + "\""; }  // validated: [a-z0-9_]

bool exec_ok(PGconn* pg, const std::string& sql) {
  PGresult* r = PQexec(pg, sql.c_str());
  bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!ok) logger()->warn("postgres listener: {} failed: {}", sql, PQerrorMessage(pg));
  PQclear(r);
  return ok;
}

bool ping(PGconn* pg) {
  PGresult* r = PQexec(pg, "SELECT 1");
  bool ok = r && PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  return ok;
}

}  // namespace

void PgListenThread::run() {
  int backoff_ms = 100;
  bool connected_before = false;
  while (!stop_.load()) {
    const char* keys[] = {"dbname", "fallback_application_name", "client_encoding", "connect_timeout",
                          "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", nullptr};
    const char* values[] = {conninfo_.c_str(), "harmar-listen", "UTF8", "2", "1", "10", "5", "3", nullptr};
    PGconn* pg = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
      logger()->warn("postgres listener: cannot connect to {}: {}; retrying in {} ms", described_,
                     pg ? PQerrorMessage(pg) : "out of memory", backoff_ms);
      PQfinish(pg);
      if (!sleep_or_wake(backoff_ms)) break;
      backoff_ms = std::min(backoff_ms * 2, 5000);
      continue;
    }
    if (connected_before) {
      logger()->info("postgres listener: reconnected to {}", described_);
      reg_->gap_all();  // whatever was notified while we were away is lost
    }
    connected_before = true;
    backoff_ms = 100;
    std::set<std::string> listening;
    auto drain = [&] {
      while (PGnotify* n = PQnotifies(pg)) {
        reg_->deliver(n->relname, n->extra ? n->extra : "");
        PQfreemem(n);
      }
    };
    bool healthy = true;
    while (healthy && !stop_.load()) {
      auto want = reg_->channels();
      std::set<std::string> wanted(want.begin(), want.end());
      for (const auto& ch : wanted) {
        if (listening.count(ch)) {
          reg_->confirm(ch, true);  // entries added since the LISTEN
          continue;
        }
        if (!exec_ok(pg, "LISTEN " + quote_ident(ch))) {
          healthy = false;
          break;
        }
        listening.insert(ch);
        reg_->confirm(ch, true);
      }
      for (auto it = listening.begin(); healthy && it != listening.end();) {
        if (wanted.count(*it)) {
          ++it;
          continue;
        }
        healthy = exec_ok(pg, "UNLISTEN " + quote_ident(*it));
        it = listening.erase(it);
      }
      if (!healthy) break;
      drain();
      pollfd fds[2] = {{PQsocket(pg), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      int ready = ::poll(fds, 2, 30000);
      if (ready < 0 && errno != EINTR) break;
      if (fds[1].revents) {
        uint64_t drained = 0;
        (void)!::read(wake_fd_, &drained, sizeof drained);
      }
      if (fds[0].revents) {
        if (!PQconsumeInput(pg)) break;
        drain();
      }
      if (ready == 0 && !ping(pg)) break;  // idle for a while: prove the link still works
      if (PQstatus(pg) != CONNECTION_OK) break;
    }
    for (const auto& ch : listening) reg_->confirm(ch, false);
    PQfinish(pg);
    if (!stop_.load()) {
      logger()->warn("postgres listener: connection to {} lost; reconnecting", described_);
      if (!sleep_or_wake(backoff_ms)) break;
    }
  }
}

}  // namespace harmar::store::detail
