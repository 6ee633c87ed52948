#pragma once
// The email module (in src/notify, with a migration namespace of its own): the durable outbox
// queue and its delivery workers, per-device email configs, the test mail and inbound mail
// (shared/API.md "Email"; docs/mail.md). Listed in src/server/modules.cpp after auth, devices and
// tasks: it derives its keys from auth::ServerKeys and turns replies into task notes.
#include "platform/module.hpp"

namespace harmar::notify {

platform::Module email_module();
// Its migrations (namespace "email"; after the notify module's, whose outbox table they extend).
std::vector<store::Migration> email_migrations();

}  // namespace harmar::notify
