// HTTP/1.1 sessions. The hot path avoids what makes a naive Beast server slow: no timer per
// operation (the worker's sweeper enforces deadlines), no large buffer per connection (plain
// connections read into a 1 KiB inbox or the worker's scratch buffer and keep only leftovers;
// parked ones hold no buffer at all), no re-arming of the socket per request, no response
// serializer (the head is written straight into a reused string), and pipelined requests are
// answered with one write.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

#include <array>
#include <cstring>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "net/detail/rate_limit.hpp"
#include "net/detail/request_parser.hpp"
#include "net/detail/transport.hpp"

namespace harmar::net::detail {
namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using boost::system::error_code;

// --- serialising --------------------------------------------------------------------------

const std::string& status_line(int status) {
  static const auto table = [] {
    std::array<std::string, 600> t;
    for (int s = 100; s < 600; ++s) t[s] = "HTTP/1.1 " + std::to_string(s) + " " + status_title(s) + "\r\n";
    return t;
  }();
  static const std::string fallback = "HTTP/1.1 500 Internal Server Error\r\n";
  return status >= 100 && status < 600 ? table[status] : fallback;
}

bool header_safe(std::string_view s) { return s.find_first_of("\r\n") == std::string_view::npos; }

// Collects a response head in a stack buffer and appends it to `out` at once. A dozen
// std::string appends per response (each a call, a capacity check and, for a C string, a strlen)
// cost more than the rest of serialising; copies of known length into a local buffer cost little.
class HeadWriter {
 public:
  explicit HeadWriter(std::string& out) : out_(out) {}
  HeadWriter(const HeadWriter&) = delete;
  HeadWriter& operator=(const HeadWriter&) = delete;
  ~HeadWriter() { flush(); }

  // Inlined so that a literal's copy is a few moves of a known size.
  [[gnu::always_inline]] void put(std::string_view s) {
    if (s.size() > sizeof buf_ - used_) [[unlikely]] {
      flush();
      if (s.size() > sizeof buf_) {
        out_.append(s);
        return;
      }
    }
    std::memcpy(buf_ + used_, s.data(), s.size());
    used_ += s.size();
  }

  void put_number(std::size_t n) {
    char digits[24];
    char* end = digits + sizeof digits;
    char* p = end;
    do {
      *--p = static_cast<char>('0' + n % 10);
      n /= 10;
    } while (n);
    put(std::string_view(p, static_cast<std::size_t>(end - p)));
  }

  void flush() {
    out_.append(buf_, used_);
    used_ = 0;
  }

 private:
  std::string& out_;
  char buf_[512];
  std::size_t used_ = 0;
};

// Appends the response; returns the number of body bytes sent.
std::size_t serialize(std::string& out, const Worker& w, const Request& req, const Response& resp, bool keep_alive,
                      int version) {
  using namespace std::string_view_literals;
  bool bodiless = resp.status == 204 || resp.status == 304 || resp.status < 200;
  {
    HeadWriter head(out);
    head.put(status_line(resp.status));
    head.put("Server: harmar\r\n"sv);
    head.put(w.date_line);
    if (resp.content_type && resp.status != 204 && resp.status != 304) {
      head.put("Content-Type: "sv);
      head.put(resp.content_type);
      head.put("\r\n"sv);
    }
    if (!bodiless) {
      head.put("Content-Length: "sv);
      head.put_number(resp.stream ? static_cast<std::size_t>(resp.stream_size) : resp.body.size());
      head.put("\r\n"sv);
    }
    head.put("X-Request-Id: "sv);
    head.put(req.request_id());
    head.put("\r\n"sv);
    for (const auto& [k, v] : resp.headers) {
      if (!header_safe(k) || !header_safe(v)) continue;  // never let a value split the response
      head.put(k);
      head.put(": "sv);
      head.put(v);
      head.put("\r\n"sv);
    }
    if (!keep_alive) {
      head.put("Connection: close\r\n"sv);
    } else if (version == 10) {
      head.put("Connection: keep-alive\r\n"sv);
    }
    head.put("\r\n"sv);
  }
  if (bodiless || req.method == Method::Head) return 0;
  if (resp.stream) return static_cast<std::size_t>(resp.stream_size);  // sent by send_stream()
  out += resp.body;
  return resp.body.size();
}

Error parse_error(const error_code& ec, const RequestParser& p) {
  if (ec == bhttp::error::header_limit) return Error{431, "header_too_large", "request header fields are too large"};
  if (ec == bhttp::error::body_limit || p.body_too_large)
    return Error::payload_too_large("request body exceeds " + std::to_string(p.limit) + " bytes");
  if (p.unsupported_coding)
    return Error{501, "unsupported_transfer_encoding", "only chunked transfer coding is supported"};
  if (ec == bhttp::error::bad_version) return Error{505, "http_version_not_supported", "HTTP/1.0 and 1.1 only"};
  return Error::bad_request("malformed_request", "malformed HTTP request: " + ec.message());
}

// --- the session --------------------------------------------------------------------------

template <class T>
class Http1Session final : public Connection {
 public:
  Http1Session(ServerState& st, Worker& w, T& t, std::string remote_ip) : st_(st), w_(w), t_(t), rate_(st.opts.connection_rps) {
    req_.set_remote_ip(remote_ip);
    req_.set_connection_fd(t_.native_fd());
    req_.secure = T::kSecure;
    w_.register_connection(*this);
  }
  ~Http1Session() override { w_.unregister_connection(*this); }

