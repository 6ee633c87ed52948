#pragma once
// Outbound HTTP for modules that call other services (OAuth token endpoints, SMS gateways,
// webhooks, ...). Each call is a libcurl easy transfer run on the blocking pool, bounded in time
// (connect and total), in response size and in redirects. TLS peers are always verified; only
// http and https are spoken, also after a redirect.
//
//   net::ClientRequest req;
//   req.method = "POST";
//   req.url = token_url;
//   req.headers = {{"Accept", "application/json"}};
//   req.body = net::form_encode(fields);
//   auto resp = co_await net::http_fetch(std::move(req));
//   if (!resp) co_return resp.error();          // 502 `upstream_unreachable` and friends
//   if (resp->status != 200) ...
//
// Build the request in a named variable before the co_await (see docs/modules.md, g++ 12).
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.hpp"

namespace harmar::net {

namespace asio = boost::asio;

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct ClientRequest {
  std::string method = "GET";
  std::string url;  // http:// or https:// only
  HeaderList headers;
  std::string body;
  int64_t connect_timeout_ms = 5'000;
  int64_t timeout_ms = 15'000;                 // the whole transfer, redirects included
  std::size_t max_response_bytes = 1 << 20;    // a larger body fails with 502 `upstream_too_large`
  int max_redirects = 0;                       // 0: a 3xx is returned as is
  // If set, asked before every connection with the peer's numeric address ("10.0.0.1", "::1"),
  // after DNS: false refuses it with 403 `destination_forbidden` (SSRF guards, e.g. webhooks).
  std::function<bool(const std::string& ip)> allow_address;
};

struct ClientResponse {
  int status = 0;
  HeaderList headers;  // of the final response; names as sent
  std::string body;
  std::string effective_url;  // after redirects
  // The first header with this name (case-insensitive), "" when absent.
  std::string_view header(std::string_view name) const;
};

// Performs `req`. Transport failures are values: 502 `upstream_unreachable` (DNS, connect, TLS,
// reset), 504 `upstream_timeout`, 502 `upstream_too_large`, 502 `too_many_redirects`; a URL that
// is not http(s) is 500 `internal` (it comes from our configuration, never from a client).
// HTTP error statuses (4xx, 5xx) are responses, not errors.
asio::awaitable<Result<ClientResponse>> http_fetch(ClientRequest req);

// The same transfer, synchronously, for code already on the blocking pool (and tests).
Result<ClientResponse> http_fetch_sync(const ClientRequest& req);

// application/x-www-form-urlencoded, in the given order.
std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields);
// Percent-encodes everything but RFC 3986 unreserved characters (for query values).
std::string url_encode(std::string_view s);
// Adds `fields` to `url` as query parameters (after '?', or '&' if it already has a query).
std::string with_query(std::string url, const std::vector<std::pair<std::string, std::string>>& fields);

}  // namespace harmar::net
