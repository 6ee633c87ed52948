// harmar: one binary, several programs. `harmar --help` lists them.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "auth/cli.hpp"
#include "agent/agent.hpp"
#include "core/config.hpp"
#include "core/version.hpp"
#include "data/data.hpp"
#include "server/app.hpp"
#include "store/blobs_s3.hpp"

namespace {

using harmar::config::Config;

// Flags every config-reading subcommand takes; each maps to a configuration key.
struct ConfigFlags {
  std::string file;
  std::vector<std::pair<std::string, std::string>> overrides;
  std::vector<std::string> sets;

  void attach(CLI::App* cmd) {
    cmd->add_option("-c,--config", file, "YAML configuration file (see docs/configuration.md)");
    auto key = [this, cmd](const char* flag, const char* k, const char* help) {
      cmd->add_option_function<std::string>(flag, [this, k](const std::string& v) { overrides.emplace_back(k, v); }, help);
    };
    key("--listen", "listen", "HOST:PORT to listen on (default 127.0.0.1:8080)");
    key("--workers", "workers", "event-loop threads (default: one per core)");
    key("--data-dir", "data_dir", "directory for embedded state (default ./data)");
    key("--db", "db", "database URL: sqlite://PATH, postgres://... or mysql://... (MariaDB 10.6 or later)");
    key("--redis", "redis", "redis://HOST:PORT for multi-node pub/sub and kv");
    key("--blobs", "blobs", "blob storage URL: file:///PATH or s3://KEY:SECRET@HOST/BUCKET (default DATA_DIR/blobs)");
    key("--tls-cert", "tls.cert", "PEM certificate chain: serve HTTPS (h2 + http/1.1)");
    key("--tls-key", "tls.key", "PEM private key for --tls-cert");
    key("--log-level", "log.level", "trace|debug|info|warn|error|off");
    key("--log-format", "log.format", "json|text");
    cmd->add_option("--set", sets, "any configuration key: --set limits.body_bytes=4MiB (repeatable)");
  }

  std::optional<Config> load() {
    for (const auto& s : sets) {
      auto eq = s.find('=');
      if (eq == std::string::npos) {
        std::cerr << "harmar: --set expects KEY=VALUE, got '" << s << "'\n";
        return std::nullopt;
      }
      overrides.emplace_back(s.substr(0, eq), s.substr(eq + 1));
    }
    auto c = Config::load(harmar::server::full_schema(), file, overrides);
    if (!c.ok()) {
      std::cerr << "harmar: invalid configuration: " << c.error().detail << "\n";
      return std::nullopt;
    }
    return std::move(c).value();
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"HarmarCloud: accounts, devices, tasks, realtime, notifications, gateway and RPC in one binary"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("harmar ") + harmar::build::kVersion);

  ConfigFlags serve_flags;
  std::string port_file;
  auto* serve = app.add_subcommand("serve", "run the HarmarCloud server (REST, WebSocket, web console)");
  serve_flags.attach(serve);
  serve->add_option("--port-file", port_file, "write the bound port here once listening (with --listen HOST:0)");

  ConfigFlags migrate_flags;
  auto* migrate = app.add_subcommand("migrate", "apply pending database migrations and exit");
  migrate_flags.attach(migrate);

  auto* config = app.add_subcommand("config", "inspect configuration");
  config->require_subcommand(1);
  std::string check_file;
  auto* check = config->add_subcommand("check", "validate a configuration file, naming every bad key");
  check->add_option("file", check_file, "the YAML file")->required();
  auto* schema = config->add_subcommand("schema", "print every configuration key as a Markdown table");
  ConfigFlags show_flags;
  auto* show = config->add_subcommand("show", "print the effective configuration and where each value came from");
  show_flags.attach(show);

  auto* version = app.add_subcommand("version", "print the version and build information");

  harmar::agent::Options agent_opts;
  std::vector<std::string> agent_labels;
  auto* agent = app.add_subcommand("agent", "run the device daemon: heartbeats, long-polls tasks, runs them");
  agent->add_option("--server", agent_opts.server, "HarmarCloud URL, e.g. http://127.0.0.1:8080")->required();
  agent->add_option("--token", agent_opts.token, "a user access token, to register this device on first start");
  agent->add_option("--api-key", agent_opts.api_key, "a device api key (hdk_...), instead of registering");
  agent->add_option("--state", agent_opts.state_file, "state file holding the device key (default ./harmar-agent.json)");
  agent->add_option("--name", agent_opts.name, "device name (default: the hostname)");
  agent->add_option("--label", agent_labels, "a device label KEY=VALUE (repeatable)");
  agent->add_option("--concurrency", agent_opts.concurrency, "tasks run at once (default 4)");
  agent->add_option("--wait", agent_opts.wait_s, "long-poll seconds, 0..60 (default 30)");
  agent->add_option("--heartbeat", agent_opts.heartbeat_s, "heartbeat seconds (default: what the server says)");
  agent->add_option("--grace", agent_opts.grace_s, "on SIGTERM, seconds running tasks may finish (default 30)");
  agent->add_option("--max-output", agent_opts.max_output, "bytes of a shell task's stdout/stderr kept (default 1 MiB)");
  agent->add_option("--type", agent_opts.types, "only run this task type (repeatable; default: echo, shell, http)");
  agent->add_option("--log-level", agent_opts.log_level, "trace|debug|info|warn|error|off");

