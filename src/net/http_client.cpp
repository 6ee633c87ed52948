#include "net/http_client.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cctype>
#include <memory>
#include <mutex>

#include "core/blocking.hpp"
#include "core/version.hpp"
#include "net/http.hpp"

namespace harmar::net {
namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}


struct Transfer {
  const ClientRequest* req = nullptr;
  ClientResponse resp;
  bool too_large = false;
  bool forbidden = false;
  std::string forbidden_ip;
};

// CURLOPT_OPENSOCKETFUNCTION: the address curl is about to connect to, after DNS, so a name
// that resolves to a forbidden address is refused however it was spelled.
curl_socket_t open_checked_socket(void* user, curlsocktype purpose, curl_sockaddr* addr) {
  auto* t = static_cast<Transfer*>(user);
  if (purpose == CURLSOCKTYPE_IPCXN && t->req->allow_address) {
    char buf[INET6_ADDRSTRLEN] = {0};
    const sockaddr* sa = &addr->addr;
    const char* ip = nullptr;
    if (sa->sa_family == AF_INET)
      ip = inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
    else if (sa->sa_family == AF_INET6)
      ip = inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
    if (!ip || !t->req->allow_address(ip)) {
      t->forbidden = true;
      t->forbidden_ip = ip ? ip : "?";
      return CURL_SOCKET_BAD;
    }
  }
  return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  if (t->resp.body.size() + len > t->req->max_response_bytes) {
    t->too_large = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  t->resp.body.append(data, len);
  return len;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  std::string_view line(data, len);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  if (line.rfind("HTTP/", 0) == 0) {
    t->resp.headers.clear();  // a new response (after a redirect or a 100 Continue)
    return len;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos || t->resp.headers.size() >= 200) return len;
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  t->resp.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  return len;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

bool http_scheme(std::string_view url) {
  auto lower_starts = [&](std::string_view p) {
    if (url.size() < p.size()) return false;
    for (std::size_t i = 0; i < p.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(url[i])) != p[i]) return false;
    return true;
  };
  return lower_starts("http://") || lower_starts("https://");
}

}  // namespace

std::string_view ClientResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

Result<ClientResponse> http_fetch_sync(const ClientRequest& req) {
  if (!http_scheme(req.url)) return Error::internal("outbound URL must be http or https");
  global_init();
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return Error::internal("curl_easy_init failed");
  CURL* c = curl.get();
  Transfer t;
  t.req = &req;
  for (const auto& [k, v] : req.headers)
    if (k.find_first_of("\r\n:") != std::string::npos || v.find_first_of("\r\n") != std::string::npos)
      return Error::internal("outbound header '" + k + "' holds a line break");
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  for (const auto& [k, v] : req.headers) {
    std::string line = v.empty() ? k + ";" : k + ": " + v;  // "Name;" sends an empty header
    curl_slist* head = curl_slist_append(headers.get(), line.c_str());
    if (!head) return Error::internal("out of memory");
    if (!headers) headers.reset(head);  // appending keeps the head of a non-empty list
  }
  std::string agent = std::string("harmar/") + build::kVersion;
  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(req.connect_timeout_ms));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout_ms));
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, req.max_redirects > 0 ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, static_cast<long>(req.max_redirects));
  curl_easy_setopt(c, CURLOPT_USERAGENT, agent.c_str());
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // the size cap applies to decoded bytes
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  if (req.allow_address) {
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_checked_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");  // a proxy would connect for us, unchecked
  }
  if (req.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (req.method != "GET" || !req.body.empty()) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    if (req.method != "POST") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }

  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    if (t.too_large)
      return Error{502, "upstream_too_large",
                   "the response from " + req.url + " is larger than " + std::to_string(req.max_response_bytes) + " bytes"};
    if (t.forbidden)
      return Error{403, "destination_forbidden", req.url + " resolves to " + t.forbidden_ip + ", which is not allowed"};
    if (rc == CURLE_OPERATION_TIMEDOUT) return Error{504, "upstream_timeout", req.url + " did not answer in time"};
    if (rc == CURLE_TOO_MANY_REDIRECTS) return Error{502, "too_many_redirects", req.url + " redirected too often"};
    return Error{502, "upstream_unreachable", req.url + ": " + curl_easy_strerror(rc)};
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  t.resp.status = static_cast<int>(status);
  char* effective = nullptr;
  curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &effective);
  if (effective) t.resp.effective_url = effective;
  return std::move(t.resp);
}

asio::awaitable<Result<ClientResponse>> http_fetch(ClientRequest req) {
  // The closure is named: g++ 12 destroys a capturing lambda temporary in a co_await twice.
  auto fetch = [r = std::move(req)] { return http_fetch_sync(r); };
  co_return co_await run_blocking(std::move(fetch));
}

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out.push_back(static_cast<char>(ch));
    } else {
      out.push_back('%');
      out.push_back(kHex[ch >> 4]);
      out.push_back(kHex[ch & 15]);
    }
  }
  return out;
}

std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    if (!out.empty()) out.push_back('&');
    out += url_encode(k);
    out.push_back('=');
    out += url_encode(v);
  }
  return out;
}

std::string with_query(std::string url, const std::vector<std::pair<std::string, std::string>>& fields) {
  if (fields.empty()) return url;
  std::string fragment;
  if (auto hash = url.find('#'); hash != std::string::npos) {
    fragment = url.substr(hash);
    url.resize(hash);
  }
  auto q = url.find('?');
  if (q == std::string::npos) {
    url.push_back('?');
  } else if (q + 1 != url.size() && url.back() != '&') {
    url.push_back('&');
  }
  url += form_encode(fields);
  return url + fragment;
}

}  // namespace harmar::net
