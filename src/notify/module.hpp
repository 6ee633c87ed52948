#pragma once
// The notify module: email now (notify::Mailer, the outbox, templates); notifications and the
// inbox come with issue 6. Listed in src/server/modules.cpp before every module that sends mail.
#include "platform/module.hpp"

namespace harmar::notify {

platform::Module module();

}  // namespace harmar::notify
