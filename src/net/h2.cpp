// HTTP/2 sessions on nghttp2: h2 over TLS (ALPN), h2c with prior knowledge, h2c by Upgrade.
//
// One coroutine reads and feeds nghttp2; one writes what nghttp2 produces, coalesced into one
// buffer per write, so there is never more than one write in flight. Each request runs as its
// own coroutine through the same dispatch as HTTP/1.1: a handler never knows which carried it.
//
// What a client may make the server hold is bounded: streams (SETTINGS_MAX_CONCURRENT_STREAMS),
// running handlers (streams it reset still count until their handler ends; past the bound the
// session stops reading), request body bytes (a per-connection budget enforced through stream
// flow control), header bytes (header_limit), and the rate of requests, resets and control
// frames (a GOAWAY ends a connection that exceeds them).
#include <nghttp2/nghttp2.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>

#include <charconv>
#include <map>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "net/detail/rate_limit.hpp"
#include "net/detail/transport.hpp"

namespace harmar::net::detail {
namespace {

using boost::system::error_code;

// Flow control. The stream window bounds what a client can have in flight on a stream whose
// body we are not accepting yet; the connection window only paces the link.
constexpr int32_t kStreamWindow = 256 * 1024;
constexpr int32_t kConnectionWindow = 1 << 20;
// Frames are coalesced into writes of about this size.
constexpr std::size_t kWriteChunk = 64 * 1024;
// Request body bytes a connection may hold across streams before only its oldest uploading
// stream keeps receiving (the budget grows to the server's body limit if that is larger).
constexpr int64_t kBodyBudget = 8 << 20;
// Abuse windows: resets (CVE-2023-44487) and PING/SETTINGS/PRIORITY/empty DATA floods
// (CVE-2019-9512, -9515, -9518) per second before the connection is told to go away.
constexpr int64_t kAbuseWindowMs = 1000;
constexpr int64_t kMinResetsPerWindow = 100;
constexpr int64_t kControlFramesPerWindow = 500;
// After an early answer (413, 431) this much more of the refused body is read and dropped before
// the client is told to stop, so a client about to finish its upload just finishes (curl 7.88
// mishandles a reset mid-upload).
constexpr std::size_t kDrainAllowance = 64 * 1024;
// Unsent SETTINGS/PING ACKs and RST_STREAMs nghttp2 keeps before it gives up on a client
// that sends faster than it reads.
constexpr std::size_t kMaxOutboundAck = 100;

// A streamed response (Response::stream) over HTTP/2 is read whole first, up to
// Response::kMaxH2StreamedBody; a larger one is refused with a pointer to HTTP/1.1.
// A HEAD is answered as its GET would be, without reading the stream: stream_size stays for
// submit() to put in content-length.
asio::awaitable<Response> buffer_stream(Response resp, bool head) {
  std::shared_ptr<BodyStream> stream = std::move(resp.stream);
  if (resp.stream_size > Response::kMaxH2StreamedBody)
    co_return Response(Error{505, "http1_required",
                             "this response is larger than HTTP/2 serves (" +
                                 std::to_string(Response::kMaxH2StreamedBody) + " bytes); fetch it over HTTP/1.1"});
  if (head) {
    resp.body.clear();
    co_return resp;
  }
  std::string body;
  body.reserve(static_cast<std::size_t>(resp.stream_size));
  for (;;) {
    auto chunk = co_await stream->read();
    if (!chunk) co_return Response(chunk.error());
    if (chunk->empty()) break;
    if (body.size() + chunk->size() > static_cast<std::size_t>(resp.stream_size))
      co_return Response(Error::internal("a streamed response ran past its length"));
    body += *chunk;
  }
  resp.body = std::move(body);
  co_return resp;
}

const std::string_view kSwitchingProtocols =
    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";

// A wake-up for one waiting coroutine. Callers check their condition before wait(); since all
// of a session runs on one thread, a notify() can never fall between that check and the wait.
class Signal {
 public:
  explicit Signal(asio::io_context& ioc) : timer_(ioc) { timer_.expires_at(asio::steady_timer::time_point::max()); }
  void notify() { timer_.cancel(); }
  asio::awaitable<void> wait() {
    error_code ignored;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    timer_.expires_at(asio::steady_timer::time_point::max());
  }

