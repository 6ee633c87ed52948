// HTTP/1.1 sessions. The hot path avoids what makes a naive Beast server slow: no timer per
// operation (the worker's sweeper enforces deadlines), no buffer per idle connection (plain
// connections read into the worker's scratch buffer and keep only leftovers), no response
// serializer (the head is written straight into a reused string), and pipelined requests are
// answered with one write.
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

#include <array>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "net/detail/rate_limit.hpp"
#include "net/detail/sessions.hpp"

namespace harmar::net::detail {
namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using boost::system::error_code;

// --- transports ---------------------------------------------------------------------------

// Plain TCP: wait for readability, then read into the worker's scratch buffer. The bytes are
// valid until the session next suspends; the session copies what it keeps.
struct PlainTransport {
  static constexpr bool kSecure = false;
  tcp::socket sock;
  Worker& w;

  asio::awaitable<std::string_view> read(error_code& ec) {
    for (;;) {
      // Read first: only an EAGAIN read proves the socket drained, which guarantees the
      // edge-triggered reactor reports the next bytes to the wait below.
      std::size_t n = sock.read_some(asio::buffer(w.scratch.get(), Worker::kScratch), ec);
      if (!ec) co_return std::string_view(w.scratch.get(), n);
      if (ec != asio::error::would_block && ec != asio::error::try_again) co_return std::string_view();
      co_await sock.async_wait(tcp::socket::wait_read, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return std::string_view();
    }
  }

  asio::awaitable<void> write(std::string_view data, error_code& ec) {
    // Most responses fit the socket buffer: one non-blocking send, no suspension.
    std::size_t n = sock.write_some(asio::buffer(data), ec);
    if (!ec && n == data.size()) co_return;
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) co_return;
    if (ec) n = 0;
    ec = {};
    co_await asio::async_write(sock, asio::buffer(data.substr(n)), asio::redirect_error(asio::use_awaitable, ec));
  }

  void cut() {
    error_code ignored;
    sock.close(ignored);
  }

  void finish() {
    error_code ignored;
    sock.shutdown(tcp::socket::shutdown_send, ignored);
    sock.close(ignored);
  }
};

// TLS: OpenSSL keeps its own buffers, so each connection reads into a small buffer of its own.
struct TlsTransport {
  static constexpr bool kSecure = true;
  TlsStream stream;
  Worker& w;
  std::unique_ptr<char[]> buf = std::make_unique<char[]>(kBuf);
  static constexpr std::size_t kBuf = 16 * 1024;

  asio::awaitable<std::string_view> read(error_code& ec) {
    std::size_t n = co_await stream.async_read_some(asio::buffer(buf.get(), kBuf),
                                                    asio::redirect_error(asio::use_awaitable, ec));
    co_return std::string_view(buf.get(), ec ? 0 : n);
  }

  asio::awaitable<void> write(std::string_view data, error_code& ec) {
    co_await asio::async_write(stream, asio::buffer(data), asio::redirect_error(asio::use_awaitable, ec));
  }

  void cut() {
    error_code ignored;
    stream.lowest_layer().close(ignored);
  }

  void finish() {
    // No TLS close_notify round trip: the peer learns of the end from the TCP FIN, as with
    // most servers; it avoids holding the worker on a client that never answers.
    error_code ignored;
    stream.lowest_layer().shutdown(tcp::socket::shutdown_send, ignored);
    stream.lowest_layer().close(ignored);
  }
};

template <class T>
struct StreamOf;
template <>
struct StreamOf<PlainTransport> {
  using type = tcp::socket;
  static tcp::socket&& take(PlainTransport& t) { return std::move(t.sock); }
};
template <>
struct StreamOf<TlsTransport> {
  using type = TlsStream;
  static TlsStream&& take(TlsTransport& t) { return std::move(t.stream); }
};

// --- parsing ------------------------------------------------------------------------------

// Beast's request parser, feeding our Request directly: no header container, no body object.
class RequestParser final : public bhttp::basic_parser<true> {
 public:
  RequestParser(const ServerState& st, Request& req) : st_(st), req_(req) {
    header_limit(static_cast<std::uint32_t>(st.opts.header_limit));
    body_limit(boost::none);  // enforced per route in on_body_init_impl
    eager(true);
  }

  Match match;
  bool expect_continue = false;
  bool websocket_upgrade = false;
  bool h2c_upgrade = false;
  bool body_too_large = false;
  bool unsupported_coding = false;
  int64_t limit = 0;

