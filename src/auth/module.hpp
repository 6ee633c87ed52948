#pragma once
// The auth module: accounts, sessions, tokens, roles, API keys and the AuthHook every
// authenticated route goes through. Other modules use the interfaces of auth/service.hpp.
#include "core/config.hpp"
#include "platform/module.hpp"

namespace harmar::auth {

platform::Module module();

// The `auth.*` configuration keys (also used by CLI commands that open the auth service).
void add_config_keys(config::Schema& schema);

}  // namespace harmar::auth
