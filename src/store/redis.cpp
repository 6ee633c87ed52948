#include "store/redis.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <hiredis/hiredis.h>

#include <array>
#include <cctype>
#include <charconv>
#include <deque>
#include <random>

#include "core/clock.hpp"
#include "core/log.hpp"

namespace harmar::store::redis {

namespace {

using tcp = asio::ip::tcp;
using boost::system::error_code;

constexpr std::size_t kReadChunk = 16 * 1024;
constexpr std::size_t kMaxWriteBatch = 1 << 20;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

template <class Int>
bool parse_int(std::string_view s, Int& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

Error bad_url(std::string why) { return Error::validation("invalid redis url: " + std::move(why)); }

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING: out.type = Reply::Type::String; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_STATUS: out.type = Reply::Type::Status; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_ERROR: out.type = Reply::Type::Error; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_INTEGER: out.type = Reply::Type::Integer; out.integer = r->integer; break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::Array;
      out.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default: out.type = Reply::Type::Nil; break;
  }
  return out;
}

struct ReaderDeleter {
  void operator()(redisReader* r) const { redisReaderFree(r); }
};

bool is_pong(const Reply& r) {
  if (r.type == Reply::Type::Status) return r.str == "PONG";
  return r.type == Reply::Type::Array && !r.elements.empty() && r.elements[0].str == "pong";
}

std::shared_ptr<spdlog::logger> logger() { return log::get("store"); }

}  // namespace

Result<Url> parse_url(std::string_view url) {
  constexpr std::string_view kScheme = "redis://";
  if (url.starts_with("rediss://")) return bad_url("TLS (rediss://) is not supported yet");
  if (!url.starts_with(kScheme)) return bad_url("expected redis://[user:password@]host[:port][/db]");
  std::string_view rest = url.substr(kScheme.size());
  Url out;

  std::string_view query;
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  std::string_view path;
  if (auto s = rest.find('/'); s != std::string_view::npos) {
    path = rest.substr(s + 1);
    rest = rest.substr(0, s);
  }
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    std::string_view user = userinfo, pass;
    if (auto c = userinfo.find(':'); c != std::string_view::npos) {
      user = userinfo.substr(0, c);
      pass = userinfo.substr(c + 1);
    }
    auto u = percent_decode(user);
    auto p = percent_decode(pass);
    if (!u || !p) return bad_url("bad percent-encoding in the credentials");
    out.user = std::move(*u);
    out.password = std::move(*p);
    // "redis://:password@host" is the classic form without a user name.
  }

  std::string_view port;
  if (rest.starts_with('[')) {
    auto close = rest.find(']');
    if (close == std::string_view::npos) return bad_url("unterminated IPv6 address");
    out.host = std::string(rest.substr(1, close - 1));
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad_url("unexpected text after the IPv6 address");
      port = after.substr(1);
    }
  } else {
    auto c = rest.rfind(':');
    out.host = std::string(rest.substr(0, c));
    if (c != std::string_view::npos) port = rest.substr(c + 1);
  }
  if (out.host.empty()) return bad_url("missing host");
  if (!port.empty() && (!parse_int(port, out.port) || out.port == 0)) return bad_url("bad port");

  if (!path.empty() && (!parse_int(path, out.db) || out.db < 0 || out.db > 10000)) {
    return bad_url("the path must be a database number");
  }

  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    auto eq = kv.find('=');
    std::string_view key = kv.substr(0, eq);
    auto value = percent_decode(eq == std::string_view::npos ? std::string_view{} : kv.substr(eq + 1));
    if (!value) return bad_url("bad percent-encoding in the query");
    if (key == "name") {
      bool ok = !value->empty() && value->size() <= 64 &&
                std::all_of(value->begin(), value->end(), [](char c) {
                  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':';
                });
      if (!ok) return bad_url("name must be 1-64 characters of [A-Za-z0-9._:-]");
      out.name = std::move(*value);
    } else if (key == "timeout") {
      auto ms = parse_duration_ms(*value);
      if (!ms || *ms < 1 || *ms > 600000) return bad_url("timeout must be a duration between 1ms and 10m");
      out.timeout_ms = *ms;
    } else {
      return bad_url("unknown parameter '" + std::string(key) + "'");
    }
  }
  return out;
}

