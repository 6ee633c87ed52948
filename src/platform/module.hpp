#pragma once
// The contract between the composition root (src/server) and each domain module (src/auth,
// src/devices, src/tasks, ...). A module describes itself with a Module value; the server adds its
// configuration keys, applies its migrations, lets it provide services to other modules, installs
// its routes, and starts and stops its background work.
//
// Modules never include each other's implementation: they share small interfaces (an auth token
// verifier, a mailer, ...) through Services::provide/find, and facts through the EventBus.
#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>
#include <typeindex>
#include <unordered_map>
#include <vector>

#include "core/config.hpp"
#include "net/router.hpp"
#include "platform/events.hpp"
#include "store/blobs.hpp"
#include "store/kv.hpp"
#include "store/pubsub.hpp"
#include "store/sql.hpp"

namespace harmar::platform {

namespace asio = boost::asio;

class Services {
 public:
  Services(const config::Config& config, store::Database& db, store::PubSub& pubsub, store::Kv& kv,
           store::BlobStore& blobs, EventBus& events, boost::asio::io_context& background)
      : config(config), db(db), pubsub(pubsub), kv(kv), blobs(blobs), events(events), background(background) {}

  const config::Config& config;
  store::Database& db;
  store::PubSub& pubsub;
  store::Kv& kv;
  store::BlobStore& blobs;
  EventBus& events;
  // One event loop of its own for sweepers, schedulers and other background work.
  boost::asio::io_context& background;
  // Who is calling: set by the auth module, used by every route that requires authentication.
  net::AuthHook auth;

  // Shares an interface implementation with other modules (one per type).
  template <class T>
  void provide(std::shared_ptr<T> impl) {
    provided_[std::type_index(typeid(T))] = std::move(impl);
  }
  // The implementation some module provided, or nullptr.
  template <class T>
  std::shared_ptr<T> find() const {
    auto it = provided_.find(std::type_index(typeid(T)));
    return it == provided_.end() ? nullptr : std::static_pointer_cast<T>(it->second);
  }

 private:
  std::unordered_map<std::type_index, std::shared_ptr<void>> provided_;
};

struct Module {
  std::string name;
  // Adds this module's configuration keys (documented in docs/configuration.md).
  std::function<void(config::Schema&)> configure;
  // Schema changes, per backend; the module name is the migration namespace.
  std::vector<store::Migration> migrations;
  // Creates what other modules may find() (called for every module before any routes).
  std::function<void(Services&)> provide;
  // Installs HTTP and WebSocket routes.
  std::function<void(net::Router&, Services&)> routes;
  // Starts background work on services.background (after the server listens).
  std::function<void(Services&)> start;
  // The server is about to stop: answer long-polls and other waits now, so in-flight requests
  // finish within the shutdown grace (called before the server drains; optional).
  std::function<void()> drain;
  // Stops background work (before storage closes).
  std::function<void()> stop;
};

}  // namespace harmar::platform
