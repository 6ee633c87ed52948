#include "im/api.hpp"

#include <boost/json.hpp>

#include <charconv>

#include "core/clock.hpp"
#include "core/json.hpp"
#include "platform/api.hpp"
#include "platform/idempotency.hpp"

namespace harmar::im {

namespace js = boost::json;
using net::Request;
using net::Response;

namespace {

using Svc = std::shared_ptr<Service>;

constexpr std::size_t kMaxIdBytes = 64;
constexpr std::size_t kMaxClientMsgId = 128;
constexpr std::size_t kMaxTitle = 200;
constexpr std::size_t kMaxIdsPerRequest = 100;

std::string id_param(const Request& req, std::string_view name = "id") { return std::string(req.param(name)); }

// An integer query parameter in [min, max]; `fallback` when absent.
Result<int64_t> int_param(const Request& req, std::string_view name, int64_t fallback, int64_t min, int64_t max) {
  auto v = req.query_param(name);
  if (!v || v->empty()) return fallback;
  int64_t n = 0;
  auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || ptr != v->data() + v->size() || n < min || n > max) {
    std::string msg = "must be an integer from " + std::to_string(min) + " to " + std::to_string(max);
    return Error::validation(std::string(name) + " " + msg, {{std::string(name), msg}});
  }
  return n;
}

js::object detail_json(const Detail& d) {
  js::object o = to_json(d.conversation);
  js::array members;
  for (const auto& m : d.members) members.push_back(to_json(m));
  o["members"] = std::move(members);
  return o;
}

// The ciphertext field of a message body, validated ("" when absent).
std::string read_ciphertext(json::Reader& r, const js::object& body, int64_t max_bytes) {
  const js::value* v = body.if_contains("ciphertext");
  if (!v || v->is_null()) return {};
  if (!v->is_object()) {
    r.fail("ciphertext", "must be an object of key id to base64 sealed box");
    return {};
  }
  auto text = check_ciphertext(v->as_object(), max_bytes);
  if (!text) {
    for (const auto& e : text.error().errors) r.fail(e.field, e.message);
    if (text.error().errors.empty()) r.fail("ciphertext", text.error().detail);
    return {};
  }
  return *text;
}

// --- conversations --------------------------------------------------------------------------

asio::awaitable<Response> create(Svc svc, const Options* opts, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"type", "member_ids", "title", "encrypted", "open"});
  CreateInput in;
  in.type = r.required_string("type", 1, 16);
  in.member_ids = r.optional_strings("member_ids", static_cast<std::size_t>(opts->max_group_members), kMaxIdBytes)
                      .value_or(std::vector<std::string>{});
  if (!body.contains("member_ids")) r.fail("member_ids", "is required");
  in.title = r.optional_string("title", 0, kMaxTitle).value_or("");
  in.encrypted = r.optional_bool("encrypted").value_or(false);
  in.open = r.optional_bool("open").value_or(false);
  if (!r.ok()) co_return r.error();
  auto c = co_await svc->create(platform::principal(req), std::move(in));
  if (!c) co_return c.error();
  Response resp = Response::json(c->created ? 201 : 200, js::object{{"conversation", to_json(c->conversation)}});
  resp.header("Location", "/v1/conversations/" + c->conversation.id);
  co_return resp;
}

asio::awaitable<Response> list(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto page, platform::page_params(req));
  auto items = co_await svc->list(platform::principal(req), page.after, page.limit + 1);
  if (!items) co_return items.error();
  js::array out;
  std::optional<std::string> next;
  for (std::size_t i = 0; i < items->size(); ++i) {
    if (static_cast<int>(i) == page.limit) {
      const auto& last = (*items)[i - 1];
      next = std::to_string(last.last_activity_at) + "|" + last.id;
      break;
    }
    out.push_back(to_json((*items)[i]));
  }
  co_return platform::list_response(std::move(out), next);
}

asio::awaitable<Response> get(Svc svc, Request& req) {
  auto d = co_await svc->get(platform::principal(req), id_param(req));
  if (!d) co_return d.error();
  co_return Response::json(200, detail_json(*d));
}

asio::awaitable<Response> patch(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"title", "open"});
  auto title = r.optional_string("title", 0, kMaxTitle);
  auto open = r.optional_bool("open");
  if (!r.ok()) co_return r.error();
  auto d = co_await svc->update(platform::principal(req), id_param(req), std::move(title), open);
  if (!d) co_return d.error();
  co_return Response::json(200, js::object{{"conversation", detail_json(*d)}});
}

