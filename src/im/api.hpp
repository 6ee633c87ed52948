#pragma once
#include <memory>

#include "im/service.hpp"
#include "net/router.hpp"

namespace harmar::im {

// The routes of shared/API.md "Instant messaging" and what they need besides (docs/openapi.yaml,
// tag "im"): conversations and members, messages (send, page, edit, recall), read positions,
// typing, attachments, /v1/sync, /v1/presence and the device key directory /v1/im/keys.
void install_routes(net::Router& router, platform::Services& services, std::shared_ptr<Service> svc,
                    std::shared_ptr<const Options> opts);

}  // namespace harmar::im
