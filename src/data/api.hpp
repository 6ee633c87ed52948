#pragma once
#include <memory>

#include "data/collections.hpp"
#include "data/records.hpp"
#include "net/router.hpp"
#include "platform/module.hpp"

namespace harmar::data {

// The permission that manages collections and bypasses record rules (the admin role holds it).
inline constexpr const char* kManagePermission = "collections.manage";

struct ApiState {
  std::shared_ptr<Registry> registry;
  std::shared_ptr<Collections> collections;
  std::shared_ptr<Records> records;
  int64_t import_max_bytes = 64 << 20;
};

// Whether `who` bypasses record rules.
bool is_admin(const platform::Services& s, const Principal& who);

// The routes of shared/API.md "Data services (collections)" and their extensions (batch,
// import, export, files).
void install_routes(net::Router& router, platform::Services& services, std::shared_ptr<ApiState> state);

}  // namespace harmar::data