 private:
  asio::steady_timer timer_;
};

// --- helpers ------------------------------------------------------------------------------

std::optional<std::string> base64url_decode(std::string_view in) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '-' || c == '+') v = 62;
    else if (c == '_' || c == '/') v = 63;
    else return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// Headers that describe an HTTP/1.1 connection and are malformed in HTTP/2 (RFC 9113 §8.2.2).
bool connection_specific(std::string_view name) {
  return iequals(name, "connection") || iequals(name, "keep-alive") || iequals(name, "proxy-connection") ||
         iequals(name, "transfer-encoding") || iequals(name, "upgrade") || iequals(name, "te") ||
         iequals(name, "http2-settings");
}

nghttp2_nv nv(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
}

std::string_view as_view(const uint8_t* p, std::size_t n) { return {reinterpret_cast<const char*>(p), n}; }

void log_failure(const ServerState& st, std::exception_ptr e, const char* what) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    st.log->error(log::fields({{"msg", what}, {"error", ex.what()}}));
  }
}

// --- per stream ---------------------------------------------------------------------------

struct H2Stream {
  explicit H2Stream(int32_t id) : id(id) {}
  int32_t id;
  Request req;
  Match match;
  int64_t limit = 0;        // body bytes this route accepts
  int64_t start_us = 0;     // header complete
  int64_t deadline_ms = 0;  // what the client owes us (header, body) or we owe it (response)
  std::size_t held = 0;      // body bytes counted against the connection's budget
  std::size_t deferred = 0;  // body bytes received but not yet given back to the stream window
  std::size_t received = 0;  // body bytes received in all
  std::size_t dropped = 0;   // body bytes received after the stream was answered
  std::string cookie;        // RFC 9113 §8.2.3: split cookie fields are joined for HTTP/1.1 semantics
  Response resp;
  std::size_t sent = 0;  // body bytes handed to nghttp2
  bool authority = false;
  bool headers_done = false;
  bool request_done = false;  // the client sent END_STREAM
  bool header_overflow = false;
  bool answered = false;       // a response was submitted
  bool response_done = false;  // its last frame was sent
  bool stop_sent = false;      // RST_STREAM(NO_ERROR) sent: the rest of the body is unwanted
  bool running = false;        // a handler is running
  bool closed = false;         // nghttp2 closed the stream

  bool receiving_body() const { return headers_done && !request_done && !answered; }
};

// --- the session: protocol ---------------------------------------------------------------

// Everything that does not depend on the transport, compiled once.
class H2Core : public Connection {
 public:
  H2Core(ServerState& st, Worker& w, std::string remote_ip, bool secure)
      : st_(st),
        w_(w),
        remote_ip_(std::move(remote_ip)),
        secure_(secure),
        proto_(secure ? "h2" : "h2c"),
        wake_(w.ioc),
        resume_(w.ioc),
        done_(w.ioc),
        rate_(st.opts.connection_rps),
        resets_(std::max<int64_t>(kMinResetsPerWindow, 2 * st.opts.h2_max_streams), kAbuseWindowMs),
        control_frames_(kControlFramesPerWindow, kAbuseWindowMs),
        max_running_(2 * static_cast<std::size_t>(std::max(1, st.opts.h2_max_streams))),
        body_budget_(std::max<int64_t>(kBodyBudget, st.opts.body_limit)),
        opened_ms_(mono_ms()) {
    idle = false;
    w_.register_connection(*this);
  }
  ~H2Core() override {
    if (ng_) nghttp2_session_del(ng_);
    w_.unregister_connection(*this);
  }
  H2Core(const H2Core&) = delete;
  H2Core& operator=(const H2Core&) = delete;

