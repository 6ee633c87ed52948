#include "notify/email_delivery.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <sodium.h>

#include "core/blocking.hpp"
#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "notify/outbox.hpp"

namespace harmar::notify {

Delivery::Delivery(store::Database& db, std::shared_ptr<OutboxMailer> mailer, std::shared_ptr<EmailConfigs> configs,
                   DeliveryOptions opts)
    : db_(db), mailer_(std::move(mailer)), configs_(std::move(configs)), opts_(opts), node_("n" + random_hex(8)) {}

int64_t Delivery::backoff_ms(int64_t next) const {
  const auto& s = mailer_->settings();
  int64_t d = s.retry_base_ms;
  for (int64_t i = 2; i < next && d < s.retry_max_ms; ++i) d *= 2;
  d = std::min(d, s.retry_max_ms);
  int64_t jitter = d / 5;
  if (jitter > 0) d += static_cast<int64_t>(randombytes_uniform(static_cast<uint32_t>(std::min<int64_t>(2 * jitter, UINT32_MAX)))) - jitter;
  return std::max<int64_t>(d, 0);
}

asio::awaitable<Result<bool>> Delivery::deliver_one() {
  auto logger = log::get("notify");
  auto claimed = co_await outbox::claim(db_, node_, now_ms(), opts_.lease_ms, 1);
  if (!claimed.ok()) co_return claimed.error();
  if (claimed->empty()) co_return false;
  outbox::Claimed c = std::move(claimed->front());

  std::string status;
  std::optional<std::string> error;
  std::optional<int64_t> sent_at, next_at;
  std::optional<std::string> message;
  if (c.message) message = mailer_->crypto()->open(*c.message);
  std::optional<SmtpSettings> smtp = mailer_->settings().smtp;
  if (c.config_id) {
    smtp.reset();
    auto cfg = co_await configs_->by_id(*c.config_id);
    if (!cfg.ok()) co_return cfg.error();  // the lease runs out and another attempt comes
    if (*cfg && (*cfg)->smtp) smtp = smtp_settings(*(*cfg)->smtp, mailer_->settings().smtp_base());
  }
  if (c.attempts > c.max_attempts) {
    status = "dead";
    error = "the lease of the last attempt ran out (the node stopped mid-transfer?)";
  } else if (!message) {
    status = "failed";
    error = "the queued message does not open with this server key";
  } else if (!smtp) {
    status = "failed";
    error = c.config_id ? "its email config has no SMTP server any more" : "no SMTP server is configured (smtp.url)";
  } else {
    std::string to = c.to;
    SmtpSettings settings = std::move(*smtp);
    auto transfer = [&settings, &to, &message] { return smtp_send_sync(settings, to, *message); };  // named (g++ 12)
    SmtpOutcome outcome = co_await run_blocking(transfer);
    if (outcome.ok) {
      status = "sent";
      sent_at = now_ms();
    } else {
      error = outcome.error.substr(0, 1000);
      if (!outcome.transient) status = "failed";
      else if (c.attempts >= c.max_attempts) status = "dead";
      else {
        status = "queued";
        next_at = now_ms() + backoff_ms(c.attempts + 1);
      }
    }
  }
  auto settled = co_await outbox::settle(db_, c.id, node_, c.attempts, status, error, sent_at, next_at);
  if (!settled.ok()) co_return settled.error();
  if (!*settled) {
    logger->warn(log::fields({{"msg", "outbox lease lost before the attempt was recorded"}, {"outbox_id", c.id}}));
    co_return true;
  }
  if (status == "sent")
    logger->info(log::fields({{"msg", "mail sent"}, {"outbox_id", c.id}, {"kind", c.kind},
                              {"attempts", std::to_string(c.attempts)}}));
  else
    logger->warn(log::fields({{"msg", status == "queued" ? "mail not delivered; retrying later" : "mail not delivered"},
                              {"outbox_id", c.id}, {"kind", c.kind}, {"status", status},
                              {"attempts", std::to_string(c.attempts)}, {"error", error.value_or("")}}));
  co_return true;
}

void Delivery::start(asio::io_context& ioc) {
  ioc_ = &ioc;
  auto self = shared_from_this();
  for (int i = 0; i < opts_.workers; ++i) {
    auto timer = std::make_shared<asio::steady_timer>(ioc);
    timers_.push_back(timer);
    asio::co_spawn(ioc, self->work(timer), asio::detached);
  }
}

void Delivery::kick() {
  ++kicks_;
  if (!ioc_) return;
  auto self = shared_from_this();
  asio::post(*ioc_, [self] {
    for (auto& t : self->timers_) t->cancel();
  });
}

void Delivery::stop() {
  stopped_ = true;
  if (!ioc_) return;
  auto self = shared_from_this();
  asio::post(*ioc_, [self] {
    for (auto& t : self->timers_) t->cancel();
  });
}

asio::awaitable<void> Delivery::work(std::shared_ptr<asio::steady_timer> timer) {
  auto self = shared_from_this();
  auto logger = log::get("notify");
  while (!stopped_) {
    uint64_t seen = kicks_.load();
    auto one = co_await deliver_one();
    if (stopped_) break;
    if (one.ok() && *one) continue;  // there may be more due
    if (!one.ok())
      logger->warn(log::fields({{"msg", "outbox delivery pass failed"}, {"error", one.error().detail}}));
    if (kicks_.load() != seen) continue;  // a mail was queued while we looked
    timer->expires_after(std::chrono::milliseconds(opts_.poll_ms));
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace harmar::notify