asio::awaitable<Response> add_members(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"user_ids", "user_id", "role"});
  auto ids = r.optional_strings("user_ids", kMaxIdsPerRequest, kMaxIdBytes).value_or(std::vector<std::string>{});
  if (auto one = r.optional_string("user_id", 1, kMaxIdBytes)) ids.push_back(*one);
  if (r.ok() && ids.empty()) r.fail("user_ids", "name at least one user");
  std::string role = r.optional_string("role", 1, 16).value_or(kMember);
  if (!r.ok()) co_return r.error();
  auto d = co_await svc->add_members(platform::principal(req), id_param(req), std::move(ids), std::move(role));
  if (!d) co_return d.error();
  co_return Response::json(200, js::object{{"conversation", detail_json(*d)}});
}

asio::awaitable<Response> remove_member(Svc svc, Request& req) {
  // DELETE /members/{user_id}, or DELETE /members with ?user_id= or {"user_id"} (leave: your own id).
  std::string user(req.param("user_id"));
  if (user.empty()) {
    if (auto q = req.query_param("user_id")) user = *q;
  }
  if (user.empty()) {
    HARMAR_CO_TRY(auto body, platform::json_body(req));
    json::Reader r(body);
    r.reject_unknown({"user_id"});
    user = r.required_string("user_id", 1, kMaxIdBytes);
    if (!r.ok()) co_return r.error();
  }
  auto st = co_await svc->remove_member(platform::principal(req), id_param(req), std::move(user));
  if (!st) co_return st.error();
  co_return Response::no_content();
}

asio::awaitable<Response> patch_member(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"role"});
  std::string role = r.required_string("role", 1, 16);
  if (!r.ok()) co_return r.error();
  auto m = co_await svc->set_role(platform::principal(req), id_param(req), id_param(req, "user_id"), std::move(role));
  if (!m) co_return m.error();
  co_return Response::json(200, js::object{{"member", to_json(*m)}});
}

// --- messages -------------------------------------------------------------------------------

asio::awaitable<Response> send(Svc svc, const Options* opts, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"body", "client_msg_id", "ciphertext", "attachment_id"});
  SendInput in;
  in.body = r.optional_string("body", 0, static_cast<std::size_t>(opts->max_message_bytes)).value_or("");
  in.client_msg_id = r.required_string("client_msg_id", 1, kMaxClientMsgId);
  in.ciphertext = read_ciphertext(r, body, opts->max_ciphertext_bytes);
  in.attachment_id = r.optional_string("attachment_id", 1, kMaxIdBytes);
  if (!r.ok()) co_return r.error();
  auto sent = co_await svc->send(platform::principal(req), id_param(req), std::move(in));
  if (!sent) co_return sent.error();
  // A retry with the same client_msg_id answers the first message, the same way.
  Response resp = Response::json(201, js::object{{"message", to_json(sent->message)}});
  if (sent->replayed) resp.header("Idempotent-Replayed", "true");
  co_return resp;
}

asio::awaitable<Response> history(Svc svc, Request& req) {
  HARMAR_CO_TRY(int64_t limit, int_param(req, "limit", 50, 1, 200));
  HARMAR_CO_TRY(int64_t before, int_param(req, "before_seq", 0, 0, INT64_MAX));
  HARMAR_CO_TRY(int64_t after, int_param(req, "after_seq", 0, 0, INT64_MAX));
  if (auto c = req.query_param("cursor"); c && !c->empty()) {
    // Our cursors say which way the previous page went: "b{seq}" back, "a{seq}" forward.
    auto pos = platform::decode_cursor(*c);
    int64_t seq = 0;
    bool ok = pos && pos->size() > 1 && (pos->front() == 'a' || pos->front() == 'b') &&
              std::from_chars(pos->data() + 1, pos->data() + pos->size(), seq).ec == std::errc();
    if (!ok) co_return Error::validation("cursor is not one this server issued", {{"cursor", "is invalid"}});
    (pos->front() == 'a' ? after : before) = seq;
  }
  auto items = co_await svc->history(platform::principal(req), id_param(req), before, after, static_cast<int>(limit));
  if (!items) co_return items.error();
  js::array out;
  for (const auto& m : *items) out.push_back(to_json(m));
  std::optional<std::string> next;
  if (static_cast<int64_t>(items->size()) == limit) {
    next = after > 0 ? "a" + std::to_string(items->back().seq) : "b" + std::to_string(items->front().seq);
  }
  co_return platform::list_response(std::move(out), next);
}

asio::awaitable<Response> edit(Svc svc, const Options* opts, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"body", "ciphertext"});
  std::string text = r.optional_string("body", 0, static_cast<std::size_t>(opts->max_message_bytes)).value_or("");
  std::string ciphertext = read_ciphertext(r, body, opts->max_ciphertext_bytes);
  if (!r.ok()) co_return r.error();
  auto m = co_await svc->edit(platform::principal(req), id_param(req), id_param(req, "message_id"), std::move(text),
                              std::move(ciphertext));
  if (!m) co_return m.error();
  co_return Response::json(200, js::object{{"message", to_json(*m)}});
}

