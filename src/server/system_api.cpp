#include "server/system_api.hpp"

#include <boost/json.hpp>

#include "core/json.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/version.hpp"
#include "server/openapi_embed.hpp"

namespace harmar::server {

namespace asio = boost::asio;
namespace js = boost::json;
using net::Request;
using net::Response;

void install_system_routes(net::Router& router, platform::Services& s) {
  router.get("/healthz", [](Request&) -> asio::awaitable<Response> {
    co_return Response(200, R"({"status":"ok"})");
  }, {.access_log = false});

  router.get("/readyz", [&s](Request&) -> asio::awaitable<Response> {
    js::object checks;
    bool ready = true;
    auto db = co_await s.db.ping();
    checks["database"] = db.ok() ? "ok" : db.error().detail;
    ready = ready && db.ok();
    auto ps = co_await s.pubsub.ping();
    checks["pubsub"] = ps.ok() ? "ok" : ps.error().detail;
    ready = ready && ps.ok();
    auto kv = co_await s.kv.ping();
    checks["kv"] = kv.ok() ? "ok" : kv.error().detail;
    ready = ready && kv.ok();
    js::object body{{"status", ready ? "ready" : "unavailable"}, {"checks", std::move(checks)}};
    Response r = Response::json(ready ? 200 : 503, body);
    if (!ready) r.header("Retry-After", "1");
    co_return r;
  }, {.access_log = false});

  router.get("/metrics", [](Request&) -> asio::awaitable<Response> {
    co_return Response::text(200, metrics::registry().render(), "text/plain; version=0.0.4; charset=utf-8");
  }, {.access_log = false});

  auto version = std::make_shared<const std::string>(js::serialize(js::object{
      {"name", "harmar"}, {"version", build::kVersion}, {"commit", build::kCommit}, {"build", build::kBuildType}}));
  router.get("/v1/version", [version](Request&) -> asio::awaitable<Response> {
    co_return Response(200, *version);
  });

  // The OpenAPI document is docs/openapi.yaml, embedded at build time and converted once.
  auto openapi = std::make_shared<std::string>();
  if (auto doc = json::yaml_to_json(kOpenApiYaml); doc.ok()) {
    *openapi = js::serialize(*doc);
  } else {
    log::get("server")->error(log::fields({{"msg", "docs/openapi.yaml is invalid"}, {"error", doc.error().detail}}));
  }
  router.get("/v1/openapi.json", [openapi](Request&) -> asio::awaitable<Response> {
    if (openapi->empty()) co_return Error::internal("the OpenAPI document failed to load");
    co_return Response(200, *openapi);
  });
}

}  // namespace harmar::server
