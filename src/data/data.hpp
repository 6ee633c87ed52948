#pragma once
// The data module (shared/API.md "Data services (collections)"): collections with an instant
// REST API, rules and live changes. Other modules use nothing of it directly; `harmar
// collections ...` uses the CLI entry points below.
#include <string>

#include "core/config.hpp"
#include "platform/module.hpp"

namespace harmar::data {

// Provides nothing to other modules; serves /v1/collections...; publishes record.* events on
// realtime channels "collection:{name}" and registers their access rule.
platform::Module module();

// `harmar collections apply FILE.yaml [--dry-run] [--prune]`: makes the database's collections
// match the file (a list of definitions under `collections:`), as one migration; prints the plan.
int cli_apply(const config::Config& cfg, const std::string& file, bool dry_run, bool prune);
// `harmar collections rollback [--dry-run]`: undoes the last applied migration.
int cli_rollback(const config::Config& cfg, bool dry_run);

}  // namespace harmar::data
