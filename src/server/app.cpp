#include "server/app.hpp"

#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <boost/asio/executor_work_guard.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <thread>
#include <fstream>

#include "core/blocking.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "net/server.hpp"
#include "platform/module.hpp"
#include "platform/run.hpp"
#include "server/modules.hpp"
#include "server/system_api.hpp"

namespace harmar::server {

namespace asio = boost::asio;

config::Schema full_schema() {
  config::Schema s = config::core_schema();
  for (const auto& m : all_modules())
    if (m.configure) m.configure(s);
  return s;
}

namespace {

log::Options log_options(const config::Config& cfg) {
  return {cfg.get_string("log.format"), cfg.get_string("log.level"), cfg.get_map("log.levels")};
}

// Every module's schema migrations, in dependency order.
std::vector<store::ModuleMigrations> all_migrations() {
  std::vector<store::ModuleMigrations> out;
  for (auto& m : all_modules())
    if (!m.migrations.empty()) out.push_back({m.name, std::move(m.migrations)});
  return out;
}

// Every module writes a MariaDB/MySQL schema of its own (Migration::mysql). One that does not
// (a new module, say) makes serve and migrate refuse MariaDB up front, naming it, rather than
// stop halfway through the migrations.
Status check_backend_support(const store::Database& db, const std::vector<store::ModuleMigrations>& modules) {
  if (db.backend() != store::Backend::Mysql) return {};
  std::vector<std::string> missing;
  for (const auto& m : modules) {
    for (const auto& step : m.steps) {
      if (step.mysql.empty() && !(step.sqlite.empty() && step.postgres.empty())) {
        missing.push_back(m.module);
        break;
      }
    }
  }
  if (missing.empty()) return {};
  return Error::bad_request(
      "unsupported_database",
      fmt::format("harmar does not serve on MariaDB/MySQL: the modules {} have no MariaDB schema; use sqlite:// or "
                  "postgres://",
                  fmt::join(missing, ", ")));
}

bool write_port_file(const std::string& path, uint16_t port) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << "\n";
    if (!out) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

struct Storage {
  std::unique_ptr<store::Database> db;
  std::unique_ptr<store::PubSub> pubsub;
  std::unique_ptr<store::Kv> kv;
  std::unique_ptr<store::BlobStore> blobs;
};

Result<Storage> open_storage(const config::Config& cfg) {
  std::error_code ec;
  std::filesystem::create_directories(cfg.get_string("data_dir"), ec);
  if (ec) return Error::unavailable("cannot create data_dir " + cfg.get_string("data_dir") + ": " + ec.message());
  Storage s;
  store::Database::Options dbo;
  dbo.pool_per_worker = static_cast<int>(cfg.get_int("db_pool"));
  HARMAR_TRY(s.db, store::Database::open(platform::database_url(cfg), dbo));
  HARMAR_TRY(s.pubsub, store::PubSub::open(cfg.get_string("redis")));
  HARMAR_TRY(s.kv, store::Kv::open(cfg.get_string("redis")));
  HARMAR_TRY(s.blobs, store::BlobStore::open(cfg.get_string("blobs"), cfg.get_string("data_dir")));
  return s;
}

}  // namespace

int serve(const config::Config& cfg, const RunOptions& run) {
  // Signals are taken by sigwait() below; every thread created from here on inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  log::init(log_options(cfg));
  auto logger = log::get("server");
  if (cfg.get_int("blocking_threads") > 0) set_blocking_threads(static_cast<std::size_t>(cfg.get_int("blocking_threads")));

  // Startup work (migrations) runs on this context; it lives as long as the storage may use it.
  asio::io_context control;
  auto storage = open_storage(cfg);
  if (!storage.ok()) {
    logger->critical(log::fields({{"msg", "cannot open storage"}, {"error", storage.error().detail}}));
    return 1;
  }
  Storage& st = *storage;
  if (auto supported = check_backend_support(*st.db, all_migrations()); !supported.ok()) {
    logger->critical(log::fields({{"msg", "unsupported database"}, {"error", supported.error().detail}}));
    return 1;
  }
  auto migrated = platform::run_sync(control, store::migrate(*st.db, all_migrations()));
  if (!migrated.ok()) {
    logger->critical(log::fields({{"msg", "migrations failed"}, {"error", migrated.error().detail}}));
    return 1;
  }

  // Background work (sweepers, schedulers) gets an event loop of its own.
  asio::io_context background(1);
  auto background_work = asio::make_work_guard(background);
  std::thread background_thread([&background] { background.run(); });
  auto stop_background = [&] {
    background_work.reset();
    background.stop();
    if (background_thread.joinable()) background_thread.join();
  };

  platform::EventBus events(*st.pubsub);
  platform::Services services(cfg, *st.db, *st.pubsub, *st.kv, *st.blobs, events, background);
  auto modules = all_modules();
  net::Router router;
  // A module that cannot set itself up (an unreadable key file, a bad route) stops the start
  // with its name and reason, not with an unhandled exception.
  std::string phase;
  try {
    for (auto& m : modules) {
      phase = m.name + ": setting up";
      if (m.provide) m.provide(services);
    }
    install_system_routes(router, services);
    for (auto& m : modules) {
      phase = m.name + ": installing routes";
      if (m.routes) m.routes(router, services);
    }
  } catch (const std::exception& e) {
    logger->critical(log::fields({{"msg", "cannot start"}, {"phase", phase}, {"error", e.what()}}));
    stop_background();
    return 1;
  }
  metrics::register_process_metrics(metrics::registry());

  net::Server server(net::ServerOptions::from(cfg), router, services.auth);
  if (auto started = server.start(); !started.ok()) {
    logger->critical(log::fields({{"msg", "cannot start the server"}, {"error", started.error().detail}}));
    stop_background();
    return 1;
  }
  try {
    for (auto& m : modules) {
      phase = m.name + ": starting";
      if (m.start) m.start(services);
    }
  } catch (const std::exception& e) {
    logger->critical(log::fields({{"msg", "cannot start"}, {"phase", phase}, {"error", e.what()}}));
    server.shutdown();
    server.wait();
    stop_background();
    return 1;
  }
  if (!run.port_file.empty() && !write_port_file(run.port_file, server.port())) {
    logger->critical(log::fields({{"msg", "cannot write the port file"}, {"path", run.port_file}}));
    server.shutdown();
    server.wait();
    stop_background();
    return 1;
  }
  logger->info(log::fields({{"msg", "storage"}, {"db", st.db->describe()}, {"redis", cfg.get_string("redis").empty() ? "in-process" : "configured"}}));
  // Starting up (the OpenAPI document's YAML, migrations) freed megabytes the allocator would
  // otherwise keep resident for the life of the process: a third of the idle RSS.
  malloc_trim(0);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  logger->info(log::fields({{"msg", "shutting down"}, {"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}}));
  for (auto& m : modules)
    if (m.drain) m.drain();
  server.shutdown();
  server.wait();
  for (auto it = modules.rbegin(); it != modules.rend(); ++it)
    if (it->stop) it->stop();
  stop_background();
  // Storage goes before the server object: its connections may belong to the workers' loops.
  st.blobs.reset();
  st.kv.reset();
  st.pubsub.reset();
  st.db.reset();
  stop_blocking_pool();
  logger->info(log::fields({{"msg", "stopped"}}));
  logger->flush();
  return 0;
}

int migrate(const config::Config& cfg, const std::vector<std::string>& only) {
  log::init(log_options(cfg));
  auto logger = log::get("server");
  asio::io_context control;
  store::Database::Options dbo;
  auto db = store::Database::open(platform::database_url(cfg), dbo);
  if (!db.ok()) {
    logger->critical(log::fields({{"msg", "cannot open the database"}, {"error", db.error().detail}}));
    return 1;
  }
  auto modules = all_migrations();
  if (!only.empty())
    std::erase_if(modules, [&](const store::ModuleMigrations& m) {
      return std::find(only.begin(), only.end(), m.module) == only.end();
    });
  if (auto supported = check_backend_support(**db, modules); !supported.ok()) {
    logger->critical(log::fields({{"msg", "unsupported database"}, {"error", supported.error().detail}}));
    return 1;
  }
  auto migrated = platform::run_sync(control, store::migrate(**db, modules));
  if (!migrated.ok()) {
    logger->critical(log::fields({{"msg", "migrations failed"}, {"error", migrated.error().detail}}));
    return 1;
  }
  logger->info(log::fields({{"msg", "database is up to date"}, {"db", (*db)->describe()}}));
  db->reset();
  stop_blocking_pool();
  return 0;
}

}  // namespace harmar::server
