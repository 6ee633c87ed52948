#include "tasks/wakeups.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <vector>

namespace harmar::tasks {

Waiter::Waiter(Wakeups& w, std::string user_id, std::string device_id, asio::any_io_executor ex)
    : w_(w), user_id_(std::move(user_id)), device_id_(std::move(device_id)), st_(std::make_shared<State>(std::move(ex))) {
  w_.add(this);
}

Waiter::~Waiter() { w_.remove(this); }

asio::awaitable<bool> Waiter::wait_until(std::chrono::steady_clock::time_point deadline) {
  // A wake posts timer.cancel() to this waiter's executor, which runs only after this coroutine
  // has suspended in async_wait: a signal between the check and the wait is not lost.
  if (st_->woken.exchange(false) || w_.stopping()) co_return true;
  st_->timer.expires_at(deadline);
  // Counted only while parked here: a poll still making its first claim is not waiting yet.
  w_.parked_.fetch_add(1);
  co_await st_->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  w_.parked_.fetch_sub(1);
  co_return st_->woken.exchange(false) || w_.stopping();
}

void Wakeups::wake(const std::shared_ptr<Waiter::State>& st) {
  st->woken.store(true);
  asio::post(st->timer.get_executor(), [st] { st->timer.cancel(); });
}

void Wakeups::add(Waiter* w) {
  std::lock_guard lock(mu_);
  by_user_.emplace(w->user_id_, w);
  if (!w->device_id_.empty()) by_device_.emplace(w->device_id_, w);
}

void Wakeups::remove(Waiter* w) {
  std::lock_guard lock(mu_);
  for (auto [it, end] = by_user_.equal_range(w->user_id_); it != end; ++it)
    if (it->second == w) {
      by_user_.erase(it);
      break;
    }
  if (!w->device_id_.empty())
    for (auto [it, end] = by_device_.equal_range(w->device_id_); it != end; ++it)
      if (it->second == w) {
        by_device_.erase(it);
        break;
      }
}

void Wakeups::wake_user(const std::string& user_id) {
  std::lock_guard lock(mu_);
  for (auto [it, end] = by_user_.equal_range(user_id); it != end; ++it) wake(it->second->st_);
}

void Wakeups::wake_device(const std::string& device_id) {
  std::lock_guard lock(mu_);
  for (auto [it, end] = by_device_.equal_range(device_id); it != end; ++it) wake(it->second->st_);
}

void Wakeups::wake_all() {
  std::lock_guard lock(mu_);
  for (auto& [u, w] : by_user_) wake(w->st_);
}

void Wakeups::signal(std::string_view payload) {
  if (payload.starts_with("u:")) {
    wake_user(std::string(payload.substr(2)));
  } else if (payload.starts_with("g:")) {
    depart(std::string(payload.substr(2)));
  } else if (payload.starts_with("d:")) {
    wake_device(std::string(payload.substr(2)));
  } else {
    wake_all();
  }
}

void Wakeups::depart(const std::string& device_id) {
  {
    std::lock_guard lock(mu_);
    auto now = std::chrono::steady_clock::now();
    if (departed_.size() > 10'000)
      std::erase_if(departed_, [&](const auto& kv) { return now - kv.second > std::chrono::minutes(2); });
    departed_[device_id] = now;
  }
  wake_device(device_id);
}

bool Wakeups::departed_since(const std::string& device_id, std::chrono::steady_clock::time_point since) const {
  std::lock_guard lock(mu_);
  auto it = departed_.find(device_id);
  return it != departed_.end() && it->second >= since;
}

void Wakeups::stop() {
  stopping_.store(true);
  wake_all();
}

std::size_t Wakeups::waiting() const { return parked_.load(); }

}  // namespace harmar::tasks
