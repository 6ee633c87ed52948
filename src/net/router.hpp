#pragma once
// Routes: method + path pattern → handler, with per-route options and middleware.
//
//   router.get("/v1/tasks/{id}", get_task, {.auth = Auth::User});
//   router.post("/v1/config/backup", upload, {.auth = Auth::Device, .body_limit = 100 << 20, .stream_body = true});
//
// Patterns are literal segments, "{name}" (one segment) and a final "{name...}" (the rest).
// Literal segments win over parameters. The router is built before the server starts and is
// read-only afterwards.
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/result.hpp"
#include "net/http.hpp"
#include "net/websocket.hpp"

namespace harmar::metrics {
class Counter;
class Histogram;
}  // namespace harmar::metrics

namespace harmar::net {

namespace asio = boost::asio;

using Handler = std::function<asio::awaitable<Response>(Request&)>;
// Runs around a handler: may answer itself or call `next`.
using Middleware = std::function<asio::awaitable<Response>(Request&, const Handler& next)>;
using WsHandler = std::function<asio::awaitable<void>(WebSocket&, Request&)>;

// Who may call a route. The server's AuthHook decides who a caller is.
enum class Auth : uint8_t {
  None,      // anyone; credentials are not looked at
  Optional,  // anyone; a valid credential sets Request::principal, an invalid one is 401
  User,      // a user (access token) or an API key acting for one
  Device,    // a device api key
  Any,       // any authenticated principal
};

struct RouteOptions {
  Auth auth = Auth::None;
  std::string permission;  // also required (AuthHook::authorize), if non-empty
  int64_t body_limit = -1;  // bytes; -1 takes the server default (limits.body_bytes)
  // The handler reads the body from Request::body_source while it arrives (HTTP/1.1, Content-Length
  // or chunked) instead of finding it whole in Request::body; body_limit bounds the whole stream.
  // Over HTTP/2 such a route answers 505 `http1_required` (see BodySource).
  bool stream_body = false;
  bool access_log = true;
  std::vector<Middleware> middleware;  // outermost first
  // For WebSocket routes: message size, send-queue bound and idle timeout (0: the server's).
  WebSocket::Options websocket{.idle_timeout_ms = 0};
};

struct AuthHook {
  // Reads the request's credentials; a 401 Error when absent or invalid.
  std::function<asio::awaitable<Result<Principal>>(Request&)> authenticate;
  // Whether `p` holds `permission`.
  std::function<bool(const Principal& p, std::string_view permission)> authorize;
};

struct Route {
  Method method = Method::Get;
  std::string pattern;
  Handler handler;  // with the middleware folded in
  WsHandler websocket;
  RouteOptions options;
  // Per-route metrics, created on first use by the server.
  mutable std::atomic<metrics::Counter*> requests[5] = {};  // by status class 1xx..5xx
  mutable std::atomic<metrics::Histogram*> latency{nullptr};
};

struct Match {
  const Route* route = nullptr;
  uint16_t allowed = 0;  // methods that exist for this path, as bits (1 << Method); 0 → 404
};

class Router {
 public:
  Router();
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  Route& add(Method m, std::string pattern, Handler h, RouteOptions opts = {});
  Route& get(std::string p, Handler h, RouteOptions o = {}) { return add(Method::Get, std::move(p), std::move(h), std::move(o)); }
  Route& post(std::string p, Handler h, RouteOptions o = {}) { return add(Method::Post, std::move(p), std::move(h), std::move(o)); }
  Route& put(std::string p, Handler h, RouteOptions o = {}) { return add(Method::Put, std::move(p), std::move(h), std::move(o)); }
  Route& patch(std::string p, Handler h, RouteOptions o = {}) { return add(Method::Patch, std::move(p), std::move(h), std::move(o)); }
  Route& del(std::string p, Handler h, RouteOptions o = {}) { return add(Method::Delete, std::move(p), std::move(h), std::move(o)); }
  // A WebSocket endpoint (GET + Upgrade: websocket).
  Route& websocket(std::string pattern, WsHandler h, RouteOptions opts = {});

  // Finds the route for `m` on `path` and stores its parameters in `req` (if given).
  // HEAD falls back to GET.
  Match match(Method m, std::string_view path, Request* req) const;

  const std::deque<Route>& routes() const { return routes_; }

 private:
  struct Node;
  bool walk(const Node& n, const std::string_view* segs, std::size_t count, std::size_t i, const char* path_end,
            Method m, Request* req, Match& out) const;
  std::unique_ptr<Node> root_;
  std::deque<Route> routes_;
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // Patterns without parameters, for a one-lookup fast path.
  std::unordered_map<std::string, Node*, Hash, std::equal_to<>> literal_;
};

std::string allow_header(uint16_t allowed);

}  // namespace harmar::net
