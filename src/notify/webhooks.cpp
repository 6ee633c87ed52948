#include "notify/webhooks.hpp"

#include <arpa/inet.h>
#include <sodium.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "net/http_client.hpp"
#include "notify/webhooks_repo.hpp"

namespace harmar::notify {

namespace js = boost::json;

namespace {

auto logger() { return log::get("webhooks"); }

metrics::Counter& attempts_counter(const char* outcome) {
  return metrics::registry().counter("harmar_webhook_attempts_total",
                                     "Webhook delivery attempts by outcome (succeeded, retrying, failed).",
                                     {{"outcome", outcome}});
}

js::value opt_time(const std::optional<int64_t>& t) { return t ? js::value(format_rfc3339(*t)) : js::value(nullptr); }

bool wants(const Webhook& w, const std::string& type) {
  return std::any_of(w.event_types.begin(), w.event_types.end(), [&](const std::string& t) { return t == "*" || t == type; });
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool v4_public(const unsigned char* a) {
  auto in = [&](unsigned net, unsigned bits) {
    uint32_t ip = (uint32_t(a[0]) << 24) | (uint32_t(a[1]) << 16) | (uint32_t(a[2]) << 8) | a[3];
    uint32_t mask = bits == 0 ? 0 : ~uint32_t(0) << (32 - bits);
    return (ip & mask) == (net & mask);
  };
  return !(in(0x00000000, 8) ||    // "this network"
           in(0x0A000000, 8) ||    // 10/8
           in(0x64400000, 10) ||   // 100.64/10 CGNAT
           in(0x7F000000, 8) ||    // loopback
           in(0xA9FE0000, 16) ||   // link-local, cloud metadata
           in(0xAC100000, 12) ||   // 172.16/12
           in(0xC0000000, 24) ||   // 192.0.0/24 IETF
           in(0xC0A80000, 16) ||   // 192.168/16
           in(0xC6120000, 15) ||   // 198.18/15 benchmarking
           in(0xE0000000, 4) ||    // multicast
           in(0xF0000000, 4));     // reserved, broadcast
}

Webhook with_defaults(Webhook w, WebhookInput& in) {
  if (in.url) w.url = *in.url;
  if (in.secret) w.secret = *in.secret;
  if (in.event_types) w.event_types = *in.event_types;
  if (in.description) w.description = *in.description;
  if (in.enabled) w.enabled = *in.enabled;
  return w;
}

}  // namespace

js::object Webhook::to_json() const {
  js::array types;
  for (const auto& t : event_types) types.emplace_back(t);
  return js::object{{"id", id},
                    {"url", url},
                    {"event_types", std::move(types)},
                    {"description", description},
                    {"enabled", enabled},
                    {"created_at", format_rfc3339(created_at)},
                    {"updated_at", format_rfc3339(updated_at)}};
}

js::object Delivery::to_json() const {
  js::object o;
  o["id"] = id;
  o["webhook_id"] = webhook_id;
  o["event_id"] = event_id;
  o["event_type"] = event_type;
  o["status"] = status;
  o["attempts"] = attempts;
  o["max_attempts"] = max_attempts;
  o["next_attempt_at"] = status == "pending" ? js::value(format_rfc3339(next_attempt_at)) : js::value(nullptr);
  o["response_status"] = response_status ? js::value(*response_status) : js::value(nullptr);
  o["error"] = error ? js::value(*error) : js::value(nullptr);
  o["response_excerpt"] = response_excerpt ? js::value(*response_excerpt) : js::value(nullptr);
  o["duration_ms"] = duration_ms ? js::value(*duration_ms) : js::value(nullptr);
  o["created_at"] = format_rfc3339(created_at);
  o["last_attempt_at"] = opt_time(last_attempt_at);
  o["delivered_at"] = opt_time(delivered_at);
  return o;
}

const std::vector<std::string>& webhook_event_types() {
  static const std::vector<std::string> kTypes = {
      "task.created",   "task.updated",   "task.completed", "task.failed",    "device.created", "device.updated",
      "device.deleted", "device.online",  "device.offline", "message.new",    "webhook.ping",
  };
  return kTypes;
}

std::string webhook_signature(const std::string& secret, int64_t unix_s, const std::string& body) {
  std::string signed_text = std::to_string(unix_s) + "." + body;
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(secret.data()), secret.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(signed_text.data()), signed_text.size());
  crypto_auth_hmacsha256_final(&st, mac);
  char hex[crypto_auth_hmacsha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
  return "t=" + std::to_string(unix_s) + ",v1=" + hex;
}

bool is_public_address(const std::string& ip) {
  unsigned char a[16];
  if (inet_pton(AF_INET, ip.c_str(), a) == 1) return v4_public(a);
  if (inet_pton(AF_INET6, ip.c_str(), a) != 1) return false;
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a, kMapped, 12) == 0) return v4_public(a + 12);
  bool zero_prefix = std::all_of(a, a + 15, [](unsigned char c) { return c == 0; });
  if (zero_prefix && (a[15] == 0 || a[15] == 1)) return false;  // :: and ::1
  if ((a[0] & 0xfe) == 0xfc) return false;                      // fc00::/7 unique local
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return false;      // fe80::/10 link-local
  if (a[0] == 0xff) return false;                               // multicast
  if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b) return false;  // 64:ff9b::/96 NAT64
  return true;
}

