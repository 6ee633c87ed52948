#include "realtime/hub.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/json.hpp>

#include <charconv>

#include "core/clock.hpp"
#include "core/log.hpp"

namespace harmar::realtime {

std::string user_channel(std::string_view user_id, std::string_view name) {
  std::string k = "u/";
  k += user_id;
  k += '/';
  k += name;
  return k;
}

namespace detail {

namespace js = boost::json;
using boost::system::error_code;

namespace {

metrics::Counter& published_counter() {
  static auto& c = metrics::registry().counter("harmar_realtime_events_published_total", "Events appended to channel histories.");
  return c;
}
metrics::Counter& delivered_counter() {
  static auto& c = metrics::registry().counter("harmar_realtime_frames_sent_total", "Event frames queued to WebSocket clients.");
  return c;
}
metrics::Gauge& sockets_gauge() {
  static auto& g = metrics::registry().gauge("harmar_realtime_sockets", "Open realtime WebSocket sessions.");
  return g;
}

}  // namespace

std::string make_frame(std::string_view client_channel, int64_t seq, std::string_view type, std::string_view data_json,
                       int64_t at_ms) {
  std::string f;
  f.reserve(64 + client_channel.size() + type.size() + data_json.size());
  f += "{\"type\":";
  f += js::serialize(js::string(type));
  f += ",\"channel\":";
  f += js::serialize(js::string(client_channel));
  f += ",\"seq\":";
  f += std::to_string(seq);
  f += ",\"data\":";
  f += data_json.empty() ? std::string_view("{}") : data_json;
  f += ",\"ts\":\"";
  f += format_rfc3339(at_ms);
  f += "\"}";
  return f;
}

std::string make_ephemeral_frame(std::string_view client_channel, std::string_view type, std::string_view data_json,
                                 int64_t at_ms) {
  std::string f;
  f.reserve(64 + client_channel.size() + type.size() + data_json.size());
  f += "{\"type\":";
  f += js::serialize(js::string(type));
  f += ",\"channel\":";
  f += js::serialize(js::string(client_channel));
  f += ",\"data\":";
  f += data_json.empty() ? std::string_view("{}") : data_json;
  f += ",\"ts\":\"";
  f += format_rfc3339(at_ms);
  f += "\"}";
  return f;
}

std::string client_name(std::string_view key) {
  if (key.size() > 2 && key.substr(0, 2) == "u/") {
    auto slash = key.find('/', 2);
    if (slash != std::string_view::npos) return std::string(key.substr(slash + 1));
  }
  return std::string(key);
}

std::string wire(int64_t seq, const std::string& frame) { return std::to_string(seq) + "\n" + frame; }

// --- Appender -----------------------------------------------------------------------------

struct Appender::Pending {
  Pending(asio::any_io_executor ex, NewEvent e) : ex(std::move(ex)), done_signal(this->ex), event(std::move(e)) {
    done_signal.expires_at(asio::steady_timer::time_point::max());
  }
  asio::any_io_executor ex;
  asio::steady_timer done_signal;  // on the publisher's executor
  NewEvent event;
  bool done = false;
  Result<int64_t> result = Error::unavailable("not appended yet");
};

Appender::Appender(store::Database& db, store::PubSub& pubsub, asio::io_context& background, std::size_t max_queue)
    : history_(db), pubsub_(pubsub), background_(background), max_queue_(max_queue), wake_(background) {
  wake_.expires_at(asio::steady_timer::time_point::max());
}

void Appender::start() { asio::co_spawn(background_, run(), asio::detached); }

void Appender::stop() {
  asio::post(background_, [self = shared_from_this()] {
    {
      std::lock_guard lock(self->mu_);
      self->stopped_ = true;
    }
    self->wake_.cancel();
  });
}

asio::awaitable<Result<int64_t>> Appender::publish(std::string channel, std::string type, js::object data) {
  auto ex = co_await asio::this_coro::executor;
  auto p = std::make_shared<Pending>(ex, NewEvent{std::move(channel), std::move(type), js::serialize(data), now_ms()});
  {
    std::lock_guard lock(mu_);
    if (stopped_) co_return Error::unavailable("the realtime service is stopping");
    if (queue_.size() >= max_queue_) co_return Error::unavailable("too many realtime events are waiting to be stored");
    queue_.push_back(p);
  }
  asio::post(background_, [self = shared_from_this()] { self->wake_.cancel(); });
  while (!p->done) {
    error_code ignored;
    co_await p->done_signal.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  co_return std::move(p->result);
}

asio::awaitable<Status> Appender::publish_ephemeral(std::string channel, std::string type, js::object data) {
  {
    std::lock_guard lock(mu_);
    if (stopped_) co_return Error::unavailable("the realtime service is stopping");
  }
  std::string frame = make_ephemeral_frame(client_name(channel), type, js::serialize(data), now_ms());
  co_return co_await pubsub_.publish("rt:" + channel, wire(0, frame));
}

asio::awaitable<void> Appender::run() {
  auto log = log::get("realtime");
  for (;;) {
    std::vector<std::shared_ptr<Pending>> batch;
    bool stopping;
    {
      std::lock_guard lock(mu_);
      while (!queue_.empty() && batch.size() < 256) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stopping = stopped_;
    }
    if (batch.empty()) {
      if (stopping) co_return;
      error_code ignored;
      co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
      wake_.expires_at(asio::steady_timer::time_point::max());
      continue;
    }
    std::vector<NewEvent> events;
    events.reserve(batch.size());
    for (auto& p : batch) events.push_back(p->event);
    auto seqs = co_await history_.append(events);
    // A busy database (lock timeout, a serialization failure) is worth a few more tries: dropping
    // the batch would lose its events for every live client.
    for (int attempt = 1; !seqs.ok() && seqs.error().status == 503 && attempt < 4; ++attempt) {
      asio::steady_timer backoff(background_, std::chrono::milliseconds(20 * attempt));
      error_code ignored;
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
      seqs = co_await history_.append(events);
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto& p = batch[i];
      if (seqs.ok()) {
        p->result = (*seqs)[i];
      } else {
        p->result = seqs.error();
      }
    }
    // Fan out in append order, then let the publishers go on.
    if (seqs.ok()) {
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const NewEvent& e = batch[i]->event;
        std::string frame = make_frame(client_name(e.channel), (*seqs)[i], e.type, e.data, e.at_ms);
        auto sent = co_await pubsub_.publish("rt:" + e.channel, wire((*seqs)[i], frame));
        if (!sent.ok())
          log->warn(log::fields({{"msg", "event stored but not fanned out; clients get it on resync"},
                                 {"channel", e.channel}, {"error", sent.error().detail}}));
      }
      published_counter().inc(batch.size());
    } else {
      log->error(log::fields({{"msg", "events not stored"}, {"error", seqs.error().detail}}));
    }
    for (auto& p : batch) {
      asio::post(p->ex, [p] {
        p->done = true;
        p->done_signal.cancel();
      });
    }
  }
}

// --- ChannelRules -------------------------------------------------------------------------

void ChannelRules::add_rule(std::string prefix, ChannelRule rule) {
  std::lock_guard lock(mu_);
  rules_.emplace_back(std::move(prefix), std::move(rule));
}

const ChannelRule* ChannelRules::find(std::string_view name) const {
  std::lock_guard lock(mu_);
  for (const auto& [prefix, rule] : rules_)
    if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0) return &rule;
  return nullptr;
}

// --- ConnectionCounter --------------------------------------------------------------------

void ConnectionCounter::watch(Watcher w) {
  std::lock_guard lock(mu_);
  watchers_.push_back(std::make_shared<Watcher>(std::move(w)));
}

std::vector<std::string> ConnectionCounter::online_users() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  out.reserve(open_.size());
  for (const auto& [user, n] : open_) out.push_back(user);
  return out;
}

