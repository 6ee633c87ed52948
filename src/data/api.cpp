// The endpoints of shared/API.md "Data services (collections)": parse and validate the request →
// call Collections / Records → write the DTO.
#include "data/api.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <charconv>

#include "core/json.hpp"
#include "platform/api.hpp"
#include "platform/idempotency.hpp"

namespace harmar::data {

using net::Request;
using net::Response;

bool is_admin(const platform::Services& s, const Principal& who) {
  if (who.is_admin()) return true;
  return s.auth.authorize && s.auth.authorize(who, kManagePermission);
}

namespace {

using State = std::shared_ptr<ApiState>;

Caller caller_of(const platform::Services& s, const Request& req) {
  Caller c;
  if (req.principal) {
    c.who = *req.principal;
    c.admin = is_admin(s, *req.principal);
  }
  return c;
}

bool flag(const Request& req, std::string_view name) {
  auto v = req.query_param(name);
  return v && (*v == "true" || *v == "1" || v->empty());
}

// If-Match: 3, "3" or W/"3" (our ETags); "*" means any version.
Result<std::optional<int64_t>> if_match(const Request& req) {
  std::string_view h = req.header("If-Match");
  if (h.empty()) return std::optional<int64_t>();
  while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
  while (!h.empty() && h.back() == ' ') h.remove_suffix(1);
  if (h == "*") return std::optional<int64_t>();
  if (h.starts_with("W/")) h.remove_prefix(2);
  if (h.size() >= 2 && h.front() == '"' && h.back() == '"') h = h.substr(1, h.size() - 2);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(h.data(), h.data() + h.size(), v);
  if (ec != std::errc() || end != h.data() + h.size() || v < 1)
    return Error::bad_request("invalid_if_match", "If-Match must be a record version (as in its ETag)");
  return std::optional<int64_t>(v);
}

Response record_response(int status, const js::object& record) {
  Response r = Response::json(status, record);
  if (const js::value* v = record.if_contains("version"); v && v->is_int64())
    r.header("ETag", fmt::format("\"{}\"", v->as_int64()));
  return r;
}

js::object plan_json(const Plan& p) {
  js::array steps, up, down;
  for (const auto& s : p.steps) steps.emplace_back(s);
  for (const auto& s : p.up) up.emplace_back(s);
  for (const auto& s : p.down) down.emplace_back(s);
  return js::object{{"steps", std::move(steps)}, {"up", std::move(up)}, {"down", std::move(down)}, {"destructive", p.destructive}};
}

std::string collection_param(const Request& req) { return std::string(req.param("name")); }

// --- collections -----------------------------------------------------------------------------

asio::awaitable<Response> list_collections(State st, Request& req) {
  HARMAR_CO_TRY(auto page, platform::page_params(req));
  auto items = co_await st->collections->list(page.after, page.limit + 1);
  if (!items) co_return items.error();
  js::array out;
  std::optional<std::string> next;
  for (std::size_t i = 0; i < items->size(); ++i) {
    if (static_cast<int>(i) == page.limit) {
      next = (*items)[i - 1].name;
      break;
    }
    out.push_back(to_json((*items)[i]));
  }
  co_return platform::list_response(std::move(out), next);
}

asio::awaitable<Response> create_collection(State st, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  auto c = parse_collection(body);
  if (!c) co_return c.error();
  auto exists = co_await st->collections->get(c->name);
  if (exists) co_return Error::conflict(fmt::format("collection {} exists", c->name), "collection_exists");
  bool dry = flag(req, "dry_run");
  std::vector<Change> changes;
  Change ch;
  ch.after = *c;
  changes.push_back(std::move(ch));
  auto plan = co_await st->collections->apply(std::move(changes), "api", dry);
  if (!plan) co_return plan.error();
  if (dry) co_return Response::json(200, js::object{{"plan", plan_json(*plan)}});
  Response r = Response::json(201, to_json(*c));
  r.header("Location", "/v1/collections/" + c->name);
  co_return r;
}

asio::awaitable<Response> get_collection(State st, Request& req) {
  auto e = co_await st->collections->get(collection_param(req));
  if (!e) co_return e.error();
  co_return Response::json(200, to_json((*e)->c));
}

asio::awaitable<Response> patch_collection(State st, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  auto e = co_await st->collections->get(collection_param(req));
  if (!e) co_return e.error();
  EntryPtr before = *e;
  js::object merged = to_json(before->c);
  for (const auto& [k, v] : body) {
    if (k == "rules" && v.is_object()) {
      js::object rules = merged["rules"].as_object();
      for (const auto& [op, rule] : v.as_object()) {
        if (rule.is_null()) rules.erase(op);
        else rules[op] = rule;
      }
      merged["rules"] = std::move(rules);
    } else if ((k == "name" || k == "type") && merged[k] != v) {
      co_return Error::validation(fmt::format("a collection's {} cannot change", std::string_view(k)),
                                  {{std::string(k), "cannot change"}});
    } else {
      merged[k] = v;
    }
  }
  auto after = parse_collection(merged);
  if (!after) co_return after.error();
  bool dry = flag(req, "dry_run");
  std::vector<Change> changes;
  Change ch;
  ch.before = before->c;
  ch.after = *after;
  changes.push_back(std::move(ch));
  auto plan = co_await st->collections->apply(std::move(changes), "api", dry);
  if (!plan) co_return plan.error();
  if (dry) co_return Response::json(200, js::object{{"plan", plan_json(*plan)}});
  co_return Response::json(200, to_json(*after));
}

asio::awaitable<Response> delete_collection(State st, Request& req) {
  auto e = co_await st->collections->get(collection_param(req));
  if (!e) co_return e.error();
  bool dry = flag(req, "dry_run");
  std::vector<Change> changes;
  Change ch;
  ch.before = (*e)->c;
  changes.push_back(std::move(ch));
  auto plan = co_await st->collections->apply(std::move(changes), "api", dry);
  if (!plan) co_return plan.error();
  if (dry) co_return Response::json(200, js::object{{"plan", plan_json(*plan)}});
  co_return Response::no_content();
}

// --- records -----------------------------------------------------------------------------------

asio::awaitable<Response> list_records(platform::Services& s, State st, Request& req) {
  HARMAR_CO_TRY(auto page, platform::page_params(req));
  ListQuery q;
  q.limit = page.limit;
  q.after = page.after;
  q.filter = req.query_param("filter");
  q.sort = req.query_param("sort");
  q.fields = req.query_param("fields");
  q.expand = req.query_param("expand");
  if (q.filter && q.filter->size() > 4096)
    co_return Error::validation("filter is longer than 4096 bytes", {{"filter", "is too long"}});
  auto result = co_await st->records->list(collection_param(req), caller_of(s, req), std::move(q), true);
  if (!result) co_return result.error();
  Response r(200, std::move(result->json));
  for (const auto& w : result->warnings) r.header("Warning", "299 harmar \"" + w + "\"");
  co_return r;
}

asio::awaitable<Response> create_record(platform::Services& s, State st, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  auto name = collection_param(req);
  auto r = co_await st->records->create(name, caller_of(s, req), std::move(body));
  if (!r) co_return r.error();
  Response resp = record_response(201, *r);
  resp.header("Location", fmt::format("/v1/collections/{}/records/{}", name, std::string_view(r->at("id").as_string())));
  co_return resp;
}

asio::awaitable<Response> view_record(platform::Services& s, State st, Request& req) {
  auto r = co_await st->records->view(collection_param(req), std::string(req.param("id")), caller_of(s, req),
                                      req.query_param("fields"), req.query_param("expand"));
  if (!r) co_return r.error();
  co_return record_response(200, *r);
}

asio::awaitable<Response> write_record(platform::Services& s, State st, Request& req, bool replace) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  HARMAR_CO_TRY(auto version, if_match(req));
  auto r = co_await st->records->update(collection_param(req), std::string(req.param("id")), caller_of(s, req),
                                        std::move(body), replace, version);
  if (!r) co_return r.error();
  co_return record_response(200, *r);
}

asio::awaitable<Response> delete_record(platform::Services& s, State st, Request& req) {
  HARMAR_CO_TRY(auto version, if_match(req));
  auto r = co_await st->records->remove(collection_param(req), std::string(req.param("id")), caller_of(s, req), version);
  if (!r) co_return r.error();
  co_return Response::no_content();
}

asio::awaitable<Response> batch(platform::Services& s, State st, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  const js::value* ops = body.if_contains("operations");
  if (!ops || !ops->is_array())
    co_return Error::validation("operations must be a list", {{"operations", "must be a list"}});
  std::vector<WriteOp> out;
  std::vector<FieldError> errors;
  const auto& arr = ops->as_array();
  if (arr.size() > st->records->settings().max_batch)
    co_return Error::validation(fmt::format("a batch has at most {} operations", st->records->settings().max_batch),
                                {{"operations", "too many"}});
  for (std::size_t i = 0; i < arr.size(); ++i) {
    std::string at = fmt::format("operations[{}]", i);
    if (!arr[i].is_object()) {
      errors.push_back({at, "must be an object"});
      continue;
    }
    const auto& o = arr[i].as_object();
    json::Reader r(o);
    r.reject_unknown({"op", "id", "body", "if_match"});
    std::string op = r.required_string("op", 1, 16);
    WriteOp w;
    if (op == "create") w.kind = WriteOp::Kind::Create;
    else if (op == "update") w.kind = WriteOp::Kind::Update;
    else if (op == "replace") w.kind = WriteOp::Kind::Replace;
    else if (op == "delete") w.kind = WriteOp::Kind::Delete;
    else r.fail("op", "must be create, update, replace or delete");
    if (w.kind != WriteOp::Kind::Create) w.id = r.required_string("id", 1, 64);
    w.if_match = r.optional_int("if_match", 1, INT64_MAX);
    if (w.kind != WriteOp::Kind::Delete) w.body = r.optional_object("body", 1 << 20).value_or(js::object{});
    if (!r.ok()) {
      for (auto e : r.error().errors) errors.push_back({at + "." + e.field, e.message});
      continue;
    }
    out.push_back(std::move(w));
  }
  if (!errors.empty()) co_return Error::validation("invalid batch", std::move(errors));
  auto results = co_await st->records->batch(collection_param(req), caller_of(s, req), std::move(out));
  if (!results) co_return results.error();
  co_return Response::json(200, js::object{{"results", std::move(*results)}});
}

asio::awaitable<Response> import_records(platform::Services& s, State st, Request& req) {
  std::string_view type = req.header("Content-Type");
  std::string format;
  if (type.starts_with("application/x-ndjson") || type.starts_with("application/jsonl") ||
      type.starts_with("application/json-seq") || type.starts_with("application/ndjson"))
    format = "ndjson";
  else if (type.starts_with("text/csv"))
    format = "csv";
  else
    co_return Error{415, "unsupported_media_type", "send application/x-ndjson or text/csv", {}};
  auto n = co_await st->records->import_records(collection_param(req), caller_of(s, req), format, std::move(req.body));
  if (!n) co_return n.error();
  co_return Response::json(200, js::object{{"imported", *n}});
}

asio::awaitable<Response> export_records(platform::Services& s, State st, Request& req) {
  std::string format = req.query_param("format").value_or("ndjson");
  auto body = co_await st->records->export_records(collection_param(req), caller_of(s, req), format,
                                                   req.query_param("filter"));
  if (!body) co_return body.error();
  Response r(200, std::move(*body), nullptr);
  r.header("Content-Type", format == "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson");
  r.header("Content-Disposition", fmt::format("attachment; filename=\"{}.{}\"", collection_param(req), format));
  co_return r;
}

// --- files ---------------------------------------------------------------------------------------

asio::awaitable<Response> put_file(platform::Services& s, State st, Request& req) {
  HARMAR_CO_TRY(auto version, if_match(req));
  auto r = co_await st->records->put_file(collection_param(req), std::string(req.param("id")), std::string(req.param("field")),
                                          caller_of(s, req), std::string(req.header("Content-Type")),
                                          req.query_param("name").value_or(""), std::move(req.body), version);
  if (!r) co_return r.error();
  co_return record_response(200, *r);
}

asio::awaitable<Response> get_file(platform::Services& s, State st, Request& req) {
  auto f = co_await st->records->get_file(collection_param(req), std::string(req.param("id")), std::string(req.param("field")),
                                          caller_of(s, req));
  if (!f) co_return f.error();
  Response r(200, std::move(f->body), nullptr);
  r.header("Content-Type", f->type.empty() ? "application/octet-stream" : f->type);
  r.header("Content-Disposition", fmt::format("attachment; filename=\"{}\"", f->name));
  r.header("X-Content-Type-Options", "nosniff");
  r.header("Content-Security-Policy", "sandbox");
  co_return r;
}

asio::awaitable<Response> delete_file(platform::Services& s, State st, Request& req) {
  HARMAR_CO_TRY(auto version, if_match(req));
  auto r = co_await st->records->delete_file(collection_param(req), std::string(req.param("id")),
                                             std::string(req.param("field")), caller_of(s, req), version);
  if (!r) co_return r.error();
  co_return record_response(200, *r);
}

}  // namespace

