#include "auth/cli.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <iostream>

#include "auth/auth_service.hpp"
#include "auth/keys.hpp"
#include "core/blocking.hpp"
#include "platform/run.hpp"

namespace harmar::auth {

namespace {

int fail(const std::string& what, const Error& e) {
  std::cerr << "harmar: " << what << ": " << e.detail;
  for (const auto& f : e.errors) std::cerr << " (" << f.field << " " << f.message << ")";
  std::cerr << "\n";
  return 1;
}

}  // namespace

int cli_rotate_keys(const config::Config& cfg) {
  auto secret = load_server_secret(cfg);
  if (!secret.ok()) return fail("cannot load the server secret", secret.error());
  auto db = store::Database::open(platform::database_url(cfg));
  if (!db.ok()) return fail("cannot open the database", db.error());
  int rc = 0;
  {
    KeyRing ring(**db, *secret, cfg.get_duration_ms("auth.access_ttl"));
    auto loaded = platform::run_sync(ring.reload());
    if (!loaded.ok()) return fail("cannot read the signing keys", loaded.error());
    auto kid = platform::run_sync(ring.rotate());
    if (!kid.ok()) {
      rc = fail("cannot rotate the signing keys", kid.error());
    } else {
      std::cout << "new signing key " << *kid << "; previous keys verify until their tokens expire ("
                << cfg.get_string("auth.access_ttl") << ")\n";
    }
  }
  db->reset();
  stop_blocking_pool();
  return rc;
}

int cli_create_user(const config::Config& cfg, const std::string& email, const std::string& password,
                    const std::string& name, const std::vector<std::string>& roles) {
  auto secret = load_server_secret(cfg);
  if (!secret.ok()) return fail("cannot load the server secret", secret.error());
  auto db = store::Database::open(platform::database_url(cfg));
  if (!db.ok()) return fail("cannot open the database", db.error());
  auto kv = store::Kv::open("");
  auto pubsub = store::PubSub::open("");
  if (!kv.ok() || !pubsub.ok()) return fail("cannot open in-process stores", Error::internal());
  int rc = 0;
  {
    AuthService svc(Settings::from(cfg), **db, **kv, **pubsub, *secret);
    auto user = platform::run_sync(svc.create_user(email, password, name, roles));
    if (!user.ok()) {
      rc = fail("cannot create the user", user.error());
    } else {
      std::cout << boost::json::serialize(user->to_json()) << "\n";
    }
  }
  db->reset();
  stop_blocking_pool();
  return rc;
}

}  // namespace harmar::auth