  void drain() override {
    draining = true;
    if (!open_ || !ng_ || goaway_) return;
    goaway_ = true;
    nghttp2_submit_goaway(ng_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ng_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
    wake_.notify();
  }

  // The sweeper calls this when deadline_ms passed (or shutdown's grace period ended). Streams
  // that ran out of time are reset; the connection itself is closed only when its own time is up.
  void cut() override {
    int64_t now = mono_ms();
    bool grace_over = w_.draining && w_.force_close_at_ms && now >= w_.force_close_at_ms;
    if (grace_over || !open_ || !ng_ || (writing_ && now >= write_started_ms_ + st_.opts.write_timeout_ms)) {
      close_transport();
      return;
    }
    if (!busy() && now >= idle_deadline()) {
      if (said_goodbye_) {
        close_transport();
        return;
      }
      // Idle: say goodbye properly; if that cannot be written by the next sweep, close anyway.
      said_goodbye_ = true;
      nghttp2_session_terminate_session(ng_, NGHTTP2_NO_ERROR);
      wake_.notify();
      return;
    }
    for (auto& [id, s] : streams_) {
      if (s->deadline_ms && now >= s->deadline_ms) {
        s->deadline_ms = 0;
        nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
      }
    }
    refresh();
    wake_.notify();
  }

 protected:
  virtual void close_transport() = 0;

  // Creates the nghttp2 session and queues our SETTINGS; on an h2c upgrade also opens stream 1
  // from the HTTP/1.1 request and starts its handler. False if the session cannot start.
  bool open(Request* upgrade, std::string_view settings_payload);
  // Feeds received bytes to nghttp2. False when the connection must end.
  bool receive(std::string_view data);
  // Appends what nghttp2 wants to send to out_, up to about kWriteChunk. False on a fatal error.
  bool produce();
  // Nothing left to read or write: the session is over.
  bool finished() const { return !nghttp2_session_want_read(ng_) && !nghttp2_session_want_write(ng_); }
  bool reading_paused() const { return running_ >= max_running_; }
  // Recomputes deadline_ms and idle from the connection's and its streams' state.
  void refresh();

  ServerState& st_;
  Worker& w_;
  std::string remote_ip_;
  bool secure_;
  std::string_view proto_;
  nghttp2_session* ng_ = nullptr;
  std::string out_;
  bool open_ = true;  // the transport is usable
  bool writing_ = false;
  int64_t write_started_ms_ = 0;
  std::size_t running_ = 0;
  bool writer_done_ = false;
  Signal wake_;    // the writer: something may be ready to send
  Signal resume_;  // the reader: a handler finished
  Signal done_;    // run(): the writer or a handler finished

 private:
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t flags, void* self);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_data_chunk_recv(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data, size_t len,
                                void* self);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* self);
  static ssize_t read_body(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length, uint32_t* flags,
                           nghttp2_data_source* source, void* self);
  static const nghttp2_session_callbacks* callbacks();

  H2Stream* stream(int32_t id) {
    return static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(ng_, id));
  }
  std::shared_ptr<H2Stream> new_stream(int32_t id);
  void header(H2Stream& s, std::string_view name, std::string_view value);
  void headers_complete(H2Stream& s);
  void request_complete(H2Stream& s);
  void body_chunk(H2Stream& s, std::string_view data);
  void stream_closed(H2Stream& s, uint32_t error_code);
  void start_handler(const std::shared_ptr<H2Stream>& s);
  asio::awaitable<void> run_handler(std::shared_ptr<H2Stream> s);
  void handler_done(H2Stream& s, std::exception_ptr e);
  // Submits `resp` on the stream and records it; false if the stream is gone.
  bool answer(H2Stream& s, Response resp);
  bool submit(H2Stream& s);
  // Gives deferred body bytes back to stream windows while the budget allows; the oldest
  // uploading stream always gets its bytes back, so one upload always makes progress.
  void grant_windows();
  bool is_oldest_upload(const H2Stream& s) const;
  void release_body(H2Stream& s);
  void response_sent(H2Stream& s);
  void stop_upload(H2Stream& s);
  void abuse(const char* what);
  bool busy() const { return running_ > 0 || !streams_.empty(); }
  int64_t idle_deadline() const {
    return greeted_ ? idle_since_ms_ + st_.opts.idle_timeout_ms : opened_ms_ + st_.opts.header_timeout_ms;
  }

  RateLimit rate_;
  WindowCounter resets_;
  WindowCounter control_frames_;
  std::size_t max_running_;
  int64_t body_budget_;
  int64_t body_bytes_ = 0;  // request body bytes held across streams
  std::map<int32_t, std::shared_ptr<H2Stream>> streams_;  // open in nghttp2, by id (= age)
  int64_t opened_ms_;
  int64_t idle_since_ms_ = 0;
  bool greeted_ = false;  // the client's SETTINGS arrived
  bool goaway_ = false;
  bool said_goodbye_ = false;
  bool terminated_ = false;
};

