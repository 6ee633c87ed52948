#include "net/http.hpp"

#include <sys/socket.h>

#include <cerrno>

#include <boost/json.hpp>

namespace harmar::net {

std::string_view method_name(Method m) {
  static constexpr std::string_view kNames[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"};
  return kNames[static_cast<std::size_t>(m)];
}

Method parse_method(std::string_view s) {
  switch (s.size()) {
    case 3:
      if (s == "GET") return Method::Get;
      if (s == "PUT") return Method::Put;
      break;
    case 4:
      if (s == "POST") return Method::Post;
      if (s == "HEAD") return Method::Head;
      break;
    case 5:
      if (s == "PATCH") return Method::Patch;
      break;
    case 6:
      if (s == "DELETE") return Method::Delete;
      break;
    case 7:
      if (s == "OPTIONS") return Method::Options;
      break;
  }
  return Method::Other;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

void Request::clear() {
  method = Method::Get;
  version = 11;
  body.clear();
  body_source = nullptr;
  principal.reset();
  storage_.clear();
  method_ = target_ = {};
  headers_.clear();
  params_.clear();
  route_ = {};
  request_id_len_ = 0;
}

bool Request::client_gone() const {
  if (fd_ < 0) return false;
  // A FIN reads as 0 bytes, a reset as an error; bytes (a pipelined request, TLS records) or
  // nothing yet mean the client is still there.
  char c;
  ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

Request::Span Request::append(std::string_view s) {
  Span sp{static_cast<uint32_t>(storage_.size()), static_cast<uint32_t>(s.size())};
  storage_.append(s);
  return sp;
}

void Request::set_method(std::string_view m) {
  method_ = append(m);
  method = parse_method(m);
}

void Request::set_target(std::string_view t) { target_ = append(t); }

void Request::add_header(std::string_view name, std::string_view value) {
  Span n = append(name);
  Span v = append(value);
  headers_.push_back({n, v});
}

void Request::set_request_id(std::string_view id) {
  request_id_len_ = static_cast<uint8_t>(std::min(id.size(), request_id_.size()));
  std::copy_n(id.data(), request_id_len_, request_id_.data());
}

std::string_view Request::path() const {
  auto t = target();
  return t.substr(0, t.find('?'));
}

std::string_view Request::query() const {
  auto t = target();
  auto q = t.find('?');
  return q == std::string_view::npos ? std::string_view() : t.substr(q + 1);
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  std::string_view q = query();
  while (!q.empty()) {
    auto amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    auto eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    if (key && *key == name) {
      if (eq == std::string_view::npos) return std::string();
      return percent_decode(pair.substr(eq + 1), true);
    }
  }
  return std::nullopt;
}

std::string_view Request::header(std::string_view name) const {
  for (const auto& h : headers_)
    if (iequals(view(h.name), name)) return view(h.value);
  return {};
}

bool Request::has_header(std::string_view name) const {
  for (const auto& h : headers_)
    if (iequals(view(h.name), name)) return true;
  return false;
}

std::pair<std::string_view, std::string_view> Request::header_at(std::size_t i) const {
  return {view(headers_[i].name), view(headers_[i].value)};
}

std::string_view Request::param(std::string_view name) const {
  for (const auto& [k, v] : params_)
    if (k == name) return v;
  return {};
}

Response::Response(const Error& e) : status(e.status), body(problem_json(e)), content_type("application/problem+json") {
  if (e.retry_after_s > 0) headers.emplace_back("Retry-After", std::to_string(e.retry_after_s));
}

Response& Response::header(std::string name, std::string value) {
  if (iequals(name, "Content-Type")) content_type = nullptr;
  headers.emplace_back(std::move(name), std::move(value));
  return *this;
}

std::string_view Response::find_header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

Response Response::json(int status, const boost::json::value& v) { return Response(status, boost::json::serialize(v)); }
Response Response::json(int status, const boost::json::object& o) { return Response(status, boost::json::serialize(o)); }

std::optional<std::string> percent_decode(std::string_view s, bool form) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (form && c == '+') {
      c = ' ';
    }
    if (c == '\0') return std::nullopt;
    out.push_back(c);
  }
  return out;
}

}  // namespace harmar::net