Status check_webhook_url(const std::string& url, bool allow_private) {
  auto bad = [](std::string why) { return Error::validation("url " + why, {{"url", why}}); };
  if (url.size() > 2048) return bad("is longer than 2048 bytes");
  for (unsigned char c : url)
    if (c <= 0x20 || c >= 0x7f) return bad("holds a space, a control or a non-ASCII character (percent-encode it)");
  std::string l = lower(url);
  std::size_t rest;
  if (l.starts_with("https://")) rest = 8;
  else if (l.starts_with("http://")) rest = 7;
  else return bad("must start with http:// or https://");
  std::size_t end = l.find_first_of("/?#", rest);
  std::string authority = l.substr(rest, end == std::string::npos ? std::string::npos : end - rest);
  if (authority.find('@') != std::string::npos) return bad("must not hold credentials (user:password@)");
  std::string host = authority;
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    if (close == std::string::npos) return bad("has an unterminated IPv6 address");
    host = host.substr(1, close - 1);
  } else if (auto colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  if (host.empty()) return bad("has no host");
  if (allow_private) return Status{};
  unsigned char a[16];
  bool literal = inet_pton(AF_INET, host.c_str(), a) == 1 || inet_pton(AF_INET6, host.c_str(), a) == 1;
  if ((literal && !is_public_address(host)) || host == "localhost" || host.ends_with(".localhost"))
    return bad("points to a loopback, private or link-local address");
  return Status{};
}

// ---- CRUD ----------------------------------------------------------------------------------

namespace {

Status validate(const Webhook& w, bool allow_private) {
  std::vector<FieldError> errors;
  if (auto st = check_webhook_url(w.url, allow_private); !st) errors.push_back(st.error().errors.front());
  if (w.event_types.empty()) errors.push_back({"event_types", "needs at least one event type (or \"*\")"});
  for (const auto& t : w.event_types) {
    const auto& known = webhook_event_types();
    if (t != "*" && std::find(known.begin(), known.end(), t) == known.end())
      errors.push_back({"event_types", "unknown event type " + t});
  }
  if (!errors.empty()) return Error::validation("the webhook is not valid", std::move(errors));
  return Status{};
}

}  // namespace

asio::awaitable<Result<Webhook>> Webhooks::create(const Principal& who, WebhookInput in) {
  Webhook w;
  w.id = new_id();
  w.user_id = who.user_id;
  w.secret = "whsec_" + random_token(32);
  w.event_types = {"*"};
  w.created_at = w.updated_at = now_ms();
  w = with_defaults(std::move(w), in);
  if (auto st = validate(w, opts_.allow_private); !st) co_return std::move(st).error();
  auto n = co_await webhooks_repo::count(db_, who.user_id);
  if (!n) co_return std::move(n).error();
  if (*n >= opts_.max_per_user)
    co_return Error::conflict("at most " + std::to_string(opts_.max_per_user) + " webhooks per account", "too_many_webhooks");
  auto st = co_await webhooks_repo::insert(db_, w);
  if (!st) co_return std::move(st).error();
  co_return w;
}

asio::awaitable<Result<std::vector<Webhook>>> Webhooks::list(const Principal& who, std::optional<std::string> after, int limit) {
  co_return co_await webhooks_repo::list(db_, who.user_id, after, limit);
}

asio::awaitable<Result<Webhook>> Webhooks::get(const Principal& who, const std::string& id) {
  auto w = co_await webhooks_repo::find(db_, who.user_id, id);
  if (!w) co_return std::move(w).error();
  if (!*w || who.user_id.empty()) co_return Error::not_found("no such webhook");
  co_return std::move(**w);
}

asio::awaitable<Result<Webhook>> Webhooks::update(const Principal& who, const std::string& id, WebhookInput in) {
  auto cur = co_await get(who, id);
  if (!cur) co_return std::move(cur).error();
  Webhook w = with_defaults(std::move(*cur), in);
  w.updated_at = now_ms();
  if (auto st = validate(w, opts_.allow_private); !st) co_return std::move(st).error();
  auto st = co_await webhooks_repo::update(db_, w);
  if (!st) co_return std::move(st).error();
  co_return w;
}