std::string encode_command(const std::vector<std::string>& args) {
  std::string out;
  std::size_t size = 16;
  for (const auto& a : args) size += a.size() + 16;
  out.reserve(size);
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (const auto& a : args) {
    out += '$';
    out += std::to_string(a.size());
    out += "\r\n";
    out += a;
    out += "\r\n";
  }
  return out;
}

// --- IoThread ---------------------------------------------------------------------------------

IoThread::IoThread(std::string name) : work_(asio::make_work_guard(ioc_)) {
  thread_ = std::thread([this, name = std::move(name)] {
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    ioc_.run();
  });
}

IoThread::~IoThread() {
  work_.reset();
  thread_.join();
}

// --- Connection -------------------------------------------------------------------------------

struct Connection::Request {
  std::string wire;
  std::size_t replies = 1;   // replies this request waits for (0 in subscriber mode)
  std::vector<Reply> got;    // replies received so far when replies > 1
  std::unique_ptr<detail::Completion<Result<Reply>>> done;  // null once abandoned (timed out)
  int64_t deadline_ms = 0;
};

struct Connection::Io {
  explicit Io(asio::io_context& ioc)
      : resolver(ioc), socket(ioc), backoff_timer(ioc), connect_timer(ioc), tick_timer(ioc), reader(redisReaderCreate()) {}
  tcp::resolver resolver;
  tcp::socket socket;
  asio::steady_timer backoff_timer;
  asio::steady_timer connect_timer;
  asio::steady_timer tick_timer;
  std::unique_ptr<redisReader, ReaderDeleter> reader;
  std::array<char, kReadChunk> rbuf{};
  std::deque<Request> queued;     // not yet written
  std::deque<Request> in_flight;  // written, waiting for replies, in order
  std::string wbuf;
};

Connection::Connection(asio::io_context& ioc, ConnectionOptions opts)
    : ioc_(ioc), opts_(std::move(opts)), io_(std::make_unique<Io>(ioc)) {}

Connection::~Connection() = default;

std::shared_ptr<Connection> Connection::create(asio::io_context& ioc, ConnectionOptions opts) {
  return std::make_shared<Connection>(ioc, std::move(opts));
}

std::shared_ptr<Connection> Connection::start(asio::io_context& ioc, ConnectionOptions opts) {
  auto conn = create(ioc, std::move(opts));
  conn->start();
  return conn;
}

void Connection::start() {
  // The lambda (and so the connection) lives until run() returns.
  asio::co_spawn(ioc_, [self = shared_from_this()] { return self->run(); }, [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);  // a bug in the client: crash loudly rather than hang callers
  });
}

std::string Connection::client_name() const {
  return opts_.role.empty() ? opts_.url.name : opts_.url.name + ":" + opts_.role;
}

asio::awaitable<Result<Reply>> Connection::commands(std::vector<std::vector<std::string>> cmds) {
  std::string wire;
  for (const auto& c : cmds) wire += encode_command(c);
  auto r = co_await async_batch(std::move(wire), cmds.size(), asio::use_awaitable);
  co_return r;
}

void Connection::submit(std::string wire, std::size_t replies,
                        std::unique_ptr<detail::Completion<Result<Reply>>> done) {
  Request req{std::move(wire), replies, {}, std::move(done), mono_ms() + opts_.url.timeout_ms};
  asio::post(ioc_, [self = shared_from_this(), req = std::move(req)]() mutable { self->enqueue(std::move(req)); });
}