const nghttp2_session_callbacks* H2Core::callbacks() {
  static nghttp2_session_callbacks* cbs = [] {
    nghttp2_session_callbacks* c = nullptr;
    nghttp2_session_callbacks_new(&c);
    nghttp2_session_callbacks_set_on_begin_headers_callback(c, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(c, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(c, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(c, on_stream_close);
    return c;
  }();
  return cbs;
}

bool H2Core::open(Request* upgrade, std::string_view settings_payload) {
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) return false;
  // Windows are given back as bodies are accepted (grant_windows), not as bytes arrive.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_outbound_ack(opt, kMaxOutboundAck);
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_max_continuations(opt, 8);
  // The library's own rapid-reset limiter, as a second line behind resets_.
  nghttp2_option_set_stream_reset_rate_limit(opt, static_cast<uint64_t>(4 * kMinResetsPerWindow),
                                             static_cast<uint64_t>(kMinResetsPerWindow / 2));
  // No priority tree of closed streams to keep.
  nghttp2_option_set_no_closed_streams(opt, 1);
  int rv = nghttp2_session_server_new2(&ng_, callbacks(), this, opt);
  nghttp2_option_del(opt);
  if (rv != 0) return false;

  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, static_cast<uint32_t>(std::max(1, st_.opts.h2_max_streams))},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(st_.opts.header_limit)},
  };
  if (nghttp2_submit_settings(ng_, NGHTTP2_FLAG_NONE, iv, std::size(iv)) != 0) return false;
  if (nghttp2_session_set_local_window_size(ng_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow) != 0) return false;
  if (!upgrade) return true;

  // RFC 9113 §3.2 (RFC 7540): the upgrade request becomes stream 1, half-closed (remote).
  bool head = upgrade->method == Method::Head;
  if (nghttp2_session_upgrade2(ng_, reinterpret_cast<const uint8_t*>(settings_payload.data()),
                               settings_payload.size(), head ? 1 : 0, nullptr) != 0)
    return false;
  auto s = new_stream(1);
  Request& r = s->req;
  r.set_method(upgrade->method_text());
  r.set_target(upgrade->target());
  for (std::size_t i = 0; i < upgrade->header_count(); ++i) {
    auto [k, v] = upgrade->header_at(i);
    if (!connection_specific(k)) r.add_header(k, v);
  }
  r.body = std::move(upgrade->body);
  r.set_request_id(upgrade->request_id());
  s->headers_done = s->request_done = true;
  s->deadline_ms = 0;
  s->start_us = mono_us();
  s->match = st_.router.match(r.method, r.path(), &r);
  greeted_ = true;  // the HTTP/1.1 request was the greeting
  start_handler(s);
  return true;
}

bool H2Core::receive(std::string_view data) {
  auto rv = nghttp2_session_mem_recv(ng_, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  if (rv < 0) {
    // Not HTTP/2 at all (bad preface), a flood nghttp2 caught, or out of memory: nothing
    // sensible can be said to this peer.
    st_.log->debug(log::fields({{"msg", "http/2 session failed"},
                                {"remote", remote_ip_},
                                {"error", nghttp2_strerror(static_cast<int>(rv))}}));
    close_transport();
    return false;
  }
  refresh();
  if (nghttp2_session_want_write(ng_)) wake_.notify();
  return true;
}

bool H2Core::produce() {
  while (out_.size() < kWriteChunk) {
    const uint8_t* data = nullptr;
    auto n = nghttp2_session_mem_send(ng_, &data);
    if (n < 0) return false;
    if (n == 0) break;
    out_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  return true;
}

void H2Core::refresh() {
  int64_t now = mono_ms();
  bool is_busy = busy();
  if (!is_busy && !idle) idle_since_ms_ = now;
  idle = !is_busy;
  int64_t d = 0;
  auto earliest = [&d](int64_t t) {
    if (t && (!d || t < d)) d = t;
  };
  if (idle) earliest(idle_deadline());
  if (writing_) earliest(write_started_ms_ + st_.opts.write_timeout_ms);
  for (const auto& [id, s] : streams_) earliest(s->deadline_ms);
  deadline_ms = d;
}

std::shared_ptr<H2Stream> H2Core::new_stream(int32_t id) {
  auto s = std::make_shared<H2Stream>(id);
  s->req.version = 20;
  s->req.secure = secure_;
  s->req.set_remote_ip(remote_ip_);
  s->deadline_ms = mono_ms() + st_.opts.header_timeout_ms;
  nghttp2_session_set_stream_user_data(ng_, id, s.get());
  streams_.emplace(id, s);
  return s;
}

int H2Core::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto& c = *static_cast<H2Core*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  c.new_stream(frame->hd.stream_id);
  return 0;
}

int H2Core::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t, void* self) {
  auto& c = *static_cast<H2Core*>(self);
  H2Stream* s = c.stream(frame->hd.stream_id);
  // Trailers (a second HEADERS) are not passed on: handlers see HTTP/1.1-shaped requests.
  if (!s || s->headers_done) return 0;
  c.header(*s, as_view(name, namelen), as_view(value, valuelen));
  return 0;
}

