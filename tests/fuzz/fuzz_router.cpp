// Router::match on arbitrary paths: never crashes, and a match always names a registered route.
#include <cstdlib>

#include "net/router.hpp"

using namespace harmar::net;

namespace {
boost::asio::awaitable<Response> nothing(Request&) { co_return Response(); }
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Router* router = [] {
    auto* r = new Router();
    Handler h = nothing;
    r->get("/v1/tasks", h);
    r->post("/v1/tasks", h);
    r->get("/v1/tasks/{id}", h);
    r->post("/v1/tasks/{id}/cancel", h);
    r->post("/v1/daemon/tasks/pending", h);
    r->get("/v1/collections/{name}/records/{id}", h);
    r->get("/files/{path...}", h);
    return r;
  }();
  std::string_view path(reinterpret_cast<const char*>(data), size);
  Request req;
  for (Method m : {Method::Get, Method::Post, Method::Head, Method::Delete}) {
    Match match = router->match(m, path, &req);
    if (match.route && match.route->pattern.empty()) std::abort();
    if (match.route && !match.allowed) std::abort();
  }
  return 0;
}
