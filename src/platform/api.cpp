#include "platform/api.hpp"

#include <sodium.h>

#include <boost/json.hpp>
#include <charconv>
#include <stdexcept>

#include "core/json.hpp"

namespace harmar::platform {

namespace js = boost::json;

Result<js::object> json_body(const net::Request& req) {
  std::string_view body = req.body;
  auto first = body.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return js::object{};
  return json::parse_object(body);
}

Result<Page> page_params(const net::Request& req, int default_limit, int max_limit) {
  Page p;
  p.limit = default_limit;
  if (auto l = req.query_param("limit")) {
    int n = 0;
    auto [ptr, ec] = std::from_chars(l->data(), l->data() + l->size(), n);
    if (ec != std::errc() || ptr != l->data() + l->size() || n < 1 || n > max_limit)
      return Error::validation("limit must be an integer from 1 to " + std::to_string(max_limit),
                               {{"limit", "must be an integer from 1 to " + std::to_string(max_limit)}});
    p.limit = n;
  }
  if (auto c = req.query_param("cursor"); c && !c->empty()) {
    auto pos = decode_cursor(*c);
    if (!pos) return Error::validation("cursor is not one this server issued", {{"cursor", "is invalid"}});
    p.after = std::move(*pos);
  }
  return p;
}

std::string encode_cursor(std::string_view position) {
  std::string out(sodium_base64_ENCODED_LEN(position.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(position.data()), position.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.find('\0'));
  return out;
}

std::optional<std::string> decode_cursor(std::string_view cursor) {
  if (cursor.size() > 1024) return std::nullopt;
  std::string out(cursor.size(), '\0');
  std::size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), cursor.data(), cursor.size(), nullptr,
                        &len, nullptr, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return std::nullopt;
  out.resize(len);
  return out;
}

net::Response list_response(js::array items, const std::optional<std::string>& next_position) {
  js::object o;
  o["items"] = std::move(items);
  if (next_position) {
    o["next_cursor"] = encode_cursor(*next_position);
  } else {
    o["next_cursor"] = nullptr;
  }
  return net::Response::json(200, o);
}

const Principal& principal(const net::Request& req) {
  if (!req.principal) throw std::logic_error("route without authentication asked for the principal");
  return *req.principal;
}

}  // namespace harmar::platform
