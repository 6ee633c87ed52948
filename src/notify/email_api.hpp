#pragma once
// The routes of shared/API.md "Email" (and the admin views of the outbox and inbound mail).
#include <memory>

#include "net/router.hpp"
#include "notify/email_config.hpp"
#include "notify/incoming.hpp"
#include "notify/outbox_mailer.hpp"
#include "platform/module.hpp"

namespace harmar::notify {

struct EmailApi {
  std::shared_ptr<OutboxMailer> mailer;
  std::shared_ptr<EmailConfigs> configs;
  std::shared_ptr<Incoming> incoming;
  std::string inbound_secret;   // "" disables POST /v1/email/incoming
  int64_t inbound_max_bytes = 10 << 20;
  bool user_smtp = false;       // may configs name an SMTP server of their own
};

void install_email_routes(net::Router& router, platform::Services& services, std::shared_ptr<EmailApi> api);

}  // namespace harmar::notify