void H2Core::header(H2Stream& s, std::string_view name, std::string_view value) {
  if (s.header_overflow) return;
  if (s.req.header_bytes() + s.cookie.size() + name.size() + value.size() > st_.opts.header_limit) {
    s.header_overflow = true;  // answered with 431 once the header block ends
    return;
  }
  Request& r = s.req;
  if (!name.empty() && name[0] == ':') {
    if (name == ":method") {
      r.set_method(value);
    } else if (name == ":path") {
      r.set_target(value);
    } else if (name == ":authority") {
      r.add_header("host", value);
      s.authority = true;
    }
    return;  // :scheme (and :protocol, which we do not enable) carry nothing a handler uses
  }
  if (name == "host" && s.authority) return;  // :authority wins (RFC 9113 §8.3.1)
  if (name == "cookie") {
    if (!s.cookie.empty()) s.cookie += "; ";
    s.cookie.append(value);
    return;
  }
  r.add_header(name, value);
}

int H2Core::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto& c = *static_cast<H2Core*>(self);
  int64_t now = mono_ms();
  bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      H2Stream* s = c.stream(frame->hd.stream_id);
      if (!s) break;
      if (!s->headers_done) c.headers_complete(*s);
      if (end_stream) c.request_complete(*s);
      break;
    }
    case NGHTTP2_DATA: {
      if (frame->hd.length == 0 && !end_stream && !c.control_frames_.add(now)) c.abuse("empty DATA flood");
      if (H2Stream* s = c.stream(frame->hd.stream_id); s && end_stream) c.request_complete(*s);
      break;
    }
    case NGHTTP2_SETTINGS:
      if (frame->hd.flags & NGHTTP2_FLAG_ACK) break;
      c.greeted_ = true;
      if (!c.control_frames_.add(now)) c.abuse("SETTINGS flood");
      break;
    case NGHTTP2_PING:
      if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && !c.control_frames_.add(now)) c.abuse("PING flood");
      break;
    case NGHTTP2_PRIORITY:
      if (!c.control_frames_.add(now)) c.abuse("PRIORITY flood");
      break;
    default: break;
  }
  return 0;
}

void H2Core::headers_complete(H2Stream& s) {
  s.headers_done = true;
  s.start_us = mono_us();
  if (!s.cookie.empty()) s.req.add_header("cookie", s.cookie);
  assign_request_id(s.req);
  if (s.header_overflow) {
    answer(s, Error{431, "header_too_large", "request header fields are too large"});
    return;
  }
  s.match = st_.router.match(s.req.method, s.req.path(), &s.req);
  s.limit = body_limit_for(st_, s.match);
  if (s.match.route && s.match.route->options.stream_body) {
    // Streamed uploads are HTTP/1.1 only: here a body is held whole per stream (see BodySource).
    answer(s, Error{505, "http1_required", "this endpoint takes its body as a stream over HTTP/1.1; retry with HTTP/1.1"});
    return;
  }
  std::string_view cl = s.req.header("content-length");
  uint64_t length = 0;
  if (!cl.empty() && std::from_chars(cl.data(), cl.data() + cl.size(), length).ec == std::errc() &&
      length > static_cast<uint64_t>(s.limit)) {
    // Refused on the declared length alone, before a byte of the body is accepted.
    answer(s, Error::payload_too_large("request body exceeds " + std::to_string(s.limit) + " bytes"));
    return;
  }
  s.deadline_ms = mono_ms() + st_.opts.body_timeout_ms;
}

void H2Core::request_complete(H2Stream& s) {
  if (s.request_done) return;
  s.request_done = true;
  if (s.answered) return;  // refused early; the response is already on its way
  s.deadline_ms = 0;
  grant_windows();  // the oldest upload may have changed
  auto it = streams_.find(s.id);
  if (it != streams_.end()) start_handler(it->second);
}

int H2Core::on_data_chunk_recv(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                               void* self) {
  auto& c = *static_cast<H2Core*>(self);
  // The connection window paces the link only; memory is bounded per stream (body_chunk).
  nghttp2_session_consume_connection(c.ng_, len);
  if (H2Stream* s = c.stream(stream_id)) c.body_chunk(*s, as_view(data, len));
  return 0;
}