 private:
  void on_request_impl(bhttp::verb, beast::string_view method, beast::string_view target, int version,
                       error_code& ec) override {
    req_.set_method(method);
    req_.set_target(target);
    req_.version = version;
  }
  void on_response_impl(int, beast::string_view, int, error_code& ec) override { ec = bhttp::error::bad_version; }

  void on_field_impl(bhttp::field f, beast::string_view name, beast::string_view value, error_code& ec) override {
    req_.add_header(name, value);
    switch (f) {
      case bhttp::field::transfer_encoding: saw_transfer_encoding_ = true; break;
      case bhttp::field::expect: expect_continue = iequals(value, "100-continue"); break;
      case bhttp::field::upgrade:
        websocket_upgrade = iequals(value, "websocket");
        h2c_upgrade = iequals(value, "h2c");
        break;
      default: break;
    }
  }

  void on_header_impl(error_code& ec) override {
    // RFC 9112 §6.1: a Transfer-Encoding we cannot frame by (anything not ending in chunked)
    // would leave the message length unknown, a classic smuggling vector. Refuse it.
    if (saw_transfer_encoding_ && !chunked()) {
      unsupported_coding = true;
      ec = bhttp::error::bad_transfer_encoding;
      return;
    }
    match = st_.router.match(req_.method, req_.path(), &req_);
    limit = body_limit_for(st_, match);
    // Refuse on the declared length alone, before a byte of the body is read.
    if (auto length = content_length(); length && *length > static_cast<std::uint64_t>(limit)) {
      body_too_large = true;
      ec = bhttp::error::body_limit;
    }
  }

  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code& ec) override {
    if (length && *length > static_cast<std::uint64_t>(limit)) {
      body_too_large = true;
      ec = bhttp::error::body_limit;
      return;
    }
    if (length) req_.body.reserve(static_cast<std::size_t>(*length));
  }

  std::size_t on_body_impl(beast::string_view body, error_code& ec) override { return append(body, ec); }

  void on_chunk_header_impl(std::uint64_t size, beast::string_view, error_code& ec) override {
    if (req_.body.size() + size > static_cast<std::uint64_t>(limit)) {
      body_too_large = true;
      ec = bhttp::error::body_limit;
    }
  }

  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, error_code& ec) override {
    return append(body, ec);
  }

  void on_finish_impl(error_code&) override {}

  std::size_t append(std::string_view body, error_code& ec) {
    if (req_.body.size() + body.size() > static_cast<std::size_t>(limit)) {
      body_too_large = true;
      ec = bhttp::error::body_limit;
      return 0;
    }
    req_.body.append(body);
    return body.size();
  }

  const ServerState& st_;
  Request& req_;
  bool saw_transfer_encoding_ = false;
};

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

void append_number(std::string& out, std::size_t n) {
  char buf[24];
  char* end = buf + sizeof buf;
  char* p = end;
  do {
    *--p = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n);
  out.append(p, static_cast<std::size_t>(end - p));
}

// Appends the response; returns the number of body bytes sent.
std::size_t serialize(std::string& out, const Worker& w, const Request& req, const Response& resp, bool keep_alive,
                      int version) {
  out += status_line(resp.status);
  out += "Server: harmar\r\n";
  out += w.date_line;
  if (resp.content_type && resp.status != 204 && resp.status != 304) {
    out += "Content-Type: ";
    out += resp.content_type;
    out += "\r\n";
  }
  bool bodiless = resp.status == 204 || resp.status == 304 || resp.status < 200;
  if (!bodiless) {
    out += "Content-Length: ";
    append_number(out, resp.body.size());
    out += "\r\n";
  }
  out += "X-Request-Id: ";
  out += req.request_id();
  out += "\r\n";
  for (const auto& [k, v] : resp.headers) {
    if (!header_safe(k) || !header_safe(v)) continue;  // never let a value split the response
    out += k;
    out += ": ";
    out += v;
    out += "\r\n";
  }
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (version == 10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  if (bodiless || req.method == Method::Head) return 0;
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
    req_.secure = T::kSecure;
    w_.register_connection(*this);
  }
  ~Http1Session() override { w_.unregister_connection(*this); }

  void cut() override { t_.cut(); }

  asio::awaitable<void> run();

 private:
  asio::awaitable<bool> flush();
  asio::awaitable<void> answer_and_close(const Error& e);
  asio::awaitable<void> upgrade_to_h2(std::string preread, Request* upgrade);

  ServerState& st_;
  Worker& w_;
  T& t_;
  Request req_;
  std::string pending_;  // received bytes not parsed yet (usually empty)
  std::string out_;      // responses not written yet
  RateLimit rate_;
};

