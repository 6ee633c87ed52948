// Routes of the inbox (/v1/messages...) and webhooks (/v1/webhooks...): parse and validate, call
// the service, write the DTO.
#include <boost/json.hpp>

#include <algorithm>
#include <map>

#include "core/ids.hpp"
#include "core/json.hpp"
#include "notify/inbox.hpp"
#include "notify/notifications.hpp"
#include "notify/webhooks.hpp"
#include "platform/api.hpp"
#include "platform/idempotency.hpp"

namespace harmar::notify {

namespace js = boost::json;
using net::Request;
using net::Response;

namespace {

using InboxPtr = std::shared_ptr<Inbox>;
using HooksPtr = std::shared_ptr<Webhooks>;

// An id that is not a UUID is no message of anyone's: 404 without asking the database.
std::optional<std::string> id_param(const Request& req) {
  std::string id(req.param("id"));
  if (!is_uuid(id)) return std::nullopt;
  return id;
}

asio::awaitable<Response> list_messages(InboxPtr inbox, Request& req) {
  HARMAR_CO_TRY(auto page, platform::page_params(req));
  auto unread = req.query_param("unread");
  if (unread && *unread != "true" && *unread != "false")
    co_return Error::validation("unread must be true or false", {{"unread", "must be true or false"}});
  bool unread_only = unread && *unread == "true";
  auto got = co_await inbox->list(platform::principal(req), page.after, page.limit, unread_only);
  if (!got) co_return got.error();
  js::array items;
  std::optional<std::string> next;
  for (std::size_t i = 0; i < got->items.size(); ++i) {
    if (static_cast<int>(i) == page.limit) {
      next = platform::encode_cursor(got->items[i - 1].id);
      break;
    }
    items.push_back(got->items[i].to_json());
  }
  js::object out{{"items", std::move(items)}, {"next_cursor", next ? js::value(*next) : js::value(nullptr)},
                 {"unread_count", got->unread_count}};
  co_return Response::json(200, out);
}

asio::awaitable<Response> unread_count(InboxPtr inbox, Request& req) {
  auto n = co_await inbox->unread_count(platform::principal(req));
  if (!n) co_return n.error();
  co_return Response::json(200, js::object{{"unread_count", *n}});
}

asio::awaitable<Response> get_message(InboxPtr inbox, Request& req) {
  auto id = id_param(req);
  if (!id) co_return Error::not_found("no such message");
  auto m = co_await inbox->get(platform::principal(req), *id);
  if (!m) co_return m.error();
  co_return Response::json(200, m->to_json());
}

asio::awaitable<Response> read_message(InboxPtr inbox, Request& req) {
  auto id = id_param(req);
  if (!id) co_return Error::not_found("no such message");
  auto m = co_await inbox->mark_read(platform::principal(req), *id);
  if (!m) co_return m.error();
  co_return Response::json(200, m->to_json());
}

asio::awaitable<Response> read_all(InboxPtr inbox, Request& req) {
  auto n = co_await inbox->mark_all_read(platform::principal(req));
  if (!n) co_return n.error();
  co_return Response::json(200, js::object{{"marked", *n}, {"unread_count", 0}});
}

asio::awaitable<Response> delete_message(InboxPtr inbox, Request& req) {
  auto id = id_param(req);
  if (!id) co_return Error::not_found("no such message");
  auto st = co_await inbox->remove(platform::principal(req), *id);
  if (!st) co_return st.error();
  co_return Response::no_content();
}

asio::awaitable<Response> get_preferences(InboxPtr inbox, Request& req) {
  auto p = co_await inbox->preferences(platform::principal(req).user_id);
  if (!p) co_return p.error();
  co_return Response::json(200, preferences_json(*p));
}

asio::awaitable<Response> patch_preferences(InboxPtr inbox, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  std::vector<FieldError> errors;
  std::map<std::string, std::map<std::string, bool>> changes;
  const auto& kinds = default_preferences();
  for (const auto& [key, value] : body) {
    std::string kind(key);
    bool known = std::any_of(kinds.begin(), kinds.end(), [&](const auto& k) { return k.first == kind; });
    if (!known) {
      errors.push_back({kind.substr(0, 100), "is not a notification kind"});
      continue;
    }
    if (!value.is_object()) {
      errors.push_back({kind, "must be an object like {\"inbox\": true, \"email\": false}"});
      continue;
    }
    for (const auto& [ch, on] : value.get_object()) {
      std::string channel(ch);
      if (channel != "inbox" && channel != "email")
        errors.push_back({kind + "." + channel.substr(0, 100), "is not a channel (inbox, email)"});
      else if (!on.is_bool())
        errors.push_back({kind + "." + channel, "must be true or false"});
      else
        changes[kind][channel] = on.get_bool();
    }
  }
  if (!errors.empty()) co_return Error::validation("the preferences are not valid", std::move(errors));
  auto p = co_await inbox->update_preferences(platform::principal(req), std::move(changes));
  if (!p) co_return p.error();
  co_return Response::json(200, preferences_json(*p));
}

asio::awaitable<Response> announce(std::shared_ptr<Announcements> ann, std::function<void()> kick, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"title", "body", "data", "user_ids"});
  Announcement a;
  a.title = r.required_string("title", 1, 200);
  a.body = r.optional_string("body", 0, 10'000).value_or("");
  a.data = r.optional_object("data", 16 * 1024).value_or(js::object{});
  a.user_ids = r.optional_strings("user_ids", 1000, 64);
  if (a.user_ids) {
    if (a.user_ids->empty()) r.fail("user_ids", "must name at least one user (omit it to reach every user)");
    for (const auto& u : *a.user_ids)
      if (!is_uuid(u)) {
        r.fail("user_ids", "holds something that is not a user id: " + u.substr(0, 64));
        break;
      }
    std::sort(a.user_ids->begin(), a.user_ids->end());
    a.user_ids->erase(std::unique(a.user_ids->begin(), a.user_ids->end()), a.user_ids->end());
  }
  if (!r.ok()) co_return r.error();
  auto created = co_await ann->create(platform::principal(req), std::move(a));
  if (!created) co_return created.error();
  kick();
  co_return Response::json(202, js::object{{"announcement", created->to_json()}});
}

// ---- webhooks ------------------------------------------------------------------------------

Result<WebhookInput> webhook_input(const js::object& body, bool creating) {
  json::Reader r(body);
  r.reject_unknown({"url", "secret", "event_types", "description", "enabled"});
  WebhookInput in;
  if (creating) in.url = r.required_string("url", 1, 2048);
  else in.url = r.optional_string("url", 1, 2048);
  in.secret = r.optional_string("secret", 16, 256);
  in.event_types = r.optional_strings("event_types", 32, 64);
  in.description = r.optional_string("description", 0, 500);
  in.enabled = r.optional_bool("enabled");
  if (in.secret)
    for (unsigned char c : *in.secret)
      if (c < 0x21 || c > 0x7e) {
        r.fail("secret", "must be printable ASCII without spaces");
        break;
      }
  if (!r.ok()) return r.error();
  return in;
}

asio::awaitable<Response> create_webhook(HooksPtr hooks, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  HARMAR_CO_TRY(auto in, webhook_input(body, true));
  auto w = co_await hooks->create(platform::principal(req), std::move(in));
  if (!w) co_return w.error();
  js::object out = w->to_json();
  out["secret"] = w->secret;  // the only time it is shown
  Response resp = Response::json(201, js::object{{"webhook", std::move(out)}});
  resp.header("Location", "/v1/webhooks/" + w->id);
  co_return resp;
}

asio::awaitable<Response> list_webhooks(HooksPtr hooks, Request& req) {
  HARMAR_CO_TRY(auto page, platform::page_params(req));
  auto items = co_await hooks->list(platform::principal(req), page.after, page.limit + 1);
  if (!items) co_return items.error();
  co_return platform::page_response(*items, page.limit, [](const Webhook& w) { return w.to_json(); },
                                    [](const Webhook& w) { return w.id; });
}

asio::awaitable<Response> get_webhook(HooksPtr hooks, Request& req) {
  auto id = id_param(req);
  if (!id) co_return Error::not_found("no such webhook");
  auto w = co_await hooks->get(platform::principal(req), *id);
  if (!w) co_return w.error();
  co_return Response::json(200, js::object{{"webhook", w->to_json()}});
}

asio::awaitable<Response> patch_webhook(HooksPtr hooks, Request& req) {
  auto id = id_param(req);
  if (!id) co_return Error::not_found("no such webhook");
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  HARMAR_CO_TRY(auto in, webhook_input(body, false));
  auto w = co_await hooks->update(platform::principal(req), *id, std::move(in));
  if (!w) co_return w.error();
  co_return Response::json(200, js::object{{"webhook", w->to_json()}});
}

asio::awaitable<Response> delete_webhook(HooksPtr hooks, Request& req) {
  auto id = id_param(req);
  if (!id) co_return Error::not_found("no such webhook");
  auto st = co_await hooks->remove(platform::principal(req), *id);
  if (!st) co_return st.error();
  co_return Response::no_content();
}

asio::awaitable<Response> list_deliveries(HooksPtr hooks, Request& req) {
  auto id = id_param(req);
  if (!id) co_return Error::not_found("no such webhook");
  HARMAR_CO_TRY(auto page, platform::page_params(req));
  auto items = co_await hooks->deliveries(platform::principal(req), *id, page.after, page.limit + 1);
  if (!items) co_return items.error();
  co_return platform::page_response(*items, page.limit, [](const Delivery& d) { return d.to_json(); },
                                    [](const Delivery& d) { return d.id; });
}

asio::awaitable<Response> redeliver(HooksPtr hooks, Request& req) {
  auto id = id_param(req);
  std::string delivery_id(req.param("delivery_id"));
  if (!id || !is_uuid(delivery_id)) co_return Error::not_found("no such delivery");
  auto d = co_await hooks->redeliver(platform::principal(req), *id, delivery_id);
  if (!d) co_return d.error();
  co_return Response::json(202, js::object{{"delivery", d->to_json()}});
}

asio::awaitable<Response> ping_webhook(HooksPtr hooks, Request& req) {
  auto id = id_param(req);
  if (!id) co_return Error::not_found("no such webhook");
  auto d = co_await hooks->ping(platform::principal(req), *id);
  if (!d) co_return d.error();
  co_return Response::json(202, js::object{{"delivery", d->to_json()}});
}

}  // namespace