void H2Core::body_chunk(H2Stream& s, std::string_view data) {
  s.received += data.size();
  if (!s.receiving_body()) {
    nghttp2_session_consume_stream(ng_, s.id, data.size());  // refused already: drop it
    s.dropped += data.size();
    if (s.response_done && s.dropped > kDrainAllowance) stop_upload(s);
    return;
  }
  if (s.req.body.size() + data.size() > static_cast<std::size_t>(s.limit)) {
    nghttp2_session_consume_stream(ng_, s.id, data.size());
    release_body(s);
    answer(s, Error::payload_too_large("request body exceeds " + std::to_string(s.limit) + " bytes"));
    return;
  }
  s.req.body.append(data);
  s.held += data.size();
  body_bytes_ += static_cast<int64_t>(data.size());
  if (body_bytes_ <= body_budget_ || is_oldest_upload(s)) {
    nghttp2_session_consume_stream(ng_, s.id, data.size());
  } else {
    s.deferred += data.size();  // this stream stalls at its window until the budget frees up
  }
}

bool H2Core::is_oldest_upload(const H2Stream& s) const {
  for (const auto& [id, other] : streams_)
    if (other->receiving_body()) return other.get() == &s;
  return false;
}

void H2Core::grant_windows() {
  if (!ng_) return;
  for (auto& [id, s] : streams_) {
    if (!s->deferred) continue;
    if (body_bytes_ > body_budget_ && !is_oldest_upload(*s)) continue;
    nghttp2_session_consume_stream(ng_, id, s->deferred);
    s->deferred = 0;
  }
}

void H2Core::release_body(H2Stream& s) {
  body_bytes_ -= static_cast<int64_t>(s.held);
  s.held = 0;
  std::string().swap(s.req.body);
}

void H2Core::start_handler(const std::shared_ptr<H2Stream>& s) {
  if (!rate_.take(s->start_us)) {
    answer(*s, Error::rate_limited(1, "this connection sends requests faster than " +
                                          std::to_string(st_.opts.connection_rps) + " per second"));
    return;
  }
  ++running_;
  s->running = true;
  asio::co_spawn(w_.ioc, run_handler(s), [this, s](std::exception_ptr e) { handler_done(*s, e); });
}

asio::awaitable<void> H2Core::run_handler(std::shared_ptr<H2Stream> s) {
  Response resp = co_await dispatch(st_, s->req, s->match, s->start_us);
  if (resp.stream) resp = co_await buffer_stream(std::move(resp), s->req.method == Method::Head);
  answer(*s, std::move(resp));
}

void H2Core::handler_done(H2Stream& s, std::exception_ptr e) {
  --running_;
  s.running = false;
  if (e) {
    log_failure(st_, e, "http/2 request failed");
    answer(s, Error::internal("the server failed to handle this request (request id " +
                              std::string(s.req.request_id()) + ")"));
  }
  release_body(s);
  grant_windows();
  refresh();
  resume_.notify();
  done_.notify();
}

bool H2Core::answer(H2Stream& s, Response resp) {
  if (s.answered) return false;
  s.answered = true;
  s.resp = std::move(resp);
  bool sent = !s.closed && open_ && submit(s);
  bool has_body = s.resp.status >= 200 && s.resp.status != 204 && s.resp.status != 304 && s.req.method != Method::Head;
  record(st_, s.req, s.match, s.resp, sent && has_body ? s.resp.body.size() : 0, s.start_us, proto_);
  return sent;
}

bool H2Core::submit(H2Stream& s) {
  const Response& r = s.resp;
  int status = r.status >= 200 && r.status <= 599 ? r.status : 500;  // a 1xx cannot end a stream
  bool bodiless = status == 204 || status == 304;
  char status_text[4];
  std::to_chars(status_text, status_text + 3, status);
  // A HEAD of a streamed response has no body here, only the length its GET would send.
  bool streamed_head = s.req.method == Method::Head && r.body.empty() && r.stream_size > 0;
  std::string length = std::to_string(streamed_head ? static_cast<uint64_t>(r.stream_size) : r.body.size());
  std::string_view date = w_.date_line;  // "Date: ...\r\n"
  if (date.size() > 8) date = date.substr(6, date.size() - 8);
  std::vector<nghttp2_nv> nva;
  nva.reserve(6 + r.headers.size());
  nva.push_back(nv(":status", {status_text, 3}));
  nva.push_back(nv("server", "harmar"));
  if (!date.empty()) nva.push_back(nv("date", date));
  if (r.content_type && !bodiless) nva.push_back(nv("content-type", r.content_type));
  if (!bodiless) nva.push_back(nv("content-length", length));
  nva.push_back(nv("x-request-id", s.req.request_id()));
  std::vector<std::string> names;  // lower-cased: HTTP/2 field names must be
  names.reserve(r.headers.size());
  for (const auto& [k, v] : r.headers) {
    if (connection_specific(k) || iequals(k, "content-length")) continue;
    std::string n(k);
    for (char& ch : n)
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + 32);
    // Never let a handler's header break the stream (HTTP/1.1 drops CR/LF ones the same way).
    if (!nghttp2_check_header_name(reinterpret_cast<const uint8_t*>(n.data()), n.size()) ||
        !nghttp2_check_header_value(reinterpret_cast<const uint8_t*>(v.data()), v.size()))
      continue;
    nva.push_back(nv(names.emplace_back(std::move(n)), v));
  }
  nghttp2_data_provider body{};
  body.source.ptr = &s;
  body.read_callback = read_body;
  bool with_body = !bodiless && s.req.method != Method::Head;
  if (nghttp2_submit_response(ng_, s.id, nva.data(), nva.size(), with_body ? &body : nullptr) != 0) return false;
  // A client that stops reading (or never opens its window) holds a response at most this long
  // without progress.
  s.deadline_ms = mono_ms() + st_.opts.write_timeout_ms;
  refresh();
  wake_.notify();
  return true;
}

