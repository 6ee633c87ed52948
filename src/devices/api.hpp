#pragma once
#include <memory>

#include "devices/service.hpp"
#include "net/router.hpp"

namespace harmar::devices {

// The routes of shared/API.md "Devices", plus PATCH /v1/devices/{id} (name, labels) and
// GET /v1/daemon/config (a device reads its own config).
void install_routes(net::Router& router, platform::Services& services, std::shared_ptr<Service> svc);

// Wraps `inner` so that bearer tokens starting with "hdk_" are verified as device keys by `dir`
// and everything else goes to `inner` (the auth module's verifier, if any).
net::AuthHook with_device_keys(net::AuthHook inner, std::shared_ptr<Directory> dir);

}  // namespace harmar::devices
