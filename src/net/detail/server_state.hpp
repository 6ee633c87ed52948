#pragma once
// Internal to src/net: what the protocol sessions share with the dispatcher.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/detail/parking.hpp"
#include "net/router.hpp"
#include "net/server.hpp"

namespace spdlog {
class logger;
}

namespace harmar::net::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// A live connection, as its worker sees it: a deadline the sweeper enforces and a way to cut it.
struct Connection : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
  virtual ~Connection() = default;
  // Closes the transport now; pending operations on it complete with an error.
  virtual void cut() = 0;
  // At shutdown: close at once if idle, else finish what is in flight and then close.
  virtual void drain() {
    draining = true;
    if (idle) cut();
  }
  // Frees what an idle connection holds beyond its socket (its coroutine frames, buffers); true
  // if it did. The sweeper asks connections idle for a while (see Worker::kParkAfterMs).
  virtual bool park() { return false; }
  // The deadline passed. Most connections are cut; a WebSocket uses its deadline for keep-alive.
  virtual void expire() { cut(); }
  int64_t deadline_ms = 0;  // monotonic; 0 = none
  int64_t idle_since_ms = 0;  // tick clock; when the connection last became idle
  bool idle = true;         // between requests: safe to close at shutdown
  bool draining = false;    // answer what is in flight, then close
};

struct ServerState;

struct Worker {
  explicit Worker(int i) : index(i), ioc(1), tick(ioc) {}
  int index;
  // State sessions touch, even while being destroyed: declared before ioc so it outlives it.
  boost::intrusive::list<Connection, boost::intrusive::constant_time_size<false>> connections;
  std::size_t connection_count = 0;
  bool draining = false;
  int64_t force_close_at_ms = 0;  // after shutdown: cut what is left at this monotonic time
  std::string date_line;  // "Date: ...\r\n", refreshed every tick
  int64_t now_ms = 0;     // monotonic, refreshed every tick: cheap enough for per-request deadlines
  static constexpr int64_t kTickMs = 250;
  // Keep-alive connections idle this long give up their session state until the client speaks.
  static constexpr int64_t kParkAfterMs = 1000;
  std::size_t parked_since_trim = 0;  // connections parked since the last malloc_trim
  std::size_t descriptors_reserved = 0;  // Asio descriptor states made in blocks (see server.cpp)
  int64_t date_second = 0;
  // Plain reads land here and are parsed before the session suspends again (see http1.cpp).
  static constexpr std::size_t kScratch = 64 * 1024;
  std::unique_ptr<char[]> scratch = std::make_unique<char[]>(kScratch);
  // WebSocket sessions with frames to write, written in one sweep once the events of the moment
  // are queued on every socket (see websocket.cpp). A slot is nulled when its session goes.
  std::vector<Connection*> ws_flush;
  std::size_t ws_flush_next = 0;
  bool ws_flush_posted = false;
  asio::io_context ioc;
  // I/O objects after ioc: destroyed before it.
  std::optional<tcp::acceptor> acceptor;
  tcp protocol = tcp::v4();  // the listener's, shared by every connection it accepts
  std::unique_ptr<ParkingLot> lot;  // idle plain connections without a session (none with TLS)
  asio::steady_timer tick;
  std::thread thread;

  // A deadline `ms` from now, on the tick clock: it fires between `ms` and `ms` plus two ticks
  // later, which is all a timeout of seconds needs, without a clock read per request.
  int64_t deadline_after(int64_t ms) const { return now_ms + ms + kTickMs; }

  void register_connection(Connection& c) {
    connections.push_back(c);
    ++connection_count;
  }
  void unregister_connection(Connection& c) {
    c.unlink();
    --connection_count;
  }
};

struct ServerState {
  ServerOptions opts;
  const Router& router;
  AuthHook auth;
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<spdlog::logger> access;
  std::unique_ptr<asio::ssl::context> tls;  // set when TLS is configured
};

// The protocol-independent part of handling one request: route checks, auth, the handler,
// CORS, metrics and the access log. `match` comes from Router::match (already done by the caller,
// which needed it to choose the body limit).
asio::awaitable<Response> dispatch(const ServerState& st, Request& req, const Match& match, int64_t start_mono_us);
// Applies the route's auth requirement; sets req.principal, or returns the refusal.
asio::awaitable<std::optional<Response>> authorize_route(const ServerState& st, Request& req, const Route& route);
// Records metrics and the access-log line for a finished request.
void record(const ServerState& st, const Request& req, const Match& match, const Response& resp,
            std::size_t body_bytes, int64_t start_mono_us, std::string_view proto);
// The peer's address as text, "unknown" if the socket cannot tell.
std::string remote_ip(const tcp::socket& sock);
// Chooses the request id: a sane client X-Request-Id is kept, otherwise one is generated.
void assign_request_id(Request& req);
// The body limit that applies to a matched route.
int64_t body_limit_for(const ServerState& st, const Match& m);
int64_t mono_us();

// Per protocol. Each runs until the connection ends. `preread` holds bytes already read from
// the stream (protocol sniffing) that belong to the session.
asio::awaitable<void> serve_plain(ServerState& st, Worker& w, tcp::socket sock);
asio::awaitable<void> serve_tls(ServerState& st, Worker& w, tcp::socket sock);

}  // namespace harmar::net::detail