ssize_t H2Core::read_body(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) {
  auto& s = *static_cast<H2Stream*>(source->ptr);
  const std::string& body = s.resp.body;
  std::size_t n = std::min(length, body.size() - s.sent);
  std::memcpy(buf, body.data() + s.sent, n);
  s.sent += n;
  if (s.sent == body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int H2Core::on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto& c = *static_cast<H2Core*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  H2Stream* s = c.stream(frame->hd.stream_id);
  if (!s) return 0;
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
    c.response_sent(*s);
  } else if (frame->hd.type == NGHTTP2_DATA) {
    // A response that keeps moving may take its time; one the client stops taking may not.
    s->deadline_ms = mono_ms() + c.st_.opts.write_timeout_ms;
  }
  return 0;
}

void H2Core::response_sent(H2Stream& s) {
  s.response_done = true;
  s.deadline_ms = 0;
  if (s.request_done) return;
  // Answered before the request ended (413, 431): a client with little left to send may finish;
  // one with more is told to stop (RFC 9113 §8.1).
  std::string_view cl = s.req.header("content-length");
  uint64_t declared = 0;
  bool known = !cl.empty() && std::from_chars(cl.data(), cl.data() + cl.size(), declared).ec == std::errc();
  if (s.dropped > kDrainAllowance || (known && declared > s.received + kDrainAllowance) ||
      (!known && s.header_overflow)) {
    stop_upload(s);
  } else {
    s.deadline_ms = mono_ms() + st_.opts.body_timeout_ms;
  }
}

void H2Core::stop_upload(H2Stream& s) {
  if (s.stop_sent) return;
  s.stop_sent = true;
  s.deadline_ms = 0;
  nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_NO_ERROR);
}

int H2Core::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* self) {
  auto& c = *static_cast<H2Core*>(self);
  if (H2Stream* s = c.stream(stream_id)) c.stream_closed(*s, error_code);
  return 0;
}

void H2Core::stream_closed(H2Stream& s, uint32_t error_code) {
  s.closed = true;
  s.deferred = 0;  // the connection window was given back as the bytes arrived
  // A stream that ends abnormally before its answer is out — reset by the client, or by us for
  // its protocol errors — is what a rapid-reset attack is made of, whoever sent the RST_STREAM.
  if (error_code != NGHTTP2_NO_ERROR && !s.response_done && !goaway_ && !resets_.add(mono_ms()))
    abuse("too many stream resets");
  if (!s.running) release_body(s);
  int32_t id = s.id;
  nghttp2_session_set_stream_user_data(ng_, id, nullptr);
  streams_.erase(id);  // a running handler keeps its own reference; without one, `s` is gone now
  grant_windows();
}

void H2Core::abuse(const char* what) {
  if (terminated_) return;
  terminated_ = true;
  st_.log->warn(log::fields({{"msg", "closing abusive http/2 connection"}, {"reason", what}, {"remote", remote_ip_}}));
  nghttp2_session_terminate_session(ng_, NGHTTP2_ENHANCE_YOUR_CALM);
  wake_.notify();
}

// --- the session: I/O ---------------------------------------------------------------------

template <class Io>
class H2Session final : public H2Core {
 public:
  H2Session(ServerState& st, Worker& w, Io io, std::string remote_ip)
      : H2Core(st, w, std::move(remote_ip), Io::kSecure), io_(std::move(io)) {}

  asio::awaitable<void> run(std::string preread, Request* upgrade);

 private:
  void close_transport() override {
    if (!open_) return;
    open_ = false;
    io_.cut();
    wake_.notify();
    resume_.notify();
  }
  asio::awaitable<void> read_loop(std::string preread);
  asio::awaitable<void> write_loop();
  asio::awaitable<void> refuse_upgrade(const Request& req);

