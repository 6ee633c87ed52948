#include "notify/email_module.hpp"

#include <sodium.h>

#include <stdexcept>

#include "auth/service.hpp"
#include "core/log.hpp"
#include "notify/email_api.hpp"
#include "notify/email_config.hpp"
#include "notify/email_delivery.hpp"
#include "notify/incoming.hpp"
#include "notify/outbox.hpp"
#include "notify/outbox_mailer.hpp"

namespace harmar::notify {
namespace {

using config::Type;

void configure(config::Schema& s) {
  s.add({"smtp.retry_base", Type::Duration, "30s",
         "wait before the second delivery attempt of a mail; doubles per attempt (with jitter) up to smtp.retry_max", 10,
         86'400'000});
  s.add({"smtp.retry_max", Type::Duration, "1h", "longest wait between two delivery attempts of a mail", 10, 7 * 86'400'000LL});
  s.add({"smtp.reply_address", Type::String, "",
         "address replies to task and device mails go to, as notify@example.com: mails reply to notify+TOKEN@example.com, "
         "which your MTA must hand to POST /v1/email/incoming; empty: no Reply-To (replies still match by In-Reply-To)"});
  s.add({"email.workers", Type::Int, "2", "delivery workers per node (each sends one mail at a time)", 1, 32});
  s.add({"email.poll_interval", Type::Duration, "1s",
         "how often idle delivery workers look for due mail queued by other nodes or waiting for a retry", 20, 60'000});
  s.add({"email.user_smtp", Type::Bool, "false",
         "users may give their email configs an SMTP server of their own (the server then connects to hosts users name)"});
  s.add({"email.inbound_secret", Type::String, "",
         "shared secret an MTA sends in X-Harmar-Inbound-Secret to POST /v1/email/incoming; empty disables inbound mail "
         "(prefer the HARMAR_EMAIL_INBOUND_SECRET environment variable)"});
  s.add({"email.inbound_max_bytes", Type::Size, "10MiB", "largest inbound message", 1024, 64 << 20});
  s.add({"email.inbound_note_bytes", Type::Size, "4KiB", "longest note a reply adds to a task", 64, 64 << 10});
}

struct State {
  std::shared_ptr<EmailApi> api;
  std::shared_ptr<Delivery> delivery;
};

}  // namespace

std::vector<store::Migration> email_migrations() {
  std::vector<store::Migration> m;
  m.push_back(outbox::queue_migration(1));
  for (auto& x : email_config_migrations(2)) m.push_back(std::move(x));
  for (auto& x : inbound_migrations(3)) m.push_back(std::move(x));
  return m;
}

platform::Module email_module() {
  platform::Module m;
  m.name = "email";
  m.configure = configure;
  m.migrations = email_migrations();
  auto state = std::make_shared<State>();
  m.provide = [state](platform::Services& s) {
    auto mailer = std::dynamic_pointer_cast<OutboxMailer>(s.find<Mailer>());
    if (!mailer) throw std::runtime_error("email: the notify module's mailer is missing (list notify first)");
    auto keys = s.find<auth::ServerKeys>();
    if (!keys) throw std::runtime_error("email: auth::ServerKeys is missing (list auth before email)");
    Key32 seal = keys->derive(EmailCrypto::kSealContext);
    Key32 token = keys->derive(EmailCrypto::kTokenContext);
    auto crypto = std::make_shared<const EmailCrypto>(seal, token);
    sodium_memzero(seal.data(), seal.size());
    sodium_memzero(token.data(), token.size());
    auto configs = std::make_shared<EmailConfigs>(s.db, crypto);

    DeliveryOptions opts;
    opts.workers = static_cast<int>(s.config.get_int("email.workers"));
    opts.poll_ms = s.config.get_duration_ms("email.poll_interval");
    opts.lease_ms = s.config.get_duration_ms("smtp.timeout") + 60'000;
    state->delivery = std::make_shared<Delivery>(s.db, mailer, configs, opts);
    std::weak_ptr<Delivery> weak = state->delivery;
    MailerRouting routing;
    routing.crypto = crypto;
    routing.configs = configs;
    routing.queued = [weak] {
      if (auto d = weak.lock()) d->kick();
    };
    mailer->attach(std::move(routing));

    IncomingOptions in;
    in.limits.max_bytes = static_cast<std::size_t>(s.config.get_size("email.inbound_max_bytes"));
    in.max_note_bytes = static_cast<std::size_t>(s.config.get_size("email.inbound_note_bytes"));
    auto api = std::make_shared<EmailApi>();
    api->mailer = mailer;
    api->configs = configs;
    api->incoming = std::make_shared<Incoming>(s, crypto, in);
    api->inbound_secret = s.config.get_string("email.inbound_secret");
    api->inbound_max_bytes = static_cast<int64_t>(in.limits.max_bytes);
    api->user_smtp = s.config.get_bool("email.user_smtp");
    state->api = std::move(api);
  };
  m.routes = [state](net::Router& r, platform::Services& s) { install_email_routes(r, s, state->api); };
  m.start = [state](platform::Services& s) { state->delivery->start(s.background); };
  m.stop = [state] {
    if (state->delivery) state->delivery->stop();
  };
  return m;
}

}  // namespace harmar::notify
