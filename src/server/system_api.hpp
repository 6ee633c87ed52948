#pragma once
#include "net/router.hpp"
#include "platform/module.hpp"

namespace harmar::server {

// GET /healthz, /readyz, /metrics, /v1/version, /v1/openapi.json.
void install_system_routes(net::Router& router, platform::Services& services);

}  // namespace harmar::server