asio::awaitable<Status> Webhooks::remove(const Principal& who, const std::string& id) {
  auto tx = co_await db_.begin();
  if (!tx) co_return std::move(tx).error();
  auto gone = co_await webhooks_repo::remove(**tx, who.user_id, id);
  if (!gone) co_return std::move(gone).error();
  if (!*gone) co_return Error::not_found("no such webhook");
  co_return co_await (*tx)->commit();
}

asio::awaitable<Result<std::vector<Delivery>>> Webhooks::deliveries(const Principal& who, const std::string& id,
                                                                   std::optional<std::string> after, int limit) {
  auto w = co_await get(who, id);
  if (!w) co_return std::move(w).error();
  co_return co_await webhooks_repo::deliveries(db_, id, after, limit);
}

asio::awaitable<Result<Delivery>> Webhooks::redeliver(const Principal& who, const std::string& id,
                                                      const std::string& delivery_id) {
  auto w = co_await get(who, id);
  if (!w) co_return std::move(w).error();
  auto d = co_await webhooks_repo::requeue(db_, id, delivery_id, now_ms());
  if (!d) co_return std::move(d).error();
  if (!*d) {
    // Either no such delivery of this webhook, or one still pending.
    auto found = co_await webhooks_repo::find_delivery(db_, id, delivery_id);
    if (!found) co_return std::move(found).error();
    if (*found) co_return Error::conflict("the delivery is still being tried", "delivery_pending");
    co_return Error::not_found("no such delivery");
  }
  kick();
  co_return std::move(**d);
}

asio::awaitable<Result<Delivery>> Webhooks::ping(const Principal& who, const std::string& id) {
  auto w = co_await get(who, id);
  if (!w) co_return std::move(w).error();
  int64_t now = now_ms();
  Delivery d;
  d.id = new_id();
  d.webhook_id = w->id;
  d.user_id = w->user_id;
  d.event_id = new_id();
  d.event_type = "webhook.ping";
  d.payload = js::serialize(js::object{{"id", d.event_id},
                                       {"type", d.event_type},
                                       {"created_at", format_rfc3339(now)},
                                       {"data", js::object{{"webhook_id", w->id}}}});
  d.status = "pending";
  d.max_attempts = opts_.max_attempts;
  d.next_attempt_at = now;
  d.created_at = now;
  auto ins = co_await webhooks_repo::insert_delivery(db_, d);
  if (!ins) co_return std::move(ins).error();
  kick();
  co_return d;
}

asio::awaitable<Result<int>> Webhooks::enqueue(std::string user_id, std::string event_id, std::string type,
                                               js::object data) {
  if (user_id.empty()) co_return 0;
  auto hooks = co_await webhooks_repo::enabled(db_, user_id);
  if (!hooks) co_return std::move(hooks).error();
  int64_t now = now_ms();
  std::string payload;
  int queued = 0;
  for (const auto& w : *hooks) {
    if (!wants(w, type)) continue;
    if (payload.empty())
      payload = js::serialize(
          js::object{{"id", event_id}, {"type", type}, {"created_at", format_rfc3339(now)}, {"data", data}});
    Delivery d;
    d.id = new_id();
    d.webhook_id = w.id;
    d.user_id = user_id;
    d.event_id = event_id;
    d.event_type = type;
    d.payload = payload;
    d.max_attempts = opts_.max_attempts;
    d.next_attempt_at = now;
    d.created_at = now;
    auto ins = co_await webhooks_repo::insert_delivery(db_, d);
    if (!ins) co_return std::move(ins).error();
    if (*ins) ++queued;
  }
  if (queued > 0) kick();
  co_return queued;
}

// ---- delivery ------------------------------------------------------------------------------

int64_t webhook_backoff_ms(const WebhookOptions& o, int64_t attempt) {
  int64_t d = o.retry_base_ms;
  for (int64_t i = 1; i < attempt && d < o.retry_max_ms; ++i) d *= 2;
  d = std::min(d, o.retry_max_ms);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  int64_t spread = d / 4;
  return d + (spread > 0 ? static_cast<int64_t>(rng() % static_cast<uint64_t>(spread + 1)) : 0);
}

