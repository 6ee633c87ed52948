#pragma once
// Instant messaging (shared/API.md "Instant messaging"): direct and group conversations, messages
// with a per-conversation seq, per-user sync positions (GET /v1/sync), read positions, typing,
// presence, attachments and end-to-end encrypted conversations. Pushes live events through the
// realtime module (conversation:{id} and each member's user channel). See docs/realtime.md.
#include "platform/module.hpp"

namespace harmar::im {

platform::Module module();

}  // namespace harmar::im