void ConnectionCounter::opened(const std::string& user_id) {
  std::lock_guard lock(mu_);
  if (++open_[user_id] == 1) tell(user_id, true);
}

void ConnectionCounter::closed(const std::string& user_id) {
  std::lock_guard lock(mu_);
  auto it = open_.find(user_id);
  if (it == open_.end()) return;
  if (--it->second > 0) return;
  open_.erase(it);
  tell(user_id, false);
}

void ConnectionCounter::tell(const std::string& user_id, bool online) {
  for (const auto& w : watchers_) asio::post(background_, [w, user_id, online] { (*w)(user_id, online); });
}

// --- LiveEvent ----------------------------------------------------------------------------

const js::object* LiveEvent::data() const {
  if (!parsed_) {
    parsed_ = true;
    boost::system::error_code ec;
    value_ = js::parse(frame, ec);
    if (ec) value_ = nullptr;
  }
  const js::value* d = value_.is_object() ? value_.as_object().if_contains("data") : nullptr;
  return d && d->is_object() ? &d->as_object() : nullptr;
}

const net::WebSocket::Frame& LiveEvent::ws_frame() const {
  if (!ws_frame_) ws_frame_ = net::WebSocket::text_frame(frame);
  return ws_frame_;
}

// --- Hub ----------------------------------------------------------------------------------

