#pragma once
// The delivery workers: the outbox is the queue (outbox.hpp). Each node runs `email.workers`
// coroutines that claim one due mail at a time (a lease of smtp.timeout + 60 s, fenced by node and
// attempt, FOR UPDATE SKIP LOCKED on PostgreSQL), send it by SMTP on the blocking pool, and settle
// it: sent; failed (refused for good); queued again after an exponential backoff with jitter; or
// dead once smtp.attempts are used up. A mail queued on this node wakes the workers at once;
// other nodes find it within email.poll_interval.
//
// Why not the tasks queue: tasks are leased to devices (agents) and their owner is a user; a mail
// is work for the server itself, with no device to lease it to. The outbox row already is the
// durable record, so claiming it directly keeps one source of truth.
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "notify/email_config.hpp"
#include "notify/outbox_mailer.hpp"
#include "store/sql.hpp"

namespace harmar::notify {

struct DeliveryOptions {
  int workers = 2;
  int64_t poll_ms = 1000;
  int64_t lease_ms = 90'000;
};

class Delivery : public std::enable_shared_from_this<Delivery> {
 public:
  Delivery(store::Database& db, std::shared_ptr<OutboxMailer> mailer, std::shared_ptr<EmailConfigs> configs,
           DeliveryOptions opts);

  void start(asio::io_context& ioc);
  // Wakes the workers (a mail was queued). Any thread.
  void kick();
  void stop();

  // Claims and delivers one due mail; false when none was due. For tests and the workers.
  asio::awaitable<Result<bool>> deliver_one();
  // The delay before attempt `next` (2-based): base * 2^(next-2), capped, with ±20 % jitter.
  int64_t backoff_ms(int64_t next) const;
  const std::string& node() const { return node_; }

 private:
  asio::awaitable<void> work(std::shared_ptr<asio::steady_timer> timer);

  store::Database& db_;
  std::shared_ptr<OutboxMailer> mailer_;
  std::shared_ptr<EmailConfigs> configs_;
  DeliveryOptions opts_;
  std::string node_;
  asio::io_context* ioc_ = nullptr;
  std::vector<std::shared_ptr<asio::steady_timer>> timers_;
  std::atomic<uint64_t> kicks_{0};
  std::atomic<bool> stopped_{false};
};

}  // namespace harmar::notify
