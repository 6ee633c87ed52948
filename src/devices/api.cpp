#include "devices/api.hpp"

#include <boost/json.hpp>

#include "core/json.hpp"
#include "platform/api.hpp"
#include "platform/idempotency.hpp"

namespace harmar::devices {

namespace js = boost::json;
using net::Request;
using net::Response;

namespace {

using Svc = std::shared_ptr<Service>;

asio::awaitable<Response> register_device(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"name", "hostname", "os", "arch", "version", "labels"});
  RegisterInput in;
  in.name = r.required_string("name", 1, 200);
  in.hostname = r.optional_string("hostname", 0, 255).value_or("");
  in.os = r.optional_string("os", 0, 64).value_or("");
  in.arch = r.optional_string("arch", 0, 64).value_or("");
  in.version = r.optional_string("version", 0, 64).value_or("");
  in.labels = read_labels(r, body, "labels").value_or(Labels{});
  if (!r.ok()) co_return r.error();
  auto reg = co_await svc->register_device(platform::principal(req), std::move(in));
  if (!reg) co_return reg.error();
  Response resp = Response::json(201, js::object{{"device", to_json(reg->device)}, {"api_key", reg->api_key}});
  resp.header("Location", "/v1/devices/" + reg->device.id);
  co_return resp;
}

asio::awaitable<Response> heartbeat(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"status", "metrics", "running"});
  HeartbeatInput in;
  in.status = r.optional_string("status", 0, 32).value_or("");
  in.metrics = r.optional_object("metrics", 16 * 1024).value_or(js::object{});
  in.running = r.optional_strings("running", 256, 64).value_or(std::vector<std::string>{});
  if (!r.ok()) co_return r.error();
  auto out = co_await svc->heartbeat(platform::principal(req), std::move(in));
  if (!out) co_return out.error();
  co_return Response::json(200, *out);
}

asio::awaitable<Response> offline(Svc svc, Request& req) {
  auto st = co_await svc->go_offline(platform::principal(req));
  if (!st) co_return st.error();
  co_return Response::no_content();
}

asio::awaitable<Response> daemon_config(Svc svc, Request& req) {
  auto d = co_await svc->self(platform::principal(req));
  if (!d) co_return d.error();
  co_return Response::json(200, js::object{{"device_id", d->id}, {"config", d->config}, {"config_version", d->config_version}});
}

asio::awaitable<Response> list(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto page, platform::page_params(req));
  auto status = req.query_param("status");
  if (status && *status != "online" && *status != "offline")
    co_return Error::validation("status must be online or offline", {{"status", "must be online or offline"}});
  auto items = co_await svc->list(platform::principal(req), page.after, page.limit + 1, status);
  if (!items) co_return items.error();
  co_return platform::page_response(*items, page.limit, [](const auto& x) { return to_json(x); },
                                    [](const auto& x) { return x.id; });
}

asio::awaitable<Response> get(Svc svc, Request& req) {
  auto d = co_await svc->get(platform::principal(req), std::string(req.param("id")));
  if (!d) co_return d.error();
  co_return Response::json(200, to_json(*d));
}

asio::awaitable<Response> patch_config(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"config"});
  auto config = r.optional_object("config", 64 * 1024);
  if (r.ok() && !config) r.fail("config", "is required");
  if (!r.ok()) co_return r.error();
  auto d = co_await svc->update_config(platform::principal(req), std::string(req.param("id")), std::move(*config));
  if (!d) co_return d.error();
  co_return Response::json(200, js::object{{"device", to_json(*d)}});
}

asio::awaitable<Response> patch(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"name", "labels"});
  auto name = r.optional_string("name", 1, 200);
  auto labels = read_labels(r, body, "labels");
  if (!r.ok()) co_return r.error();
  auto d = co_await svc->update(platform::principal(req), std::string(req.param("id")), std::move(name), std::move(labels));
  if (!d) co_return d.error();
  co_return Response::json(200, js::object{{"device", to_json(*d)}});
}

asio::awaitable<Response> remove(Svc svc, Request& req) {
  auto st = co_await svc->remove(platform::principal(req), std::string(req.param("id")));
  if (!st) co_return st.error();
  co_return Response::no_content();
}

std::string_view bearer(const Request& req) {
  std::string_view h = req.header("Authorization");
  if (h.size() > 7 && net::iequals(h.substr(0, 7), "Bearer ")) {
    h.remove_prefix(7);
    while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
    return h;
  }
  return {};
}

asio::awaitable<Result<Principal>> authenticate_any(const net::AuthHook& inner, const std::shared_ptr<Directory>& dir,
                                                    Request& req) {
  std::string_view token = bearer(req);
  if (token.starts_with(kApiKeyPrefix)) co_return co_await dir->authenticate(std::string(token));
  if (inner.authenticate) co_return co_await inner.authenticate(req);
  co_return Error::unauthorized("a bearer token is required");
}

}  // namespace

net::AuthHook with_device_keys(net::AuthHook inner, std::shared_ptr<Directory> dir) {
  net::AuthHook out;
  auto shared_inner = std::make_shared<net::AuthHook>(inner);
  out.authenticate = [shared_inner, dir](Request& req) { return authenticate_any(*shared_inner, dir, req); };
  out.authorize = inner.authorize;
  return out;
}

void install_routes(net::Router& router, platform::Services& services, std::shared_ptr<Service> svc) {
  using net::Auth;
  auto idem = platform::idempotent(services);
  router.post("/v1/daemon/register", [svc](Request& r) { return register_device(svc, r); },
              {.auth = Auth::User, .middleware = {idem}});
  router.post("/v1/daemon/heartbeat", [svc](Request& r) { return heartbeat(svc, r); }, {.auth = Auth::Device});
  router.post("/v1/daemon/offline", [svc](Request& r) { return offline(svc, r); }, {.auth = Auth::Device});
  router.get("/v1/daemon/config", [svc](Request& r) { return daemon_config(svc, r); }, {.auth = Auth::Device});
  router.get("/v1/devices", [svc](Request& r) { return list(svc, r); }, {.auth = Auth::User});
  router.get("/v1/devices/{id}", [svc](Request& r) { return get(svc, r); }, {.auth = Auth::User});
  router.patch("/v1/devices/{id}", [svc](Request& r) { return patch(svc, r); }, {.auth = Auth::User});
  router.patch("/v1/devices/{id}/config", [svc](Request& r) { return patch_config(svc, r); }, {.auth = Auth::User});
  router.del("/v1/devices/{id}", [svc](Request& r) { return remove(svc, r); }, {.auth = Auth::User});
}

}  // namespace harmar::devices
