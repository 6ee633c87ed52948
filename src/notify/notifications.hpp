#pragma once
// The notifications module (docs/notifications.md): the inbox, announcements and outgoing
// webhooks, filled from domain events. Listed in src/server/modules.cpp after the modules whose
// events it takes (devices, tasks) and whose services it finds (notify's Mailer, auth's Accounts,
// realtime's Publisher).
#include <functional>
#include <memory>

#include "platform/module.hpp"

namespace harmar::notify {

class Inbox;
class Announcements;
class Webhooks;

platform::Module notifications_module();

// Installs /v1/messages... and /v1/webhooks... (inbox_api.cpp).
void install_notification_routes(net::Router& router, platform::Services& services, std::shared_ptr<Inbox> inbox,
                                 std::shared_ptr<Announcements> announcements, std::function<void()> kick_announcements,
                                 std::shared_ptr<Webhooks> hooks);

}  // namespace harmar::notify