void Connection::enqueue(Request req) {
  auto fail = [&](Error e) {
    if (req.done) req.done->complete(std::move(e));
  };
  switch (state_) {
    case State::Stopped: return fail(Error::unavailable("redis client is closed"));
    case State::Backoff: return fail(Error::unavailable("redis is unavailable: " + last_error_));
    default: break;
  }
  if (io_->queued.size() + io_->in_flight.size() >= opts_.max_outstanding) {
    return fail(Error::unavailable("too many redis commands in flight"));
  }
  io_->queued.push_back(std::move(req));
  flush();
  start_ticker();
}

void Connection::send(const std::vector<std::string>& args) {
  if (state_ != State::Ready) return;
  io_->queued.push_back(Request{encode_command(args), 0, {}, nullptr, mono_ms() + opts_.url.timeout_ms});
  flush();
}

void Connection::flush() {
  if (writing_ || state_ != State::Ready || io_->queued.empty()) return;
  auto& io = *io_;
  io.wbuf.clear();
  while (!io.queued.empty() && io.wbuf.size() < kMaxWriteBatch) {
    Request& req = io.queued.front();
    io.wbuf += req.wire;
    req.wire = std::string();
    if (!opts_.subscriber) io.in_flight.push_back(std::move(req));
    io.queued.pop_front();
  }
  writing_ = true;
  asio::async_write(io.socket, asio::buffer(io.wbuf),
                    [self = shared_from_this(), gen = generation_](error_code ec, std::size_t) {
                      self->writing_ = false;
                      if (gen != self->generation_) return self->flush();
                      if (ec) return self->reset("write failed: " + ec.message());
                      self->flush();
                    });
}