template <class T>
asio::awaitable<bool> Http1Session<T>::flush() {
  if (out_.empty()) co_return true;
  deadline_ms = mono_ms() + st_.opts.write_timeout_ms;
  error_code ec;
  co_await t_.write(out_, ec);
  deadline_ms = 0;
  if (out_.capacity() > 256 * 1024) {
    std::string().swap(out_);
  } else {
    out_.clear();
  }
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
asio::awaitable<void> Http1Session<T>::run() {
  if constexpr (!T::kSecure) {
    // h2c with prior knowledge: the client opens with the HTTP/2 preface instead of a request.
    deadline_ms = mono_ms() + st_.opts.header_timeout_ms;
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
  while (keep_alive) {
    req_.clear();
    if (req_.body.capacity() > 64 * 1024) std::string().swap(req_.body);
    RequestParser parser(st_, req_);
    idle = pending_.empty();
    if (idle && (draining || w_.draining)) break;
    deadline_ms = mono_ms() + (idle ? st_.opts.idle_timeout_ms : st_.opts.header_timeout_ms);
    bool need_more = pending_.empty();
    bool header_seen = false;
    int64_t start_us = 0;
    error_code ec;
    while (!parser.is_done()) {
      std::string_view data;
      if (!need_more) {
        data = pending_;
      } else {
        // Nothing parseable is buffered: answer what is pipelined before waiting on the client.
        if (!out_.empty() && !co_await flush()) co_return;
        std::string_view chunk = co_await t_.read(ec);
        if (ec || chunk.empty()) {
          t_.cut();
          co_return;
        }
        if (idle) {
          idle = false;
          deadline_ms = mono_ms() + st_.opts.header_timeout_ms;
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
      if (ec == bhttp::error::need_more) {
        need_more = true;
        ec = {};
        continue;
      }
      need_more = pending_.empty();
      if (ec) {
        co_await answer_and_close(parse_error(ec, parser));
        co_return;
      }
      if (parser.is_header_done() && !header_seen) {
        header_seen = true;
        start_us = mono_us();
        deadline_ms = mono_ms() + st_.opts.body_timeout_ms;
        if (!parser.is_done() && parser.expect_continue && req_.version == 11) {
          out_ += "HTTP/1.1 100 Continue\r\n\r\n";
          if (!co_await flush()) co_return;
        }
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
      co_await serve_websocket(st_, w_, StreamOf<T>::take(t_), req_, *m.route);
      co_return;
    }
    if (upgrade && parser.h2c_upgrade && req_.has_header("HTTP2-Settings") && !T::kSecure) {
      if (!co_await flush()) co_return;
      co_await upgrade_to_h2(std::move(pending_), &req_);
      co_return;
    }

    Response resp;
    if (!rate_.take(start_us)) {
      resp = Error::rate_limited(1, "this connection sends requests faster than " +
                                        std::to_string(st_.opts.connection_rps) + " per second");
    } else {
      resp = co_await dispatch(st_, req_, m, start_us);
    }
    keep_alive = parser.keep_alive() && !draining && !w_.draining && resp.find_header("Connection") != "close";
    std::size_t sent = serialize(out_, w_, req_, resp, keep_alive, req_.version);
    record(st_, req_, m, resp, sent, start_us, T::kSecure ? "https/1.1" : "http/1.1");
    if (pending_.empty() || out_.size() > 64 * 1024 || !keep_alive) {
      if (!co_await flush()) co_return;
    }
  }
  if (!co_await flush()) co_return;
  t_.finish();
}

template <class T>
asio::awaitable<void> Http1Session<T>::upgrade_to_h2(std::string preread, Request* upgrade) {
  std::string ip(req_.remote_ip());
  co_await serve_h2(st_, w_, StreamOf<T>::take(t_), std::move(ip), std::move(preread), upgrade);
}

}  // namespace

template <>
asio::awaitable<void> serve_http1<tcp::socket>(ServerState& st, Worker& w, tcp::socket sock, std::string remote_ip) {
  error_code ec;
  sock.non_blocking(true, ec);
  sock.set_option(tcp::no_delay(true), ec);
  PlainTransport t{std::move(sock), w};
  Http1Session<PlainTransport> session(st, w, t, std::move(remote_ip));
  co_await session.run();
}

template <>
asio::awaitable<void> serve_http1<TlsStream>(ServerState& st, Worker& w, TlsStream stream, std::string remote_ip) {
  TlsTransport t{std::move(stream), w};
  Http1Session<TlsTransport> session(st, w, t, std::move(remote_ip));
  co_await session.run();
}

}  // namespace harmar::net::detail