void install_notification_routes(net::Router& router, platform::Services& services, std::shared_ptr<Inbox> inbox,
                                 std::shared_ptr<Announcements> announcements, std::function<void()> kick_announcements,
                                 std::shared_ptr<Webhooks> hooks) {
  using net::Auth;
  const net::RouteOptions user{.auth = Auth::User};
  auto idem = platform::idempotent(services);
  router.get("/v1/messages", [inbox](Request& r) { return list_messages(inbox, r); }, user);
  router.get("/v1/messages/unread-count", [inbox](Request& r) { return unread_count(inbox, r); }, user);
  router.get("/v1/messages/preferences", [inbox](Request& r) { return get_preferences(inbox, r); }, user);
  router.patch("/v1/messages/preferences", [inbox](Request& r) { return patch_preferences(inbox, r); }, user);
  router.post("/v1/messages/read-all", [inbox](Request& r) { return read_all(inbox, r); }, user);
  router.post("/v1/messages/announcements",
              [announcements, kick_announcements](Request& r) { return announce(announcements, kick_announcements, r); },
              {.auth = Auth::User, .permission = "announcements.send", .middleware = {idem}});
  router.get("/v1/messages/{id}", [inbox](Request& r) { return get_message(inbox, r); }, user);
  router.post("/v1/messages/{id}/read", [inbox](Request& r) { return read_message(inbox, r); }, user);
  router.del("/v1/messages/{id}", [inbox](Request& r) { return delete_message(inbox, r); }, user);

  router.post("/v1/webhooks", [hooks](Request& r) { return create_webhook(hooks, r); },
              {.auth = Auth::User, .middleware = {idem}});
  router.get("/v1/webhooks", [hooks](Request& r) { return list_webhooks(hooks, r); }, user);
  router.get("/v1/webhooks/{id}", [hooks](Request& r) { return get_webhook(hooks, r); }, user);
  router.patch("/v1/webhooks/{id}", [hooks](Request& r) { return patch_webhook(hooks, r); }, user);
  router.del("/v1/webhooks/{id}", [hooks](Request& r) { return delete_webhook(hooks, r); }, user);
  router.get("/v1/webhooks/{id}/deliveries", [hooks](Request& r) { return list_deliveries(hooks, r); }, user);
  router.post("/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", [hooks](Request& r) { return redeliver(hooks, r); },
              user);
  router.post("/v1/webhooks/{id}/ping", [hooks](Request& r) { return ping_webhook(hooks, r); }, user);
}

}  // namespace harmar::notify