asio::awaitable<void> Connection::run() {
  int failures = 0;
  bool was_up = false;
  while (state_ != State::Stopped) {
    state_ = State::Connecting;
    Status st = co_await connect_once();
    if (st.ok()) {
      failures = 0;
      state_ = State::Ready;
      connected_ = true;
      last_ping_ms_ = mono_ms();
      ping_sent_ms_ = 0;
      if (was_up) logger()->info("redis {} reconnected to {}:{}", client_name(), opts_.url.host, opts_.url.port);
      was_up = true;
      if (opts_.on_ready) opts_.on_ready();
      flush();
      start_ticker();
      st = co_await read_loop();
      connected_ = false;
      if (state_ != State::Stopped) {
        logger()->warn("redis {} connection lost: {}", client_name(), st.error().detail);
        if (opts_.on_down) opts_.on_down();
      }
    } else if (state_ != State::Stopped && failures == 0) {
      logger()->warn("redis {} cannot connect to {}:{}: {}", client_name(), opts_.url.host, opts_.url.port,
                     st.error().detail);
    }
    if (state_ == State::Stopped) break;
    drop(st.error().detail);
    io_->backoff_timer.expires_after(std::chrono::milliseconds(backoff_ms(failures++)));
    error_code ec;
    co_await io_->backoff_timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  fail_all(Error::unavailable("redis client is closed"));
}

int64_t Connection::backoff_ms(int failures) const {
  // The first retry is immediate: a single dropped connection is the common case.
  if (failures == 0) return 0;
  int64_t base = std::min<int64_t>(opts_.max_backoff_ms, int64_t{100} << std::min(failures - 1, 16));
  thread_local std::minstd_rand rng{std::random_device{}()};
  return base / 2 + static_cast<int64_t>(rng() % static_cast<uint64_t>(base / 2 + 1));
}

asio::awaitable<Status> Connection::connect_once() {
  auto& io = *io_;
  const uint64_t gen = ++generation_;
  reset_reason_.clear();
  io.reader.reset(redisReaderCreate());
  io.connect_timer.expires_after(std::chrono::milliseconds(opts_.url.timeout_ms));
  io.connect_timer.async_wait([self = shared_from_this(), gen](error_code ec) {
    if (ec || gen != self->generation_ || self->state_ != State::Connecting) return;
    self->reset_reason_ = "timed out connecting";
    self->io_->resolver.cancel();
    error_code ignored;
    self->io_->socket.close(ignored);
  });
  auto failed = [&](std::string what, const error_code& ec) -> Status {
    io.connect_timer.cancel();
    return Error::unavailable(reset_reason_.empty() ? what + ": " + ec.message() : reset_reason_);
  };

  error_code ec;
  auto endpoints = co_await io.resolver.async_resolve(opts_.url.host, std::to_string(opts_.url.port),
                                                      asio::redirect_error(asio::use_awaitable, ec));
  if (ec || state_ == State::Stopped) co_return failed("cannot resolve " + opts_.url.host, ec);
  co_await asio::async_connect(io.socket, endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec || state_ == State::Stopped) co_return failed("cannot connect", ec);
  io.socket.set_option(tcp::no_delay(true), ec);
  io.socket.set_option(asio::socket_base::keep_alive(true), ec);

  std::vector<std::vector<std::string>> handshake;
  if (!opts_.url.password.empty()) {
    if (opts_.url.user.empty()) {
      handshake.push_back({"AUTH", opts_.url.password});
    } else {
      handshake.push_back({"AUTH", opts_.url.user, opts_.url.password});
    }
  }
  if (opts_.url.db != 0) handshake.push_back({"SELECT", std::to_string(opts_.url.db)});
  handshake.push_back({"CLIENT", "SETNAME", client_name()});
  std::string wire;
  for (const auto& c : handshake) wire += encode_command(c);
  co_await asio::async_write(io.socket, asio::buffer(wire), asio::redirect_error(asio::use_awaitable, ec));
  if (ec || state_ == State::Stopped) co_return failed("cannot write the handshake", ec);
  for (const auto& c : handshake) {
    auto reply = co_await read_reply();
    if (!reply.ok()) {
      io.connect_timer.cancel();
      co_return std::move(reply).error();
    }
    if (reply->type == Reply::Type::Error) {
      io.connect_timer.cancel();
      co_return Error::unavailable("redis refused " + c[0] + ": " + reply->str);
    }
  }
  io.connect_timer.cancel();
  co_return Status{};
}

asio::awaitable<Result<Reply>> Connection::read_reply() {
  auto& io = *io_;
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(io.reader.get(), &raw) != REDIS_OK) {
      co_return Error::unavailable(std::string("redis protocol error: ") + io.reader->errstr);
    }
    if (raw) {
      Reply r = convert(static_cast<redisReply*>(raw));
      freeReplyObject(raw);
      co_return r;
    }
    error_code ec;
    std::size_t n = co_await io.socket.async_read_some(asio::buffer(io.rbuf), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (!reset_reason_.empty()) co_return Error::unavailable(reset_reason_);
      co_return Error::unavailable(ec == asio::error::eof ? "connection closed by redis" : ec.message());
    }
    if (redisReaderFeed(io.reader.get(), io.rbuf.data(), n) != REDIS_OK) {
      co_return Error::unavailable(std::string("redis protocol error: ") + io.reader->errstr);
    }
  }
}

asio::awaitable<Status> Connection::read_loop() {
  for (;;) {
    auto reply = co_await read_reply();
    if (!reply.ok()) co_return std::move(reply).error();
    on_reply(std::move(reply).value());
  }
}

void Connection::on_reply(Reply&& reply) {
  if (opts_.subscriber) {
    if (is_pong(reply)) {
      ping_sent_ms_ = 0;
      return;
    }
    if (opts_.on_push) opts_.on_push(std::move(reply));
    return;
  }
  auto& in_flight = io_->in_flight;
  if (in_flight.empty()) return reset("redis sent a reply nobody asked for");
  Request& req = in_flight.front();
  if (req.replies > 1) {
    req.got.push_back(std::move(reply));
    if (req.got.size() < req.replies) return;
    reply = Reply{Reply::Type::Array, {}, 0, std::move(req.got)};
  }
  auto done = std::move(req.done);
  in_flight.pop_front();
  if (!done) return;  // abandoned after its deadline
  if (reply.type == Reply::Type::Error) {
    done->complete(Error{500, "redis_error", reply.str});
  } else {
    done->complete(std::move(reply));
  }
}

