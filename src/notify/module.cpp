#include "notify/module.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>

#include <stdexcept>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "notify/outbox.hpp"
#include "notify/outbox_mailer.hpp"

namespace harmar::notify {
namespace {

using config::Type;

void configure(config::Schema& s) {
  s.add({"public_url", Type::String, "http://127.0.0.1:8080",
         "base URL at which users reach this server; links in mails and OAuth callback URLs start here"});
  s.add({"smtp.url", Type::String, "",
         "smtp://HOST[:PORT] (STARTTLS, see smtp.starttls) or smtps://HOST[:PORT]; empty writes mails to the log and the outbox table"});
  s.add({"smtp.user", Type::String, "", "SMTP AUTH user name; empty sends without AUTH"});
  s.add({"smtp.password", Type::String, "", "SMTP AUTH password (prefer the HARMAR_SMTP_PASSWORD environment variable)"});
  s.add({"smtp.from", Type::String, "HarmarCloud <no-reply@localhost>", "sender of every mail: Name <addr> or addr"});
  s.add({"smtp.starttls", Type::String, "auto",
         "with smtp://: required refuses a server without STARTTLS; opportunistic uses it when offered; auto is required except to a loopback host",
         0, 0, {"auto", "required", "opportunistic"}});
  s.add({"smtp.timeout", Type::Duration, "30s", "bound on one SMTP transaction (connecting takes at most 10s of it)", 1000, 600'000});
  s.add({"smtp.attempts", Type::Int, "6",
         "delivery attempts per mail when failures are transient (connection, 4xx reply); then the mail is dead", 1, 30});
  s.add({"notify.product_name", Type::String, "HarmarCloud", "product name used in mail templates"});
  s.add({"notify.templates_dir", Type::String, "",
         "directory of mail templates NAME.subject, NAME.txt, NAME.html (mustache) overriding or adding to the built-in ones"});
  s.add({"notify.outbox_retention", Type::Duration, "30d", "outbox rows older than this are deleted", 3'600'000,
         int64_t{3650} * 24 * 3600 * 1000});
}

struct Sweeper {
  explicit Sweeper(asio::io_context& ioc) : timer(ioc) {}
  asio::steady_timer timer;
  bool stopped = false;
};

asio::awaitable<void> sweep_forever(store::Database& db, int64_t retention_ms, std::shared_ptr<Sweeper> s) {
  while (!s->stopped) {
    auto gone = co_await outbox::purge(db, now_ms() - retention_ms);
    if (!gone.ok())
      log::get("notify")->warn(log::fields({{"msg", "outbox sweep failed"}, {"error", gone.error().detail}}));
    s->timer.expires_after(std::chrono::hours(1));
    boost::system::error_code ec;
    co_await s->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace

platform::Module module() {
  platform::Module m;
  m.name = "notify";
  m.configure = configure;
  m.migrations = outbox::migrations();
  m.provide = [](platform::Services& services) {
    auto templates = Templates::load(services.config.get_string("notify.templates_dir"));
    if (!templates.ok()) {
      log::get("notify")->critical(log::fields({{"msg", "mail templates"}, {"error", templates.error().detail}}));
      throw std::runtime_error("notify.templates_dir: " + templates.error().detail);
    }
    auto settings = MailerSettings::from_config(services.config);
    if (!settings.smtp)
      log::get("notify")->warn(log::fields(
          {{"msg", "smtp.url is not set: mails (with their links) are written to the log, not sent; never run production like this"}}));
    services.provide<Mailer>(std::make_shared<OutboxMailer>(std::move(settings), services.db, std::move(templates).value()));
  };
  auto sweeper = std::make_shared<std::shared_ptr<Sweeper>>();
  m.start = [sweeper](platform::Services& s) {
    *sweeper = std::make_shared<Sweeper>(s.background);
    asio::co_spawn(s.background, sweep_forever(s.db, s.config.get_duration_ms("notify.outbox_retention"), *sweeper),
                   asio::detached);
  };
  m.stop = [sweeper] {
    if (*sweeper) {
      (*sweeper)->stopped = true;
      (*sweeper)->timer.cancel();
    }
  };
  return m;
}

}  // namespace harmar::notify