asio::awaitable<Response> recall(Svc svc, Request& req) {
  auto st = co_await svc->recall(platform::principal(req), id_param(req), id_param(req, "message_id"));
  if (!st) co_return st.error();
  co_return Response::no_content();
}

asio::awaitable<Response> read(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"seq"});
  auto seq = r.optional_int("seq", 0, INT64_MAX);
  if (r.ok() && !seq) r.fail("seq", "is required");
  if (!r.ok()) co_return r.error();
  auto st = co_await svc->mark_read(platform::principal(req), id_param(req), *seq);
  if (!st) co_return st.error();
  co_return Response::json(200, js::object{{"conversation_id", st->conversation_id},
                                           {"read_seq", st->read_seq},
                                           {"unread_count", st->unread_count}});
}

asio::awaitable<Response> typing(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"typing"});
  bool on = r.optional_bool("typing").value_or(true);
  if (!r.ok()) co_return r.error();
  auto st = co_await svc->typing(platform::principal(req), id_param(req), on);
  if (!st) co_return st.error();
  co_return Response::no_content();
}

// --- sync -----------------------------------------------------------------------------------

asio::awaitable<Response> sync(Svc svc, Request& req) {
  HARMAR_CO_TRY(int64_t since, int_param(req, "since", 0, 0, INT64_MAX));
  HARMAR_CO_TRY(int64_t limit, int_param(req, "limit", 100, 1, 1000));
  auto page = co_await svc->sync(platform::principal(req), since, static_cast<int>(limit));
  if (!page) co_return page.error();
  js::array items;
  for (const auto& e : page->events) items.push_back(to_json(e));
  js::object o{{"items", std::move(items)},
               {"since", page->since},
               {"next_since", page->next_since},
               {"head", page->head},
               {"has_more", page->has_more},
               {"history_gone", page->history_gone}};
  co_return Response::json(200, o);
}

// --- attachments ----------------------------------------------------------------------------

// A file name as given, reduced to what is safe in a header: no path, no quotes or controls.
std::string safe_name(std::string_view name) {
  auto slash = name.find_last_of("/\\");
  if (slash != std::string_view::npos) name.remove_prefix(slash + 1);
  std::string out;
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == 0x7f) continue;
    out += c;
    if (out.size() >= 200) break;
  }
  return out.empty() ? "attachment" : out;
}

asio::awaitable<Response> upload(Svc svc, Request& req) {
  std::string name = safe_name(req.query_param("name").value_or("attachment"));
  std::string type(req.header("Content-Type"));
  if (type.empty()) type = "application/octet-stream";
  auto a = co_await svc->upload(platform::principal(req), id_param(req), std::move(name), std::move(type),
                                std::move(req.body));
  if (!a) co_return a.error();
  Response resp = Response::json(201, js::object{{"attachment", to_json(*a)}});
  resp.header("Location", "/v1/conversations/" + a->conversation_id + "/attachments/" + a->id);
  co_return resp;
}

asio::awaitable<Response> download(Svc svc, Request& req) {
  auto got = co_await svc->download(platform::principal(req), id_param(req), id_param(req, "attachment_id"));
  if (!got) co_return got.error();
  auto& [a, bytes] = *got;
  Response resp(200, std::move(bytes), nullptr);
  resp.header("Content-Type", a.content_type);
  resp.header("Content-Disposition", "attachment; filename=\"" + a.name + "\"");
  resp.header("X-Content-Type-Options", "nosniff");
  resp.header("Cache-Control", "private, max-age=31536000, immutable");
  co_return resp;
}

// --- keys and presence ----------------------------------------------------------------------

js::array keys_json(const std::vector<DeviceKey>& keys) {
  js::array out;
  for (const auto& k : keys) out.push_back(to_json(k));
  return out;
}

asio::awaitable<Response> put_key(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"public_key"});
  std::string key = r.required_string("public_key", 1, 128);
  if (!r.ok()) co_return r.error();
  auto k = co_await svc->put_key(platform::principal(req), id_param(req, "device_id"), std::move(key));
  if (!k) co_return k.error();
  co_return Response::json(200, js::object{{"key", to_json(*k)}});
}

asio::awaitable<Response> list_keys(Svc svc, Request& req) {
  auto keys = co_await svc->keys(platform::principal(req), req.query_param("user_id"));
  if (!keys) co_return keys.error();
  co_return platform::list_response(keys_json(*keys), std::nullopt);
}

asio::awaitable<Response> delete_key(Svc svc, Request& req) {
  auto st = co_await svc->delete_key(platform::principal(req), id_param(req, "device_id"));
  if (!st) co_return st.error();
  co_return Response::no_content();
}