  Io io_;
};

template <class Io>
asio::awaitable<void> H2Session<Io>::run(std::string preread, Request* upgrade) {
  std::string settings;
  if (upgrade) {
    auto decoded = base64url_decode(upgrade->header("HTTP2-Settings"));
    if (!decoded || decoded->size() % 6 != 0) {
      co_await refuse_upgrade(*upgrade);
      co_return;
    }
    settings = std::move(*decoded);
    deadline_ms = mono_ms() + st_.opts.write_timeout_ms;
    error_code ec;
    co_await io_.write(kSwitchingProtocols, ec);
    if (ec) {
      close_transport();
      co_return;
    }
  }
  if (open(upgrade, settings)) {
    if (w_.draining) drain();
    refresh();
    asio::co_spawn(w_.ioc, write_loop(), [this](std::exception_ptr e) {
      log_failure(st_, e, "http/2 writer failed");
      close_transport();
      writer_done_ = true;
      done_.notify();
    });
    co_await read_loop(std::move(preread));
    wake_.notify();
    while (!writer_done_) co_await done_.wait();
  } else {
    close_transport();
  }
  // Handlers of streams the client reset, or of a connection that is gone, still hold their
  // stream (and this session): wait for them, and drop what they answer.
  while (running_ > 0) co_await done_.wait();
}

template <class Io>
asio::awaitable<void> H2Session<Io>::read_loop(std::string preread) {
  if (!preread.empty() && !receive(preread)) co_return;
  std::string().swap(preread);
  while (open_ && nghttp2_session_want_read(ng_)) {
    if (reading_paused()) {
      // Handlers of reset streams pile up: take no new work until some finish.
      co_await resume_.wait();
      continue;
    }
    error_code ec;
    std::string_view data = co_await io_.read(ec);
    if (ec || data.empty()) {
      close_transport();  // the peer left, or the sweeper cut us off
      co_return;
    }
    if (!receive(data)) co_return;
  }
}

template <class Io>
asio::awaitable<void> H2Session<Io>::write_loop() {
  while (open_) {
    if (!produce()) break;
    if (!out_.empty()) {
      writing_ = true;
      write_started_ms_ = mono_ms();
      refresh();
      error_code ec;
      co_await io_.write(out_, ec);
      writing_ = false;
      if (out_.capacity() > 4 * kWriteChunk) {
        std::string().swap(out_);
      } else {
        out_.clear();
      }
      if (ec) break;
      refresh();
      continue;
    }
    if (finished()) {
      // GOAWAY sent and every stream done (drain, idle, abuse): end the connection cleanly.
      if (open_) {
        open_ = false;
        io_.finish();
        resume_.notify();
      }
      break;
    }
    co_await wake_.wait();
  }
  close_transport();
}

template <class Io>
asio::awaitable<void> H2Session<Io>::refuse_upgrade(const Request& req) {
  // RFC 9113 §3.2.1 (RFC 7540): no upgrade without valid settings; answered in HTTP/1.1.
  Response resp(Error::bad_request("bad_http2_settings", "HTTP2-Settings is not a base64url SETTINGS payload"));
  std::string out = "HTTP/1.1 400 Bad Request\r\nServer: harmar\r\n" + w_.date_line +
                    "Content-Type: application/problem+json\r\nContent-Length: " + std::to_string(resp.body.size()) +
                    "\r\nX-Request-Id: " + std::string(req.request_id()) + "\r\nConnection: close\r\n\r\n" +
                    resp.body;
  deadline_ms = mono_ms() + st_.opts.write_timeout_ms;
  error_code ec;
  co_await io_.write(out, ec);
  open_ = false;
  io_.finish();
}

}  // namespace

template <class Stream>
asio::awaitable<void> serve_h2(ServerState& st, Worker& w, Stream stream, std::string remote_ip, std::string preread,
                               Request* upgrade) {
  auto io = make_transport(std::move(stream), w);
  H2Session<decltype(io)> session(st, w, std::move(io), std::move(remote_ip));
  co_await session.run(std::move(preread), upgrade);
}

template asio::awaitable<void> serve_h2<tcp::socket>(ServerState&, Worker&, tcp::socket, std::string, std::string,
                                                     Request*);
template asio::awaitable<void> serve_h2<TlsStream>(ServerState&, Worker&, TlsStream, std::string, std::string,
                                                   Request*);

}  // namespace harmar::net::detail
