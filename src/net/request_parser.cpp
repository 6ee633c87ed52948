#include "net/detail/request_parser.hpp"

#include "core/log.hpp"

namespace harmar::net::detail {

namespace {
asio::awaitable<Response> nothing(Request&) { co_return Response(); }
}  // namespace

std::size_t fuzz_parse_requests(std::string_view bytes) {
  static const Router* router = [] {
    auto* r = new Router();
    Handler h = nothing;
    r->get("/v1/version", h);
    r->post("/echo", h, {.body_limit = 4096});
    r->get("/items/{id}", h);
    return r;
  }();
  static ServerState* st = [] {
    ServerOptions o;
    o.header_limit = 2048;
    o.body_limit = 1024;
    return new ServerState{o, *router, {}, log::get("http"), log::get("access"), nullptr};
  }();
  // The first byte picks the piece size, so the corpus explores split points too.
  std::size_t piece = bytes.empty() ? 1 : 1 + static_cast<unsigned char>(bytes[0]) % 64;
  std::string pending;
  std::size_t pos = 0, done = 0;
  Request req;
  while (done < 64) {
    req.clear();
    RequestParser p(*st, req);
    boost::system::error_code ec;
    while (!p.is_done()) {
      if (pos < bytes.size()) {
        pending.append(bytes.substr(pos, piece));
        pos += piece;
      } else if (pending.empty()) {
        return done;
      }
      std::size_t n = p.put(asio::buffer(pending.data(), pending.size()), ec);
      pending.erase(0, n);
      if (ec == bhttp::error::need_more) {
        ec = {};
        if (pos >= bytes.size()) return done;  // truncated: the session would wait for more
        continue;
      }
      if (ec) return done;  // the session answers 4xx/5xx and closes
    }
    // What a handler may rely on once a request parsed.
    if (req.body.size() > static_cast<std::size_t>(p.limit)) __builtin_trap();
    (void)req.path();
    (void)req.header("host");
    ++done;
    if (!p.keep_alive() || p.upgrade()) return done;
  }
  return done;
}

}  // namespace harmar::net::detail