void Hub::join(const std::string& key, Session* s, Subscription* sub) {
  auto& e = entries_[key];
  e.members.push_back({s, sub});
  if (!e.sub) {
    e.sub = pubsub_.subscribe("rt:" + key, ex_, [this, key](std::string_view, std::string_view payload) {
      on_message(key, payload);
    });
  }
}

void Hub::leave(const std::string& key, Session* s) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  auto& m = it->second.members;
  m.erase(std::remove_if(m.begin(), m.end(), [s](const Member& x) { return x.session == s; }), m.end());
  if (m.empty()) entries_.erase(it);  // drops the PubSub subscription
}

void Hub::on_message(const std::string& key, std::string_view payload) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  auto nl = payload.find('\n');
  int64_t seq = 0;
  if (nl == std::string_view::npos ||
      std::from_chars(payload.data(), payload.data() + nl, seq).ec != std::errc())
    return;
  LiveEvent event(seq, payload.substr(nl + 1));
  // Copy: a session may leave (and shrink the list) while being delivered to.
  auto members = it->second.members;
  std::size_t sent = 0;
  for (const Member& m : members) sent += m.session->deliver(key, *m.sub, event);
  delivered_counter().inc(sent);  // once per event: the counter is shared by every worker
}

Hub& Hubs::for_executor(const asio::any_io_executor& ex) {
  const void* ctx = &asio::query(ex, asio::execution::context);
  std::lock_guard lock(mu_);
  auto& h = hubs_[ctx];
  if (!h) h = std::make_unique<Hub>(pubsub_, ex);
  return *h;
}

// --- Session ------------------------------------------------------------------------------

Session::Session(net::WebSocket& ws, Principal who, Hub& hub, History& history, const ChannelRules& rules, Limits limits)
    : ws_(ws), who_(std::move(who)), hub_(hub), history_(history), rules_(rules), limits_(limits),
      tokens_(limits.ops_per_second * 2.0) {
  sockets_gauge().add(1);
}

Session::~Session() {
  close();
  sockets_gauge().add(-1);
}

void Session::close() {
  alive_ = false;
  for (auto& [key, sub] : subs_) hub_.leave(key, this);
  subs_.clear();
}

void Session::send_error(std::string_view code, std::string_view detail, std::string_view channel) {
  if (!alive_) return;
  js::object o{{"type", "error"}, {"code", code}, {"detail", detail}};
  if (!channel.empty()) o["channel"] = channel;
  ws_.send(js::serialize(o));
}

bool Session::passes(const Sub& sub, std::string_view frame, const js::object* data) const {
  if (!sub.filter) return true;
  if (data) return sub.filter(*data);
  boost::system::error_code ec;
  js::value v = js::parse(frame, ec);
  const js::value* d = ec || !v.is_object() ? nullptr : v.as_object().if_contains("data");
  return d && d->is_object() && sub.filter(d->as_object());
}

void Session::send_event(Sub& sub, int64_t seq, std::string_view frame, const js::object* data) {
  sub.last = seq;
  if (!alive_) return;
  if (!passes(sub, frame, data)) return;
  delivered_counter().inc();
  ws_.send(std::string(frame));
}

bool Session::deliver(const std::string& key, Sub& sub, const LiveEvent& event) {
  if (!alive_) return false;
  std::string_view frame = event.frame;
  int64_t seq = event.seq;
  if (seq == 0) {
    // Ephemeral: no place in the sequence, nothing to hold or replay.
    if (sub.filter && !passes(sub, frame, event.data())) return false;
    return ws_.send_frame(event.ws_frame());
  }
  if (seq <= sub.last) return false;  // already sent (replayed, or a duplicate)
  if (sub.syncing || seq != sub.last + 1) {
    // Hold it; a gap means events this node has not seen live yet: the history has them.
    sub.held.emplace(seq, std::string(frame));
    // Events are stored before they are fanned out, so what is dropped here is read back from the
    // history: holding stays bounded for a client that catches up slowly.
    while (sub.held.size() > static_cast<std::size_t>(2 * limits_.replay_page)) sub.held.erase(sub.held.begin());
    if (!sub.syncing) {
      sub.syncing = true;
      asio::co_spawn(ws_.executor(), [self = shared_from_this(), key]() -> asio::awaitable<void> {
        co_await self->catch_up(key);
      }, asio::detached);
    }
    return false;
  }
  sub.last = seq;
  if (sub.filter && !passes(sub, frame, event.data())) return false;
  return ws_.send_frame(event.ws_frame());
}