  void cut() override { t_.cut(); }
  bool park() override {
    if constexpr (T::kSecure) {
      return false;  // OpenSSL's state cannot be set aside
    } else {
      if (!idle || !waiting_ || !w_.lot) return false;
      park_requested_ = true;
      boost::system::error_code ignored;
      t_.sock.cancel(ignored);
      return true;
    }
  }
  // True when run() returned to give up an idle connection's state (see park()).
  bool parked() const { return parked_; }

  asio::awaitable<void> run();

 private:
  enum class Flush { Done, Pending, Failed };
  // Writes the queued responses if the socket takes them now (no suspension, the common case).
  Flush flush_now();
  // Writes the queued responses, suspending as needed; false if the connection failed.
  asio::awaitable<bool> flush();
  void written();
  asio::awaitable<void> answer_and_close(const Error& e);
  // Streamed request bodies (RouteOptions::stream_body): the next piece, parsed from what is
  // buffered or read from the socket now, never ahead of the handler.
  asio::awaitable<Result<std::string_view>> read_body(RequestParser& parser);
  // Writes a streamed response body after its head; false if it could not be sent whole.
  asio::awaitable<bool> send_stream(BodyStream& stream, int64_t size);
  // Closes after an answer that left a streamed body unread (see the definition).
  asio::awaitable<void> linger_close();
  static constexpr int64_t kLingerMs = 2000;
  static constexpr std::size_t kLingerBytes = 1 << 20;

  class Source final : public BodySource {
   public:
    Source(Http1Session& s, RequestParser& p) : s_(s), p_(p) {}
    asio::awaitable<Result<std::string_view>> read() override { return s_.read_body(p_); }
    std::optional<int64_t> length() const override {
      auto n = p_.content_length();
      return n ? std::optional<int64_t>(static_cast<int64_t>(*n)) : std::nullopt;
    }

   private:
    Http1Session& s_;
    RequestParser& p_;
  };
  asio::awaitable<void> upgrade_to_h2(std::string preread, Request* upgrade);
  static constexpr std::size_t kInbox = 1024;

