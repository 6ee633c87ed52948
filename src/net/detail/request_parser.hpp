#pragma once
// Internal to src/net: Beast's HTTP/1.1 request parser feeding our Request directly (no header
// container, no body object), with our limits: the route's body limit is known as soon as the
// header is, and a body declared larger is refused before a byte of it is read.
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

#include <string_view>

#include "net/detail/server_state.hpp"

namespace harmar::net::detail {

namespace beast = boost::beast;
namespace bhttp = beast::http;

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
  bool streaming = false;  // the route reads its body as a stream: nothing is reserved up front
  int64_t limit = 0;
  uint64_t received = 0;  // body bytes parsed so far (all of them, also those handed out)

 private:
  void on_request_impl(bhttp::verb, beast::string_view method, beast::string_view target, int version,
                       boost::system::error_code& ec) override {
    req_.set_method(method);
    req_.set_target(target);
    req_.version = version;
  }
  void on_response_impl(int, beast::string_view, int, boost::system::error_code& ec) override { ec = bhttp::error::bad_version; }

  void on_field_impl(bhttp::field f, beast::string_view name, beast::string_view value, boost::system::error_code& ec) override {
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

  void on_header_impl(boost::system::error_code& ec) override {
    // RFC 9112 §6.1: a Transfer-Encoding we cannot frame by (anything not ending in chunked)
    // would leave the message length unknown, a classic smuggling vector. Refuse it.
    if (saw_transfer_encoding_ && !chunked()) {
      unsupported_coding = true;
      ec = bhttp::error::bad_transfer_encoding;
      return;
    }
    match = st_.router.match(req_.method, req_.path(), &req_);
    limit = body_limit_for(st_, match);
    streaming = match.route && match.route->options.stream_body;
    // Refuse on the declared length alone, before a byte of the body is read.
    if (auto length = content_length(); length && *length > static_cast<std::uint64_t>(limit)) {
      body_too_large = true;
      ec = bhttp::error::body_limit;
    }
  }

  void on_body_init_impl(const boost::optional<std::uint64_t>& length, boost::system::error_code& ec) override {
    if (length && *length > static_cast<std::uint64_t>(limit)) {
      body_too_large = true;
      ec = bhttp::error::body_limit;
      return;
    }
    if (length && !streaming) req_.body.reserve(static_cast<std::size_t>(*length));
  }

  std::size_t on_body_impl(beast::string_view body, boost::system::error_code& ec) override { return append(body, ec); }

  void on_chunk_header_impl(std::uint64_t size, beast::string_view, boost::system::error_code& ec) override {
    if (received + size > static_cast<std::uint64_t>(limit)) {
      body_too_large = true;
      ec = bhttp::error::body_limit;
    }
  }

  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, boost::system::error_code& ec) override {
    return append(body, ec);
  }

  void on_finish_impl(boost::system::error_code&) override {}

  std::size_t append(std::string_view body, boost::system::error_code& ec) {
    if (received + body.size() > static_cast<std::uint64_t>(limit)) {
      body_too_large = true;
      ec = bhttp::error::body_limit;
      return 0;
    }
    received += body.size();
    req_.body.append(body);
    return body.size();
  }

  const ServerState& st_;
  Request& req_;
  bool saw_transfer_encoding_ = false;
};

// Parses `bytes` as a client's stream of requests, in pieces sized from the input itself, the way
// a session would (for the fuzz target in tests/fuzz). Returns the number of complete requests.
std::size_t fuzz_parse_requests(std::string_view bytes);

}  // namespace harmar::net::detail