asio::awaitable<void> Webhooks::attempt(Delivery d, Webhook w) {
  struct Done {
    std::atomic<int>& n;
    ~Done() { n.fetch_sub(1); }
  } done{in_flight_};
  int64_t started = now_ms();
  net::ClientRequest req;
  req.method = "POST";
  req.url = w.url;
  req.body = d.payload;
  req.timeout_ms = opts_.timeout_ms;
  req.connect_timeout_ms = std::min<int64_t>(opts_.timeout_ms, 5'000);
  req.max_response_bytes = 64 * 1024;
  req.headers = {{"Content-Type", "application/json"},
                 {"Harmar-Event", d.event_type},
                 {"Harmar-Delivery", d.id},
                 {"Harmar-Attempt", std::to_string(d.attempts)},
                 {"Harmar-Signature", webhook_signature(w.secret, started / 1000, d.payload)}};
  if (!opts_.allow_private) req.allow_address = [](const std::string& ip) { return is_public_address(ip); };
  auto resp = co_await net::http_fetch(std::move(req));
  int64_t now = now_ms();
  d.duration_ms = now - started;
  bool permanent = false;
  if (resp) {
    d.response_status = resp->status;
    d.response_excerpt = resp->body.substr(0, 1024);
    if (resp->status >= 200 && resp->status < 300) {
      d.status = "succeeded";
      d.delivered_at = now;
      d.error.reset();
    } else {
      d.error = "answered HTTP " + std::to_string(resp->status);
    }
  } else {
    d.response_status.reset();
    d.response_excerpt.reset();
    d.error = resp.error().code + ": " + resp.error().detail;
    permanent = resp.error().code == "destination_forbidden";
  }
  if (d.status != "succeeded") {
    if (permanent || d.attempts >= d.max_attempts) {
      d.status = "failed";
    } else {
      d.status = "pending";
      d.next_attempt_at = now + webhook_backoff_ms(opts_, d.attempts);
    }
  }
  static auto& succeeded = attempts_counter("succeeded");
  static auto& retrying = attempts_counter("retrying");
  static auto& failed = attempts_counter("failed");
  (d.status == "succeeded" ? succeeded : d.status == "failed" ? failed : retrying).inc();
  auto st = co_await webhooks_repo::finish_attempt(db_, d);
  if (!st)
    logger()->warn(log::fields({{"msg", "delivery outcome not recorded; retried after its lease"},
                                {"delivery_id", d.id},
                                {"error", st.error().detail}}));
  else if (d.status != "succeeded")
    logger()->info(log::fields({{"msg", d.status == "failed" ? "webhook delivery gave up" : "webhook delivery failed; retrying"},
                                {"delivery_id", d.id},
                                {"webhook_id", d.webhook_id},
                                {"attempt", std::to_string(d.attempts)},
                                {"error", d.error.value_or("")}}));
}

asio::awaitable<Result<int64_t>> Webhooks::purge() {
  co_return co_await webhooks_repo::purge(db_, now_ms() - opts_.retention_ms);
}

void Webhooks::kick() {
  kicked_ = true;
  if (auto t = timer_) asio::post(t->get_executor(), [t] { t->cancel(); });
}

void Webhooks::start(asio::io_context& ioc) {
  timer_ = std::make_shared<asio::steady_timer>(ioc);
  asio::co_spawn(ioc, [self = shared_from_this()]() { return self->loop(); }, asio::detached);
}

void Webhooks::stop() {
  stopped_ = true;
  kick();
}

asio::awaitable<void> Webhooks::loop() {
  auto self = shared_from_this();
  auto ex = co_await asio::this_coro::executor;
  while (!stopped_) {
    kicked_ = false;
    // Claim what there is room for; each claimed delivery runs on its own, so one slow receiver
    // does not hold up the others.
    int room = static_cast<int>(opts_.concurrency) - in_flight_.load();
    int claimed = 0;
    if (room > 0) {
      // The lease covers one attempt with room to spare; a node that dies mid-attempt frees it then.
      int64_t now = now_ms();
      auto batch = co_await webhooks_repo::claim(db_, now, now + opts_.timeout_ms + 30'000, room);
      if (!batch) {
        logger()->warn(log::fields({{"msg", "claiming deliveries failed"}, {"error", batch.error().detail}}));
      } else {
        for (auto& d : *batch) {
          auto w = co_await webhooks_repo::find(db_, "", d.webhook_id);
          if (!w || !*w) continue;  // deleted meanwhile, or the database hiccuped: the lease retries it
          if (!(*w)->enabled) {  // disabled since it was queued: what is pending is dropped, and says so
            d.status = "failed";
            d.error = "the webhook was disabled";
            auto st = co_await webhooks_repo::finish_attempt(db_, d);
            if (!st) logger()->warn(log::fields({{"msg", "delivery outcome not recorded"}, {"error", st.error().detail}}));
            continue;
          }
          ++claimed;
          in_flight_.fetch_add(1);
          asio::co_spawn(
              ex,
              [self, d = std::move(d), hook = std::move(**w)]() mutable { return self->attempt(std::move(d), std::move(hook)); },
              [self](std::exception_ptr) { self->kick(); });  // a free slot: look for more at once
        }
      }
    }
    if (claimed > 0 && claimed == room) continue;  // there may be more due right now
    if (kicked_) continue;                          // kicked while we were busy
    timer_->expires_after(std::chrono::milliseconds(opts_.poll_interval_ms));
    boost::system::error_code ec;
    co_await timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace harmar::notify