void Connection::start_ticker() {
  if (ticking_ || state_ == State::Stopped) return;
  ticking_ = true;
  int64_t period = std::clamp<int64_t>(opts_.url.timeout_ms / 8, 5, 250);
  io_->tick_timer.expires_after(std::chrono::milliseconds(period));
  io_->tick_timer.async_wait([self = shared_from_this()](error_code ec) {
    self->ticking_ = false;
    if (!ec) self->on_tick();
  });
}

void Connection::on_tick() {
  if (state_ == State::Stopped) return;
  auto& io = *io_;
  const int64_t now = mono_ms();
  const Error timeout = Error::unavailable("redis did not answer within " + std::to_string(opts_.url.timeout_ms) + "ms");
  // Every request has the same timeout, so deadlines grow along both queues. A subscriber's
  // queue holds (UN)SUBSCRIBE commands waiting for a write in progress: they must not be lost
  // (a stuck write is caught by the keepalive below).
  while (!opts_.subscriber && !io.queued.empty() && io.queued.front().deadline_ms <= now) {
    if (io.queued.front().done) io.queued.front().done->complete(timeout);
    io.queued.pop_front();
  }
  for (auto& req : io.in_flight) {
    if (req.deadline_ms > now) break;
    // Its reply will still come (or not): the slot stays so later replies match their callers.
    if (req.done) req.done->complete(timeout);
    req.done.reset();
  }
  if (state_ == State::Ready && !io.in_flight.empty() && now > io.in_flight.front().deadline_ms + opts_.url.timeout_ms) {
    reset("redis stopped answering");
  }
  if (opts_.subscriber && state_ == State::Ready) {
    if (ping_sent_ms_ != 0 && now - ping_sent_ms_ > opts_.url.timeout_ms) {
      reset("redis did not answer a keepalive ping");
    } else if (ping_sent_ms_ == 0 && now - last_ping_ms_ >= opts_.keepalive_ms) {
      ping_sent_ms_ = last_ping_ms_ = now;
      send({"PING"});
    }
  }
  bool busy = !io.queued.empty() || !io.in_flight.empty() || (opts_.subscriber && state_ == State::Ready);
  if (busy) start_ticker();
}

void Connection::reset(std::string reason) {
  if (reset_reason_.empty()) reset_reason_ = std::move(reason);
  error_code ignored;
  io_->socket.close(ignored);  // the read loop ends and run() reconnects
}

void Connection::drop(const std::string& reason) {
  ++generation_;
  connected_ = false;
  error_code ignored;
  io_->socket.close(ignored);
  state_ = State::Backoff;
  last_error_ = reason;
  ping_sent_ms_ = 0;
  fail_all(Error::unavailable("redis is unavailable: " + reason));
}

void Connection::fail_all(const Error& e) {
  auto queued = std::move(io_->queued);
  auto in_flight = std::move(io_->in_flight);
  io_->queued.clear();
  io_->in_flight.clear();
  for (auto* q : {&in_flight, &queued}) {
    for (auto& req : *q) {
      if (req.done) req.done->complete(e);
    }
  }
}

void Connection::stop() {
  asio::post(ioc_, [self = shared_from_this()] { self->stop_now(); });
}

void Connection::stop_now() {
  if (state_ == State::Stopped) return;
  state_ = State::Stopped;
  connected_ = false;
  ++generation_;
  auto& io = *io_;
  io.resolver.cancel();
  io.backoff_timer.cancel();
  io.connect_timer.cancel();
  io.tick_timer.cancel();
  error_code ignored;
  io.socket.close(ignored);
  fail_all(Error::unavailable("redis client is closed"));
}

}  // namespace harmar::store::redis
