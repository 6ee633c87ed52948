#include "platform/events.hpp"

#include <boost/asio/post.hpp>
#include <boost/json.hpp>

#include "core/clock.hpp"
#include "core/log.hpp"

namespace harmar::platform {

namespace js = boost::json;

std::string DomainEvent::to_json() const {
  return js::serialize(js::object{{"type", type}, {"user_id", user_id}, {"subject", subject}, {"data", data}, {"at", at_ms}});
}

std::optional<DomainEvent> DomainEvent::from_json(std::string_view text) {
  boost::system::error_code ec;
  js::value v = js::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.as_object();
  DomainEvent e;
  auto str = [&](const char* k) -> std::string {
    const js::value* x = o.if_contains(k);
    return x && x->is_string() ? std::string(x->get_string()) : std::string();
  };
  e.type = str("type");
  e.user_id = str("user_id");
  e.subject = str("subject");
  if (const js::value* d = o.if_contains("data"); d && d->is_object()) e.data = d->get_object();
  if (const js::value* a = o.if_contains("at"); a && a->is_int64()) e.at_ms = a->get_int64();
  if (e.type.empty()) return std::nullopt;
  return e;
}

boost::asio::awaitable<void> EventBus::publish(DomainEvent e) {
  if (e.at_ms == 0) e.at_ms = now_ms();
  {
    std::lock_guard lock(mu_);
    for (const auto& l : local_) {
      if (e.type.compare(0, l.prefix.size(), l.prefix) != 0) continue;
      boost::asio::post(l.ex, [h = l.handler, e] { h(e); });
    }
  }
  auto st = co_await pubsub_.publish("events", e.to_json());
  if (!st.ok())
    log::get("events")->warn(log::fields({{"msg", "event not fanned out"}, {"type", e.type}, {"error", st.error().detail}}));
}

void EventBus::on_local(std::string type_prefix, boost::asio::any_io_executor ex, Handler h) {
  std::lock_guard lock(mu_);
  local_.push_back({std::move(type_prefix), std::move(ex), std::move(h)});
}

std::unique_ptr<store::Subscription> EventBus::subscribe(boost::asio::any_io_executor ex, Handler h) {
  return pubsub_.subscribe("events", std::move(ex), [h = std::move(h)](std::string_view, std::string_view payload) {
    if (auto e = DomainEvent::from_json(payload)) h(*e);
  });
}

}  // namespace harmar::platform