  auto* auth = app.add_subcommand("auth", "manage authentication");
  auth->require_subcommand(1);
  ConfigFlags rotate_flags;
  auto* rotate_keys = auth->add_subcommand("rotate-keys", "make a new access-token signing key (old ones verify until their tokens expire)");
  rotate_flags.attach(rotate_keys);

  auto* admin = app.add_subcommand("admin", "administer accounts");
  admin->require_subcommand(1);
  ConfigFlags create_user_flags;
  std::string new_email, new_password, new_name;
  std::vector<std::string> new_roles;
  auto* create_user = admin->add_subcommand("create-user", "create an account (e.g. the first admin) in the database of the configuration");
  create_user_flags.attach(create_user);
  create_user->add_option("--email", new_email, "the account's email address")->required();
  create_user->add_option("--password", new_password, "its password (8..256 characters, not a common one)")->required();
  create_user->add_option("--name", new_name, "a display name");
  create_user->add_option("--role", new_roles, "a role to give it (repeatable; default: user)");

  auto* collections = app.add_subcommand("collections", "manage data collections declaratively");
  collections->require_subcommand(1);
  ConfigFlags apply_flags;
  std::string collections_file;
  bool apply_dry_run = false, apply_prune = false;
  auto* apply = collections->add_subcommand("apply", "make the database's collections match FILE.yaml, as one reversible migration; prints the plan");
  apply_flags.attach(apply);
  apply->add_option("file", collections_file, "YAML file: a list of collection definitions under `collections:`")->required();
  apply->add_flag("--dry-run", apply_dry_run, "print the plan and change nothing");
  apply->add_flag("--prune", apply_prune, "also drop collections the file does not define");
  ConfigFlags rollback_flags;
  bool rollback_dry_run = false;
  auto* rollback = collections->add_subcommand("rollback", "undo the last applied collections migration");
  rollback_flags.attach(rollback);
  rollback->add_flag("--dry-run", rollback_dry_run, "print what would be undone and change nothing");

  CLI11_PARSE(app, argc, argv);

  if (*serve) {
    auto cfg = serve_flags.load();
    if (!cfg) return 2;
    return harmar::server::serve(*cfg, {port_file});
  }
  if (*migrate) {
    auto cfg = migrate_flags.load();
    if (!cfg) return 2;
    return harmar::server::migrate(*cfg);
  }
  if (*rotate_keys) {
    auto cfg = rotate_flags.load();
    if (!cfg) return 2;
    if (int rc = harmar::server::migrate(*cfg); rc != 0) return rc;
    return harmar::auth::cli_rotate_keys(*cfg);
  }
  if (*create_user) {
    auto cfg = create_user_flags.load();
    if (!cfg) return 2;
    if (int rc = harmar::server::migrate(*cfg); rc != 0) return rc;
    return harmar::auth::cli_create_user(*cfg, new_email, new_password, new_name, new_roles);
  }
  if (*apply) {
    auto cfg = apply_flags.load();
    if (!cfg) return 2;
    if (int rc = harmar::server::migrate(*cfg, {"data"}); rc != 0) return rc;
    return harmar::data::cli_apply(*cfg, collections_file, apply_dry_run, apply_prune);
  }
  if (*rollback) {
    auto cfg = rollback_flags.load();
    if (!cfg) return 2;
    if (int rc = harmar::server::migrate(*cfg, {"data"}); rc != 0) return rc;
    return harmar::data::cli_rollback(*cfg, rollback_dry_run);
  }
  if (*check) {
    auto st = Config::check_file(harmar::server::full_schema(), check_file);
    if (!st.ok()) {
      std::cerr << "invalid: " << st.error().detail << "\n";
      return 1;
    }
    std::cout << check_file << ": ok\n";
    return 0;
  }
  if (*schema) {
    std::cout << "# Configuration reference\n\nGenerated by `harmar config schema`. Values come from the YAML file "
                 "given with `--config`, then `HARMAR_*` environment variables, then flags (`--set KEY=VALUE`).\n\n"
              << harmar::server::full_schema().markdown();
    return 0;
  }
  if (*show) {
    auto cfg = show_flags.load();
    if (!cfg) return 2;
    for (const auto& k : cfg->schema().keys()) {
      bool secret = k.name.find("key") != std::string::npos || k.name.find("password") != std::string::npos ||
                    k.name.find("secret") != std::string::npos;
      std::string v;
      if (k.type == harmar::config::Type::StringList) {
        for (const auto& i : cfg->get_list(k.name)) v += (v.empty() ? "" : ",") + i;
      } else if (k.type == harmar::config::Type::StringMap) {
        for (const auto& [a, b] : cfg->get_map(k.name)) v += (v.empty() ? "" : ",") + a + "=" + b;
      } else {
        v = harmar::store::redact_blob_url(cfg->get_string(k.name));  // a URL's password never shows
      }
      if (secret && !v.empty()) v = "(set)";
      std::cout << k.name << " = " << v << "    # " << cfg->source(k.name) << "\n";
    }
    return 0;
  }
  if (*agent) {
    for (const auto& l : agent_labels) {
      auto eq = l.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::cerr << "harmar agent: --label expects KEY=VALUE, got '" << l << "'\n";
        return 2;
      }
      agent_opts.labels[l.substr(0, eq)] = l.substr(eq + 1);
    }
    return harmar::agent::run(agent_opts);
  }
  if (*version) {
    std::cout << "harmar " << harmar::build::kVersion << "\ncommit " << harmar::build::kCommit << "\nbuild "
              << harmar::build::kBuildType << "\ncompiler " << harmar::build::kCompiler << "\n";
    return 0;
  }
  return 0;
}
