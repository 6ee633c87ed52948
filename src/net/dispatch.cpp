#include <spdlog/spdlog.h>

#include <chrono>

#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "net/detail/server_state.hpp"

namespace harmar::net::detail {

int64_t mono_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void assign_request_id(Request& req) {
  std::string_view given = req.header("X-Request-Id");
  bool ok = !given.empty() && given.size() <= 64;
  for (char c : given) {
    bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                c == '.' || c == ':';
    ok = ok && safe;
  }
  if (ok) {
    req.set_request_id(given);
  } else {
    req.set_request_id(next_request_id());
  }
}

int64_t body_limit_for(const ServerState& st, const Match& m) {
  if (m.route && m.route->options.body_limit >= 0) return m.route->options.body_limit;
  return st.opts.body_limit;
}

namespace {

bool auth_allows(Auth need, const Principal& p) {
  switch (need) {
    case Auth::None:
    case Auth::Optional:
    case Auth::Any: return true;
    case Auth::User: return p.kind == Principal::Kind::User || p.kind == Principal::Kind::ApiKey;
    case Auth::Device: return p.kind == Principal::Kind::Device;
  }
  return false;
}

// The configured origin that admits `origin`, or "" if none does.
std::string_view cors_origin(const ServerState& st, std::string_view origin) {
  if (origin.empty()) return {};
  for (const auto& o : st.opts.cors_origins) {
    if (o == "*") return "*";
    if (o == origin) return origin;
  }
  return {};
}

void add_cors(const ServerState& st, const Request& req, Response& resp) {
  if (st.opts.cors_origins.empty()) return;
  auto allowed = cors_origin(st, req.header("Origin"));
  if (allowed.empty()) return;
  resp.header("Access-Control-Allow-Origin", std::string(allowed));
  if (allowed != "*") resp.header("Vary", "Origin");
  resp.header("Access-Control-Expose-Headers", "X-Request-Id, Retry-After, Location, ETag");
}

Response preflight(const ServerState& st, const Request& req, uint16_t allowed) {
  Response r = Response::no_content();
  r.header("Allow", allow_header(allowed));
  auto origin = cors_origin(st, req.header("Origin"));
  if (!origin.empty() && req.has_header("Access-Control-Request-Method")) {
    r.header("Access-Control-Allow-Methods", allow_header(allowed));
    r.header("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key, If-Match, X-Request-Id");
    r.header("Access-Control-Max-Age", "600");
  }
  return r;
}

}  // namespace

asio::awaitable<std::optional<Response>> authorize_route(const ServerState& st, Request& req, const Route& route) {
  const RouteOptions& ro = route.options;
  if (ro.auth == Auth::None) co_return std::nullopt;
  if (!st.auth.authenticate) {
    if (ro.auth == Auth::Optional) co_return std::nullopt;
    co_return Response(Error::unauthorized("authentication is not configured on this server"));
  }
  bool has_credentials = req.has_header("Authorization") || req.query_param("access_token").has_value();
  if (ro.auth == Auth::Optional && !has_credentials) co_return std::nullopt;
  auto who = co_await st.auth.authenticate(req);
  if (!who.ok()) co_return Response(who.error());
  if (!auth_allows(ro.auth, *who))
    co_return Response(Error::forbidden("this endpoint is not available to this kind of credential"));
  if (!ro.permission.empty() && !(st.auth.authorize && st.auth.authorize(*who, ro.permission)))
    co_return Response(Error::forbidden("missing permission " + ro.permission));
  req.principal = std::move(who).value();
  co_return std::nullopt;
}

asio::awaitable<Response> dispatch(const ServerState& st, Request& req, const Match& match, int64_t start_mono_us) {
  Response resp;
  std::optional<Response> refused;
  if (match.route) req.set_route(match.route->pattern);
  if (!match.allowed) {
    resp = Error::not_found("no route for " + std::string(req.method_text()) + " " + std::string(req.path()));
  } else if (!match.route) {
    if (req.method == Method::Options) {
      resp = preflight(st, req, match.allowed);
    } else {
      Error e{405, "method_not_allowed", std::string(req.method_text()) + " is not allowed on " + std::string(req.path())};
      resp = Response(e);
      resp.header("Allow", allow_header(match.allowed));
    }
  } else if (match.route->websocket) {
    Error e{426, "upgrade_required", "this endpoint speaks WebSocket: send Upgrade: websocket"};
    resp = Response(e);
    resp.header("Upgrade", "websocket");
  } else {
    // Only routes with an auth requirement pay for the extra coroutine.
    if (match.route->options.auth != Auth::None) refused = co_await authorize_route(st, req, *match.route);
    if (refused) {
      resp = std::move(*refused);
    } else {
      try {
        resp = co_await match.route->handler(req);
      } catch (const std::exception& e) {
        st.log->error(log::fields({{"msg", "handler failed"},
                                   {"route", match.route->pattern},
                                   {"error", e.what()},
                                   {"request_id", req.request_id()}}));
        resp = Error::internal("the server failed to handle this request (request id " +
                               std::string(req.request_id()) + ")");
      }
    }
  }
  add_cors(st, req, resp);
  co_return resp;
}

namespace {

metrics::Counter& counter_for(const std::string& route, Method m, int cls) {
  static const char* kClass[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  return metrics::registry().counter("harmar_http_requests_total", "HTTP requests answered, by route, method and status class.",
                                     {{"route", route}, {"method", std::string(method_name(m))}, {"code", kClass[cls]}});
}

metrics::Histogram& latency_for(const std::string& route) {
  return metrics::registry().histogram("harmar_http_request_duration_seconds",
                                       "Time from a complete request header to the response, by route.", {{"route", route}});
}

}  // namespace

void record(const ServerState& st, const Request& req, const Match& match, const Response& resp,
            std::size_t body_bytes, int64_t start_mono_us, std::string_view proto) {
  int64_t elapsed_us = mono_us() - start_mono_us;
  int cls = std::clamp(resp.status / 100 - 1, 0, 4);
  if (const Route* r = match.route) {
    // Per-route metric children are created once, then reached through the route.
    metrics::Counter* c = r->requests[cls].load(std::memory_order_acquire);
    if (!c) {
      c = &counter_for(r->pattern, r->method, cls);
      r->requests[cls].store(c, std::memory_order_release);
    }
    c->inc();
    metrics::Histogram* h = r->latency.load(std::memory_order_acquire);
    if (!h) {
      h = &latency_for(r->pattern);
      r->latency.store(h, std::memory_order_release);
    }
    h->observe(static_cast<double>(elapsed_us) / 1e6);
  } else {
    static metrics::Counter* unmatched[5] = {};
    static std::once_flag once;
    std::call_once(once, [] {
      for (int i = 0; i < 5; ++i) unmatched[i] = &counter_for("unmatched", Method::Other, i);
    });
    unmatched[cls]->inc();
  }
  if (!st.opts.access_log || (match.route && !match.route->options.access_log)) return;
  if (!st.access->should_log(spdlog::level::info)) return;
  std::string line;
  line.reserve(256);
  line += "{\"method\":\"";
  log::escape_json(req.method_text(), line);
  line += "\",\"path\":\"";
  log::escape_json(req.path(), line);
  line += "\",\"status\":";
  line += std::to_string(resp.status);
  line += ",\"bytes\":";
  line += std::to_string(body_bytes);
  line += ",\"duration_ms\":";
  line += fmt::format("{:.3f}", static_cast<double>(elapsed_us) / 1000.0);
  line += ",\"proto\":\"";
  line += proto;
  line += "\",\"remote\":\"";
  log::escape_json(req.remote_ip(), line);
  line += "\",\"request_id\":\"";
  log::escape_json(req.request_id(), line);
  line += '"';
  if (match.route) {
    line += ",\"route\":\"";
    log::escape_json(match.route->pattern, line);
    line += '"';
  }
  if (req.principal) {
    line += ",\"principal\":\"";
    log::escape_json(req.principal->id, line);
    line += '"';
  }
  line += '}';
  st.access->info(line);
}

}  // namespace harmar::net::detail