void install_routes(net::Router& router, platform::Services& s, std::shared_ptr<ApiState> st) {
  using net::Auth;
  net::RouteOptions admin{.auth = Auth::User, .permission = kManagePermission};
  net::RouteOptions admin_create = admin;
  admin_create.middleware.push_back(platform::idempotent(s));
  platform::Services* sp = &s;

  router.get("/v1/collections", [st](Request& r) { return list_collections(st, r); }, admin);
  router.post("/v1/collections", [st](Request& r) { return create_collection(st, r); }, admin_create);
  router.get("/v1/collections/{name}", [st](Request& r) { return get_collection(st, r); }, admin);
  router.patch("/v1/collections/{name}", [st](Request& r) { return patch_collection(st, r); }, admin);
  router.del("/v1/collections/{name}", [st](Request& r) { return delete_collection(st, r); }, admin);

  net::RouteOptions open{.auth = Auth::Optional};
  net::RouteOptions open_create = open;
  open_create.middleware.push_back(platform::idempotent(s));
  router.get("/v1/collections/{name}/records", [sp, st](Request& r) { return list_records(*sp, st, r); }, open);
  router.post("/v1/collections/{name}/records", [sp, st](Request& r) { return create_record(*sp, st, r); }, open_create);
  router.get("/v1/collections/{name}/records/{id}", [sp, st](Request& r) { return view_record(*sp, st, r); }, open);
  router.patch("/v1/collections/{name}/records/{id}", [sp, st](Request& r) { return write_record(*sp, st, r, false); }, open);
  router.put("/v1/collections/{name}/records/{id}", [sp, st](Request& r) { return write_record(*sp, st, r, true); }, open);
  router.del("/v1/collections/{name}/records/{id}", [sp, st](Request& r) { return delete_record(*sp, st, r); }, open);
  router.post("/v1/collections/{name}/batch", [sp, st](Request& r) { return batch(*sp, st, r); }, open);
  net::RouteOptions import_opts = admin;
  import_opts.body_limit = st->import_max_bytes;
  router.post("/v1/collections/{name}/import", [sp, st](Request& r) { return import_records(*sp, st, r); }, import_opts);
  router.get("/v1/collections/{name}/export", [sp, st](Request& r) { return export_records(*sp, st, r); }, open);

  net::RouteOptions upload = open;
  upload.body_limit = st->records->settings().max_file_bytes;
  router.put("/v1/collections/{name}/records/{id}/files/{field}", [sp, st](Request& r) { return put_file(*sp, st, r); }, upload);
  router.get("/v1/collections/{name}/records/{id}/files/{field}", [sp, st](Request& r) { return get_file(*sp, st, r); }, open);
  router.del("/v1/collections/{name}/records/{id}/files/{field}", [sp, st](Request& r) { return delete_file(*sp, st, r); }, open);
}

}  // namespace harmar::data
