#pragma once
#include <memory>

#include "auth/auth_service.hpp"
#include "net/router.hpp"
#include "platform/module.hpp"

namespace harmar::auth {

// Installs the auth endpoints (see docs/openapi.yaml, tag "auth").
void install_routes(net::Router& router, platform::Services& services, std::shared_ptr<AuthService> svc);

}  // namespace harmar::auth