asio::awaitable<Response> conversation_keys(Svc svc, Request& req) {
  auto keys = co_await svc->conversation_keys(platform::principal(req), id_param(req));
  if (!keys) co_return keys.error();
  co_return platform::list_response(keys_json(*keys), std::nullopt);
}

asio::awaitable<Response> presence(Svc svc, Request& req) {
  std::vector<std::string> ids;
  std::string all = req.query_param("user_ids").value_or("");
  std::size_t start = 0;
  while (start <= all.size() && !all.empty()) {
    auto comma = all.find(',', start);
    std::string one = all.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!one.empty()) ids.push_back(std::move(one));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (ids.empty() || ids.size() > kMaxIdsPerRequest)
    co_return Error::validation("user_ids is a comma-separated list of 1 to 100 user ids",
                                {{"user_ids", "must name 1 to 100 users"}});
  auto items = co_await svc->presence(platform::principal(req), std::move(ids));
  if (!items) co_return items.error();
  js::array out;
  for (const auto& p : *items) {
    js::object o{{"user_id", p.user_id}, {"online", p.online}};
    o["last_seen_at"] = p.last_seen_at ? js::value(format_rfc3339(*p.last_seen_at)) : js::value(nullptr);
    out.push_back(std::move(o));
  }
  co_return platform::list_response(std::move(out), std::nullopt);
}

}  // namespace

void install_routes(net::Router& router, platform::Services& services, std::shared_ptr<Service> svc,
                    std::shared_ptr<const Options> opts) {
  using net::Auth;
  auto idem = platform::idempotent(services);
  const Options* o = opts.get();
  auto keep = [opts](auto f) { return [opts, f](Request& r) { return f(r); }; };
  router.post("/v1/conversations", keep([svc, o](Request& r) { return create(svc, o, r); }),
              {.auth = Auth::User, .middleware = {idem}});
  router.get("/v1/conversations", [svc](Request& r) { return list(svc, r); }, {.auth = Auth::User});
  router.get("/v1/conversations/{id}", [svc](Request& r) { return get(svc, r); }, {.auth = Auth::User});
  router.patch("/v1/conversations/{id}", [svc](Request& r) { return patch(svc, r); }, {.auth = Auth::User});
  router.post("/v1/conversations/{id}/members", [svc](Request& r) { return add_members(svc, r); }, {.auth = Auth::User});
  router.del("/v1/conversations/{id}/members", [svc](Request& r) { return remove_member(svc, r); }, {.auth = Auth::User});
  router.del("/v1/conversations/{id}/members/{user_id}", [svc](Request& r) { return remove_member(svc, r); },
             {.auth = Auth::User});
  router.patch("/v1/conversations/{id}/members/{user_id}", [svc](Request& r) { return patch_member(svc, r); },
               {.auth = Auth::User});
  router.post("/v1/conversations/{id}/messages", keep([svc, o](Request& r) { return send(svc, o, r); }),
              {.auth = Auth::User, .middleware = {idem}});
  router.get("/v1/conversations/{id}/messages", [svc](Request& r) { return history(svc, r); }, {.auth = Auth::User});
  router.patch("/v1/conversations/{id}/messages/{message_id}", keep([svc, o](Request& r) { return edit(svc, o, r); }),
               {.auth = Auth::User});
  router.del("/v1/conversations/{id}/messages/{message_id}", [svc](Request& r) { return recall(svc, r); },
             {.auth = Auth::User});
  router.post("/v1/conversations/{id}/read", [svc](Request& r) { return read(svc, r); }, {.auth = Auth::User});
  router.post("/v1/conversations/{id}/typing", [svc](Request& r) { return typing(svc, r); }, {.auth = Auth::User});
  router.post("/v1/conversations/{id}/attachments", [svc](Request& r) { return upload(svc, r); },
              {.auth = Auth::User, .body_limit = opts->attachment_max_bytes, .middleware = {idem}});
  router.get("/v1/conversations/{id}/attachments/{attachment_id}", [svc](Request& r) { return download(svc, r); },
             {.auth = Auth::User});
  router.get("/v1/conversations/{id}/keys", [svc](Request& r) { return conversation_keys(svc, r); }, {.auth = Auth::User});
  router.get("/v1/sync", [svc](Request& r) { return sync(svc, r); }, {.auth = Auth::User});
  router.get("/v1/presence", [svc](Request& r) { return presence(svc, r); }, {.auth = Auth::User});
  router.put("/v1/im/keys/{device_id}", [svc](Request& r) { return put_key(svc, r); }, {.auth = Auth::User});
  router.get("/v1/im/keys", [svc](Request& r) { return list_keys(svc, r); }, {.auth = Auth::User});
  router.del("/v1/im/keys/{device_id}", [svc](Request& r) { return delete_key(svc, r); }, {.auth = Auth::User});
}

}  // namespace harmar::im
