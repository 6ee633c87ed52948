#pragma once
// The protocol-independent request and response every handler sees. HTTP/1.1 and HTTP/2 both
// fill a Request and serialise a Response; a handler never knows which carried it.
#include <boost/asio/awaitable.hpp>
#include <boost/json/fwd.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/principal.hpp"
#include "core/result.hpp"

namespace harmar::net {

enum class Method : uint8_t { Get, Head, Post, Put, Patch, Delete, Options, Other };
inline constexpr std::size_t kMethodCount = 8;
std::string_view method_name(Method m);
Method parse_method(std::string_view s);

// Case-insensitive ASCII comparison, for header names and tokens.
bool iequals(std::string_view a, std::string_view b);

// A request body read while it arrives, for routes with RouteOptions::stream_body. The socket
// is read only when the handler asks, so a slow consumer slows the client down (TCP backpressure)
// and the server holds at most one read's worth of the body (about 64 KiB).
class BodySource {
 public:
  virtual ~BodySource() = default;
  // The next bytes of the body, valid until the next read(); empty once the body is complete.
  // Errors (the body is then unusable, and the connection is closed after the response):
  //   413 `payload_too_large`  more than the route's body_limit arrived (chunked bodies);
  //   400 `incomplete_body`    the client hung up or went silent past limits.body_timeout;
  //   400 `malformed_request`  broken chunked framing.
  // A handler that gets an error must commit nothing.
  virtual boost::asio::awaitable<Result<std::string_view>> read() = 0;
  // The declared Content-Length; nullopt for a chunked body.
  virtual std::optional<int64_t> length() const = 0;
};

// A response body produced while it is sent (Response::stream), e.g. read from blob storage.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // The next bytes; empty at the end. An error mid-body cuts the connection (the client sees a
  // short body against Content-Length, never a silently truncated one).
  virtual boost::asio::awaitable<Result<std::string>> read() = 0;
};

class Request {
 public:
  Method method = Method::Get;
  int version = 11;  // 10, 11 or 20
  bool secure = false;
  std::string body;  // the whole body; empty on stream_body routes (read body_source instead)
  BodySource* body_source = nullptr;   // set on stream_body routes (HTTP/1.1), for the handler's run
  std::optional<Principal> principal;  // set by the route's auth hook

  std::string_view method_text() const { return view(method_); }
  std::string_view target() const { return view(target_); }
  std::string_view path() const;   // target up to '?', not decoded
  std::string_view query() const;  // after '?', not decoded; "" if none
  // The first value of a query parameter, percent-decoded ('+' is a space).
  std::optional<std::string> query_param(std::string_view name) const;
  // The first header with this name (case-insensitive), "" when absent.
  std::string_view header(std::string_view name) const;
  bool has_header(std::string_view name) const;
  std::size_t header_count() const { return headers_.size(); }
  std::pair<std::string_view, std::string_view> header_at(std::size_t i) const;
  // A path parameter of the matched route ("{id}" → param("id")), percent-decoded.
  std::string_view param(std::string_view name) const;
  std::string_view remote_ip() const { return remote_ip_; }
  std::string_view request_id() const { return {request_id_.data(), request_id_len_}; }
  std::string_view route() const { return route_; }  // the matched pattern, e.g. "/v1/tasks/{id}"
  // Whether the client has closed its connection while the handler ran. Long-polls ask before
  // taking work on a client's behalf: a killed client's poll must not lease tasks nobody will
  // run. false when the carrying protocol cannot tell (HTTP/2 streams, in-process requests).
  bool client_gone() const;

  // Filled by the protocol layers and the router.
  void clear();
  void set_method(std::string_view m);
  void set_target(std::string_view t);
  void add_header(std::string_view name, std::string_view value);
  void set_remote_ip(std::string_view ip) { remote_ip_.assign(ip); }
  void set_request_id(std::string_view id);
  void set_route(std::string_view pattern) { route_ = pattern; }
  void set_connection_fd(int fd) { fd_ = fd; }  // HTTP/1.1: the socket client_gone() peeks at
  void add_param(std::string_view name, std::string value) { params_.emplace_back(name, std::move(value)); }
  // Bytes of method, target and headers held, for header-size limits.
  std::size_t header_bytes() const { return storage_.size(); }

 private:
  struct Span {
    uint32_t off = 0, len = 0;
  };
  struct HeaderSpan {
    Span name, value;
  };
  std::string_view view(Span s) const { return {storage_.data() + s.off, s.len}; }
  Span append(std::string_view s);

  std::string storage_;  // method, target and header bytes; reused between requests
  Span method_, target_;
  std::vector<HeaderSpan> headers_;
  std::vector<std::pair<std::string_view, std::string>> params_;  // names point into the route
  std::string remote_ip_;
  std::string_view route_;
  int fd_ = -1;
  std::array<char, 64> request_id_{};
  uint8_t request_id_len_ = 0;
};

struct Response {
  int status = 200;
  std::string body;
  // Points at static storage ("application/json"); nullptr means no Content-Type. A dynamic type
  // goes through header("Content-Type", ...), which clears this.
  const char* content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, the body is `stream_size` bytes read from `stream` as they are sent (`body` is
  // ignored). HTTP/1.1 streams it; HTTP/2 buffers up to kMaxH2StreamedBody and answers larger
  // ones 505 `http1_required` (see docs/backups.md).
  std::shared_ptr<BodyStream> stream;
  int64_t stream_size = 0;
  static constexpr int64_t kMaxH2StreamedBody = 8 << 20;

  Response() = default;
  Response(int s, std::string b, const char* type = "application/json") : status(s), body(std::move(b)), content_type(type) {}
  // An expected failure becomes its problem+json, so handlers can `co_return error;`.
  Response(const Error& e);  // NOLINT(google-explicit-constructor)

  Response& header(std::string name, std::string value);
  std::string_view find_header(std::string_view name) const;

  static Response json(int status, const boost::json::value& v);
  static Response json(int status, const boost::json::object& o);
  static Response json(int status, std::string body) { return Response(status, std::move(body)); }
  static Response no_content() { return Response(204, {}, nullptr); }
  static Response text(int status, std::string body, const char* type = "text/plain; charset=utf-8") {
    return Response(status, std::move(body), type);
  }
};

// Percent-decodes `s`; with form=true '+' becomes a space. nullopt on a bad escape or a NUL.
std::optional<std::string> percent_decode(std::string_view s, bool form = false);

}  // namespace harmar::net
