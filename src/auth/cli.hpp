#pragma once
// The auth subcommands of the `harmar` CLI. Each opens the database named by the same
// configuration as `harmar serve` (run `harmar migrate` logic first) and prints what it did.
#include <string>
#include <vector>

#include "core/config.hpp"

namespace harmar::auth {

// `harmar auth rotate-keys`: a new current signing key; the old one keeps verifying until its
// tokens have expired. Running nodes pick the new key up within 30 s.
int cli_rotate_keys(const config::Config& cfg);

// `harmar admin create-user --email … --password … [--name …] [--role admin]…`
int cli_create_user(const config::Config& cfg, const std::string& email, const std::string& password,
                    const std::string& name, const std::vector<std::string>& roles);

}  // namespace harmar::auth
