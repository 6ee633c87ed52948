#pragma once
// The composition root of `harmar serve`: reads configuration, opens storage, applies
// migrations, installs every module's routes and runs the HTTP server until a signal.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/result.hpp"

namespace harmar::server {

// The schema of every key `harmar serve` understands (core, server, and each module's).
config::Schema full_schema();

struct RunOptions {
  std::string port_file;  // if set, the bound port is written here once listening (for tests)
};

// Runs the server; returns when it has shut down after SIGINT/SIGTERM. Exit status for main().
int serve(const config::Config& cfg, const RunOptions& run);

// Applies pending migrations and exits; a database from a newer harmar is an error.
// `only`: the modules to migrate (all when empty); `harmar collections` needs only "data", which
// is also the one module with a MariaDB/MySQL schema.
int migrate(const config::Config& cfg, const std::vector<std::string>& only = {});

}  // namespace harmar::server