asio::awaitable<bool> Session::wait_for_room() {
  asio::steady_timer pause(ws_.executor());
  while (alive_ && ws_.is_open() && ws_.queued_bytes() > limits_.replay_pause_bytes) {
    pause.expires_after(std::chrono::milliseconds(2));
    error_code ignored;
    co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  co_return alive_ && ws_.is_open();
}

asio::awaitable<void> Session::catch_up(std::string key) {
  for (;;) {
    if (!alive_) co_return;
    auto it = subs_.find(key);
    if (it == subs_.end() || !ws_.is_open()) co_return;
    int64_t from = it->second.last;
    auto events = co_await history_.read(key, from, 0, limits_.replay_page);
    if (!alive_) co_return;
    it = subs_.find(key);  // the client may have unsubscribed meanwhile
    if (it == subs_.end()) co_return;
    Sub& sub = it->second;
    if (!events.ok()) {
      send_error("unavailable", "history is unavailable; resubscribe with since to resume", sub.client);
      sub.syncing = false;
      co_return;
    }
    Sub* current = &sub;
    for (const auto& e : *events) {
      if (e.seq <= current->last) continue;
      if (ws_.queued_bytes() > limits_.replay_pause_bytes) {
        bool open = co_await wait_for_room();
        if (!open) co_return;
        it = subs_.find(key);  // the client may have unsubscribed meanwhile
        if (it == subs_.end()) co_return;
        current = &it->second;
        if (e.seq <= current->last) continue;
      }
      send_event(*current, e.seq, make_frame(current->client, e.seq, e.type, e.data, e.at_ms));
    }
    Sub& sub_now = *current;
    // Then whatever arrived live meanwhile, as long as it continues the sequence.
    while (!sub_now.held.empty() && sub_now.held.begin()->first <= sub_now.last + 1) {
      auto h = sub_now.held.begin();
      if (h->first == sub_now.last + 1) send_event(sub_now, h->first, h->second);
      sub_now.held.erase(h);
    }
    bool page_full = static_cast<int>(events->size()) >= limits_.replay_page;
    if (!page_full && sub_now.held.empty()) {
      sub_now.syncing = false;
      co_return;
    }
    if (!page_full && events->empty()) {
      // Held events beyond a gap the history does not have (yet): deliver them rather than wait.
      auto h = sub_now.held.begin();
      send_event(sub_now, h->first, h->second);
      sub_now.held.erase(h);
    }
  }
}

std::optional<std::string> Session::key_for(std::string_view channel) const {
  if (channel == "devices" || channel == "tasks" || channel == "user") return user_channel(who_.user_id, channel);
  return std::nullopt;
}

asio::awaitable<void> Session::subscribe(std::string channel, std::optional<int64_t> since) {
  if (channel.empty() || channel.size() > 200) {
    send_error("validation_failed", "channel must be 1 to 200 characters");
    co_return;
  }
  std::string key;
  std::function<bool(const js::object&)> filter;
  if (auto own = key_for(channel)) {
    if (who_.kind == Principal::Kind::Device) {
      send_error("forbidden", "devices cannot subscribe to user channels", channel);
      co_return;
    }
    key = *own;
  } else if (const ChannelRule* rule = rules_.find(channel)) {
    Access access = co_await (*rule)(who_, channel);
    if (!alive_) co_return;
    if (!access.allowed) {
      send_error("forbidden", "you may not subscribe to this channel", channel);
      co_return;
    }
    key = channel;
    filter = std::move(access.filter);
  } else {
    send_error("not_found", "no such channel", channel);
    co_return;
  }
  if (!subs_.count(key) && subs_.size() >= limits_.max_subscriptions) {
    send_error("too_many_subscriptions", "at most " + std::to_string(limits_.max_subscriptions) + " channels per connection", channel);
    co_return;
  }
  auto bounds = co_await history_.bounds(key);
  if (!alive_) co_return;
  if (!bounds.ok()) {
    send_error("unavailable", "channel history is unavailable", channel);
    co_return;
  }
  bool fresh = !subs_.count(key);
  Sub& sub = subs_[key];
  sub.client = channel;
  sub.filter = std::move(filter);
  sub.syncing = true;
  if (fresh) hub_.join(key, this, &sub);
  int64_t start = bounds->head;
  if (since) {
    if (*since < 0) {
      send_error("validation_failed", "since must not be negative", channel);
      start = bounds->head;
    } else if (*since > bounds->head) {
      send_error("since_ahead", "this channel has only reached seq " + std::to_string(bounds->head), channel);
      start = bounds->head;
    } else {
      // What was trimmed away is said, never skipped silently.
      int64_t first_kept = bounds->oldest ? bounds->oldest : bounds->head + 1;
      if (*since + 1 < first_kept) {
        js::object o{{"type", "error"}, {"code", "history_gone"}, {"channel", channel},
                     {"detail", "events " + std::to_string(*since + 1) + " to " + std::to_string(first_kept - 1) +
                                    " are no longer kept"},
                     {"oldest_seq", first_kept}};
        ws_.send(js::serialize(o));
        start = first_kept - 1;
      } else {
        start = *since;
      }
    }
  }
  sub.last = start;
  co_await catch_up(key);
  if (!alive_) co_return;
  auto it = subs_.find(key);
  if (it != subs_.end())
    ws_.send(js::serialize(js::object{{"type", "subscribed"}, {"channel", channel}, {"seq", it->second.last}}));
}

void Session::unsubscribe(const std::string& channel) {
  std::string key = channel;
  if (auto own = key_for(channel)) key = *own;
  if (subs_.erase(key)) hub_.leave(key, this);
  ws_.send(js::serialize(js::object{{"type", "unsubscribed"}, {"channel", channel}}));
}

asio::awaitable<void> Session::handle(std::string_view text) {
  boost::system::error_code ec;
  js::parse_options opt;
  opt.max_depth = 8;
  js::value v = js::parse(text, ec, {}, opt);
  if (ec || !v.is_object()) {
    send_error("invalid_json", "frames are JSON objects");
    co_return;
  }
  const js::object& o = v.as_object();
  const js::value* op = o.if_contains("op");
  if (!op || !op->is_string()) {
    send_error("validation_failed", "a frame needs an \"op\"");
    co_return;
  }
  std::string_view name = op->get_string();
  if (name == "ping") {
    ws_.send(R"({"type":"pong"})");
    co_return;
  }
  const js::value* ch = o.if_contains("channel");
  if (!ch || !ch->is_string()) {
    send_error("validation_failed", "\"channel\" must be a string");
    co_return;
  }
  std::string channel(ch->get_string());
  if (name == "subscribe") {
    std::optional<int64_t> since;
    if (const js::value* s = o.if_contains("since"); s && !s->is_null()) {
      if (s->is_int64()) {
        since = s->get_int64();
      } else if (s->is_uint64()) {
        since = static_cast<int64_t>(std::min<uint64_t>(s->get_uint64(), INT64_MAX));
      } else {
        send_error("validation_failed", "\"since\" must be an integer", channel);
        co_return;
      }
    }
    co_await subscribe(std::move(channel), since);
  } else if (name == "unsubscribe") {
    unsubscribe(channel);
  } else {
    send_error("unknown_op", "op must be subscribe, unsubscribe or ping");
  }
}

asio::awaitable<void> Session::run() {
  for (;;) {
    auto msg = co_await ws_.receive();
    if (!msg) co_return;
    // A token bucket per connection: ops_per_second sustained, twice that in a burst.
    int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now().time_since_epoch()).count();
    if (refill_us_) tokens_ = std::min(2.0 * limits_.ops_per_second, tokens_ + (now - refill_us_) * limits_.ops_per_second / 1e6);
    refill_us_ = now;
    if (tokens_ < 1) {
      send_error("rate_limited", "too many frames; slow down");
      continue;
    }
    tokens_ -= 1;
    co_await handle(*msg);
  }
}

}  // namespace detail
}  // namespace harmar::realtime