  ServerState& st_;
  Worker& w_;
  T& t_;
  Request req_;
  std::string pending_;  // received bytes not parsed yet (usually empty)
  std::string out_;      // responses not written yet
  RateLimit rate_;
  bool waiting_ = false;  // suspended waiting for the client to send
  bool park_requested_ = false;
  bool parked_ = false;
  // Streamed body state: whether req_.body was handed out (and may be cleared), and the error
  // that ended the body, if any (repeated to every later read).
  bool body_handed_ = false;
  std::optional<Error> body_error_;
  bool client_hung_up_ = false;
  // Plain connections: where a waiting read lands (allocated at the first wait), and whether the
  // last one filled it (this client sends requests larger than the inbox).
  std::unique_ptr<char[]> inbox_;
  bool inbox_overflowed_ = false;
};

template <class T>
void Http1Session<T>::written() {
  if (out_.capacity() > 256 * 1024) {
    std::string().swap(out_);
  } else {
    out_.clear();
  }
}

template <class T>
typename Http1Session<T>::Flush Http1Session<T>::flush_now() {
  if (out_.empty()) return Flush::Done;
  error_code ec;
  std::size_t n = t_.write_now(out_, ec);
  if (!ec) {
    written();
    return Flush::Done;
  }
  if (ec != asio::error::would_block) return Flush::Failed;
  out_.erase(0, n);
  return Flush::Pending;
}

template <class T>
asio::awaitable<bool> Http1Session<T>::flush() {
  switch (flush_now()) {
    case Flush::Done: co_return true;
    case Flush::Failed: co_return false;
    case Flush::Pending: break;
  }
  deadline_ms = w_.deadline_after(st_.opts.write_timeout_ms);
  error_code ec;
  co_await t_.write(out_, ec);
  deadline_ms = 0;
  written();
  co_return !ec;
}

template <class T>
asio::awaitable<void> Http1Session<T>::answer_and_close(const Error& e) {
  if (req_.request_id().empty()) assign_request_id(req_);
  serialize(out_, w_, req_, Response(e), false, 11);
  co_await flush();
  t_.finish();
}

template <class T>
asio::awaitable<Result<std::string_view>> Http1Session<T>::read_body(RequestParser& parser) {
  if (body_handed_) req_.body.clear();
  body_handed_ = true;
  if (body_error_) co_return *body_error_;
  // Bytes parsed with the header (eager parsing) are already in req_.body.
  bool need_more = pending_.empty();
  while (req_.body.empty() && !parser.is_done()) {
    if (need_more) {
      deadline_ms = w_.deadline_after(st_.opts.body_timeout_ms);
      error_code ec;
      std::string_view chunk = co_await t_.read(ec);
      deadline_ms = 0;
      if (ec || chunk.empty()) {
        client_hung_up_ = true;
        body_error_ = Error::bad_request("incomplete_body", "the connection ended before the whole request body arrived");
        co_return *body_error_;
      }
      pending_.append(chunk);  // copied: the scratch buffer is reused once we suspend
    }
    error_code ec;
    std::size_t n = parser.put(asio::buffer(pending_.data(), pending_.size()), ec);
    pending_.erase(0, n);
    if (ec == bhttp::error::need_more) {
      need_more = true;
      continue;
    }
    if (ec) {
      body_error_ = parse_error(ec, parser);
      co_return *body_error_;
    }
    need_more = pending_.empty();
  }
  co_return std::string_view(req_.body);
}

template <class T>
asio::awaitable<bool> Http1Session<T>::send_stream(BodyStream& stream, int64_t size) {
  int64_t sent = 0;
  for (;;) {
    auto chunk = co_await stream.read();
    if (!chunk) {
      st_.log->warn(log::fields({{"msg", "streamed response failed"},
                                 {"error", chunk.error().detail},
                                 {"request_id", req_.request_id()}}));
      co_return false;
    }
    if (chunk->empty()) break;
    sent += static_cast<int64_t>(chunk->size());
    if (sent > size) co_return false;
    deadline_ms = w_.deadline_after(st_.opts.write_timeout_ms);
    error_code ec;
    co_await t_.write(*chunk, ec);
    deadline_ms = 0;
    if (ec) co_return false;
  }
  co_return sent == size;
}

template <class T>
asio::awaitable<void> Http1Session<T>::run() {
  if constexpr (!T::kSecure) {
    // h2c with prior knowledge: the client opens with the HTTP/2 preface instead of a request.
    deadline_ms = w_.deadline_after(st_.opts.header_timeout_ms);
    for (;;) {
      error_code ec;
      std::string_view chunk = co_await t_.read(ec);
      if (ec || chunk.empty()) {
        t_.cut();
        co_return;
      }
      pending_.append(chunk);
      std::size_t k = std::min(pending_.size(), kH2Preface.size());
      if (pending_.compare(0, k, kH2Preface.substr(0, k)) != 0) break;
      if (pending_.size() >= kH2Preface.size()) {
        co_await upgrade_to_h2(std::move(pending_), nullptr);
        co_return;
      }
    }
  }
  bool keep_alive = true;
  bool linger = false;  // a streamed body was left unread: drain a little before closing
  while (keep_alive) {
    req_.clear();
    if (req_.body.capacity() > 64 * 1024) std::string().swap(req_.body);
    RequestParser parser(st_, req_);
    idle = pending_.empty();
    if (idle) idle_since_ms = w_.now_ms;
    if (idle && (draining || w_.draining)) break;
    deadline_ms = w_.deadline_after(idle ? st_.opts.idle_timeout_ms : st_.opts.header_timeout_ms);
    bool need_more = pending_.empty();
    bool header_seen = false;
    bool streaming = false;
    int64_t start_us = 0;
    error_code ec;
    while (!parser.is_done() && !streaming) {
      std::string_view data;
      if (!need_more) {
        data = pending_;
      } else {
        // Nothing parseable is buffered: answer what is pipelined before waiting on the client.
        if (Flush f = flush_now(); f != Flush::Done) {
          if (f == Flush::Failed) co_return;
          bool flushed = co_await flush();
          if (!flushed) co_return;
        }
        std::string_view chunk = t_.read_now(ec);
        while (ec == asio::error::would_block) {
          ec = {};
          if constexpr (T::kSecure) {
            chunk = co_await t_.read(ec);
          } else {
            // Inline rather than through read(): no coroutine frame per request.
            //
            // An async_wait costs an epoll_ctl per request (Asio re-arms the descriptor for each
            // wait); a read costs none (the descriptor stays registered, edge-triggered). So a
            // client whose requests fit the inbox is waited for with a read into it: one recv per
            // request, like nginx (once a read drained the socket, expect_readable_edge stops Asio
            // from trying the read before epoll reports data: it could only say EAGAIN). The inbox
            // is the session's, not the worker's scratch buffer: a read that completes at once is
            // delivered later, after other sessions may have used the scratch buffer. Larger
            // requests wait for readiness and read the scratch.
            waiting_ = true;
            std::size_t got = 0;
            if (inbox_overflowed_) {
              co_await t_.sock.async_wait(tcp::socket::wait_read, asio::redirect_error(asio::use_awaitable, ec));
            } else {
              if (!inbox_) inbox_ = std::make_unique_for_overwrite<char[]>(kInbox);
              got = co_await t_.sock.async_read_some(asio::buffer(inbox_.get(), kInbox),
                                                     asio::redirect_error(asio::use_awaitable, ec));
            }
            waiting_ = false;
            if (ec == asio::error::operation_aborted && park_requested_) {
              parked_ = true;
              co_return;
            }
            park_requested_ = false;  // the read completed before the sweeper's cancel reached it
            if (!ec && inbox_overflowed_) {
              t_.drained = false;
              chunk = t_.read_now(ec);
              inbox_overflowed_ = chunk.size() >= kInbox;
            } else if (!ec) {
              chunk = std::string_view(inbox_.get(), got);
              t_.set_drained(got < kInbox);  // a full inbox may have left more: read on into the scratch buffer
              inbox_overflowed_ = got == kInbox;
            }
          }
        }
        if (ec || chunk.empty()) {
          t_.cut();
          co_return;
        }
        if (idle) {
          idle = false;
          deadline_ms = w_.deadline_after(st_.opts.header_timeout_ms);
        }
        if (pending_.empty()) {
          data = chunk;
        } else {
          pending_.append(chunk);
          data = pending_;
        }
      }
      std::size_t n = parser.put(asio::buffer(data.data(), data.size()), ec);
      if (data.data() == pending_.data()) {
        pending_.erase(0, n);
      } else {
        pending_.assign(data.substr(n));
      }
      bool wants_more = ec == bhttp::error::need_more;
      if (wants_more) {
        ec = {};
      } else if (ec) {
        co_await answer_and_close(parse_error(ec, parser));
        co_return;
      }
      need_more = wants_more || pending_.empty();
      // Also after need_more: a chunked body can end a read mid-chunk right after the header.
      if (parser.is_header_done() && !header_seen) {
        header_seen = true;
        start_us = mono_us();
        deadline_ms = w_.deadline_after(st_.opts.body_timeout_ms);
        if (!parser.is_done() && parser.expect_continue && req_.version == 11) {
          out_ += "HTTP/1.1 100 Continue\r\n\r\n";
          if (!co_await flush()) co_return;
        }
        // The handler reads the rest of the body itself (read_body), as fast as it consumes it.
        streaming = parser.streaming && !parser.upgrade();
      }
    }
    deadline_ms = 0;  // the handler runs without a client deadline

    assign_request_id(req_);
    const Match& m = parser.match;
    bool upgrade = parser.upgrade();
    if (upgrade && parser.websocket_upgrade && m.route && m.route->websocket) {
      if (auto refused = co_await authorize_route(st_, req_, *m.route)) {
        std::size_t sent = serialize(out_, w_, req_, *refused, false, req_.version);
        record(st_, req_, m, *refused, sent, start_us, "websocket");
        co_await flush();
        t_.finish();
        co_return;
      }
      if (!co_await flush()) co_return;
      co_await serve_websocket(st_, w_, t_.take(), req_, *m.route);
      co_return;
    }
    if (upgrade && parser.h2c_upgrade && req_.has_header("HTTP2-Settings") && !T::kSecure) {
      if (!co_await flush()) co_return;
      co_await upgrade_to_h2(std::move(pending_), &req_);
      co_return;
    }

    Response resp;
    std::optional<Source> source;
    if (streaming) {
      source.emplace(*this, parser);
      req_.body_source = &*source;
      body_handed_ = false;
      body_error_.reset();
      client_hung_up_ = false;
    }
    if (!rate_.take(start_us)) {
      resp = Error::rate_limited(1, "this connection sends requests faster than " +
                                        std::to_string(st_.opts.connection_rps) + " per second");
    } else {
      resp = co_await dispatch(st_, req_, m, start_us);
    }
    req_.body_source = nullptr;
    if (streaming && client_hung_up_) {
      record(st_, req_, m, resp, 0, start_us, T::kSecure ? "https/1.1" : "http/1.1");
      t_.cut();
      co_return;
    }
    // A streamed body the handler left unread (an early refusal) cannot be skipped safely.
    keep_alive = parser.keep_alive() && parser.is_done() && !draining && !w_.draining &&
                 resp.find_header("Connection") != "close";
    linger = streaming && !parser.is_done();
    std::size_t sent = serialize(out_, w_, req_, resp, keep_alive, req_.version);
    record(st_, req_, m, resp, sent, start_us, T::kSecure ? "https/1.1" : "http/1.1");
    if (resp.stream && sent > 0) {
      bool flushed = co_await flush();
      if (!flushed) co_return;
      bool whole = co_await send_stream(*resp.stream, resp.stream_size);
      if (!whole) {
        t_.cut();
        co_return;
      }
      continue;
    }
    if (pending_.empty() || out_.size() > 64 * 1024 || !keep_alive) {
      if (Flush f = flush_now(); f != Flush::Done) {
        if (f == Flush::Failed) co_return;
        bool flushed = co_await flush();
        if (!flushed) co_return;
      }
    }
  }
  if (!co_await flush()) co_return;
  if (linger) {
    co_await linger_close();
    co_return;
  }
  t_.finish();
}

template <class T>
asio::awaitable<void> Http1Session<T>::linger_close() {
  if constexpr (T::kSecure) {
    t_.finish();
  } else {
    // Closing with unread bytes in the receive queue makes the kernel send a reset, which can
    // destroy the answer before the client reads it. Like nginx's lingering close: stop sending,
    // then read and drop what the client still sends, for a bounded time and amount.
    error_code ignored;
    t_.sock.shutdown(tcp::socket::shutdown_send, ignored);
    deadline_ms = w_.deadline_after(kLingerMs);
    std::size_t dropped = 0;
    while (dropped < kLingerBytes) {
      error_code ec;
      std::string_view chunk = co_await t_.read(ec);
      if (ec || chunk.empty()) break;
      dropped += chunk.size();
    }
    deadline_ms = 0;
    t_.cut();
  }
}

template <class T>
asio::awaitable<void> Http1Session<T>::upgrade_to_h2(std::string preread, Request* upgrade) {
  deadline_ms = 0;  // the HTTP/2 session keeps its own deadlines from here
  std::string ip(req_.remote_ip());
  co_await serve_h2(st_, w_, t_.take(), std::move(ip), std::move(preread), upgrade);
}

}  // namespace

template <class Stream>
asio::awaitable<void> serve_http1(ServerState& st, Worker& w, Stream stream, std::string remote_ip) {
  auto t = make_transport(std::move(stream), w);
  Http1Session<decltype(t)> session(st, w, t, remote_ip);
  co_await session.run();
  if constexpr (std::is_same_v<Stream, tcp::socket>) {
    if (session.parked()) w.lot->park(t.take(), session.deadline_ms);
  }
}

template asio::awaitable<void> serve_http1<tcp::socket>(ServerState&, Worker&, tcp::socket, std::string);
template asio::awaitable<void> serve_http1<TlsStream>(ServerState&, Worker&, TlsStream, std::string);

}  // namespace harmar::net::detail
