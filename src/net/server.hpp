#pragma once
// The HTTP server: one io_context per worker thread, each with its own SO_REUSEPORT listener
// (shared-nothing, like nginx workers). HTTP/1.1, h2c and h2 over TLS, and WebSocket upgrades
// are served from the same port and dispatched through one Router.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "net/router.hpp"

namespace boost::asio {
class io_context;
}

namespace harmar::config {
class Config;
}

namespace harmar::net {

struct ServerOptions {
  std::string listen = "127.0.0.1:8080";
  int workers = 0;  // 0: one per core
  std::string tls_cert, tls_key;  // PEM files; both set → TLS with ALPN h2/http1.1
  std::size_t header_limit = 16 * 1024;
  int64_t body_limit = 1 << 20;
  int64_t header_timeout_ms = 10'000;
  int64_t body_timeout_ms = 60'000;
  int64_t idle_timeout_ms = 60'000;
  int64_t write_timeout_ms = 30'000;
  int64_t connection_rps = 20'000;  // 0: unlimited
  int64_t max_connections = 100'000;  // per worker
  int h2_max_streams = 128;
  int64_t shutdown_timeout_ms = 10'000;
  std::vector<std::string> cors_origins;
  bool access_log = true;

  static ServerOptions from(const config::Config& c);
};

class Server {
 public:
  Server(ServerOptions opts, const Router& router, AuthHook auth = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every worker's listener and starts the worker threads.
  Status start();
  // The bound port (useful with port 0).
  uint16_t port() const;
  // Stops accepting, lets in-flight requests finish for up to shutdown_timeout, then closes
  // what is left and stops the workers. Thread-safe and idempotent; does not block.
  void shutdown();
  // Blocks until every worker thread has exited (after shutdown()).
  void wait();

  // The workers' event loops, for modules that keep per-worker state.
  std::vector<boost::asio::io_context*> worker_contexts() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace harmar::net
