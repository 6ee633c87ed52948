// HTTP/2 on the same listener and router as HTTP/1.1: h2c with prior knowledge, h2c by Upgrade,
// h2 over TLS by ALPN, multiplexing, bodies and limits as libcurl sees them; and, with raw
// frames on a socket, the abuse a hostile client can try (garbage, rapid reset, floods).
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <poll.h>

#include <cstdlib>
#include <future>
#include <random>
#include <set>
#include <thread>

#include "support/test_support.hpp"
#include "support/test_client.hpp"

namespace harmar::testing {
namespace {

namespace asio = boost::asio;
using net::Request;
using net::Response;
using tcp = asio::ip::tcp;

asio::awaitable<void> sleep_ms(int ms) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(std::chrono::milliseconds(ms));
  co_await t.async_wait(asio::use_awaitable);
}

void add_routes(net::Router& r) {
  r.get("/hello", [](Request&) -> asio::awaitable<Response> { co_return Response(200, R"({"hello":"world"})"); });
  r.get("/items/{id}", [](Request& req) -> asio::awaitable<Response> {
    co_return Response::json(200, boost::json::object{{"id", req.param("id")}});
  });
  r.post("/echo", [](Request& req) -> asio::awaitable<Response> { co_return Response(200, req.body, "text/plain"); });
  r.post("/big", [](Request& req) -> asio::awaitable<Response> { co_return Response(200, req.body, "text/plain"); },
         {.body_limit = 8 << 20});
  r.get("/slow/{ms}", [](Request& req) -> asio::awaitable<Response> {
    int ms = std::stoi(std::string(req.param("ms")));
    co_await sleep_ms(ms);
    co_return Response::json(200, boost::json::object{{"slept", ms}});
  });
  r.get("/headers", [](Request&) -> asio::awaitable<Response> {
    Response resp(200, "{}");
    resp.header("X-Custom", "yes");
    resp.header("Connection", "keep-alive");  // HTTP/1.1-only: must not reach an HTTP/2 client
    resp.header("Cache-Control", "no-store");
    resp.header("X-Split", "a\r\nx-injected: 1");  // never valid: dropped, not sent
    co_return resp;
  });
}

// Everything a handler can see of a request, as JSON.
net::Handler describe_request() {
  return [](Request& req) -> asio::awaitable<Response> {
    boost::json::object o;
    o["method"] = req.method_text();
    o["target"] = req.target();
    o["path"] = req.path();
    o["query"] = req.query();
    o["q"] = req.query_param("q").value_or("");
    o["id"] = req.param("id");
    o["host"] = req.header("host");
    o["custom"] = req.header("x-custom");
    o["cookie"] = req.header("cookie");
    o["content_type"] = req.header("content-type");
    o["body"] = req.body;
    o["secure"] = req.secure;
    o["remote_ip"] = req.remote_ip();
    o["request_id"] = req.request_id();
    o["version"] = req.version;
    co_return Response::json(200, o);
  };
}

// --- libcurl ------------------------------------------------------------------------------

struct Fetched {
  long status = 0;
  long version = 0;  // CURL_HTTP_VERSION_*
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
  CURLcode code = CURLE_OK;
  std::string error;
  const std::string& header(const std::string& name) const {
    static const std::string none;
    auto it = headers.find(name);
    return it == headers.end() ? none : it->second;
  }
};

struct FetchOptions {
  long http_version = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
  std::string method;  // "" → GET, or POST when a body is given
  std::optional<std::string> body;
  bool stream_body = false;  // send the body without a Content-Length (read callback)
  std::vector<std::string> headers;
  std::string cainfo;
};

std::size_t on_body(char* p, std::size_t size, std::size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

std::size_t on_header(char* p, std::size_t size, std::size_t n, void* out) {
  std::string_view line(p, size * n);
  auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.remove_suffix(1);
    (*static_cast<std::map<std::string, std::string>*>(out))[name] = std::string(value);
  }
  return size * n;
}

struct Upload {
  std::string data;
  std::size_t off = 0;
};

std::size_t on_read(char* buf, std::size_t size, std::size_t n, void* in) {
  auto& u = *static_cast<Upload*>(in);
  std::size_t k = std::min(size * n, u.data.size() - u.off);
  std::memcpy(buf, u.data.data() + u.off, k);
  u.off += k;
  return k;
}

// One easy handle; requests through the same Client reuse its connection.
class Client {
 public:
  Client() : h_(curl_easy_init()) {}
  ~Client() { curl_easy_cleanup(h_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Fetched fetch(const std::string& url, const FetchOptions& o = {}) {
    Fetched f;
    Upload up;
    curl_easy_reset(h_);
    curl_slist* hdrs = nullptr;
    for (const auto& h : o.headers) hdrs = curl_slist_append(hdrs, h.c_str());
    char err[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(h_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h_, CURLOPT_HTTP_VERSION, o.http_version);
    curl_easy_setopt(h_, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h_, CURLOPT_WRITEDATA, &f.body);
    curl_easy_setopt(h_, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h_, CURLOPT_HEADERDATA, &f.headers);
    curl_easy_setopt(h_, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(h_, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(h_, CURLOPT_NOSIGNAL, 1L);
    if (std::getenv("H2_VERBOSE")) curl_easy_setopt(h_, CURLOPT_VERBOSE, 1L);
    if (hdrs) curl_easy_setopt(h_, CURLOPT_HTTPHEADER, hdrs);
    if (!o.cainfo.empty()) curl_easy_setopt(h_, CURLOPT_CAINFO, o.cainfo.c_str());
    if (o.body) {
      if (o.stream_body) {
        up.data = *o.body;
        curl_easy_setopt(h_, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h_, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h_, CURLOPT_READDATA, &up);
        if (o.method.empty()) curl_easy_setopt(h_, CURLOPT_CUSTOMREQUEST, "POST");
      } else {
        curl_easy_setopt(h_, CURLOPT_POSTFIELDS, o.body->data());
        curl_easy_setopt(h_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(o.body->size()));
      }
    }
    if (o.method == "HEAD") {
      curl_easy_setopt(h_, CURLOPT_NOBODY, 1L);
    } else if (!o.method.empty()) {
      curl_easy_setopt(h_, CURLOPT_CUSTOMREQUEST, o.method.c_str());
    }
    f.code = curl_easy_perform(h_);
    f.error = err;
    curl_easy_getinfo(h_, CURLINFO_RESPONSE_CODE, &f.status);
    curl_easy_getinfo(h_, CURLINFO_HTTP_VERSION, &f.version);
    curl_slist_free_all(hdrs);
    return f;
  }

 private:
  CURL* h_;
};

std::string url(const TestServer& s, std::string_view path, bool tls = false) {
  return std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(s.port) + std::string(path);
}

Fetched fetch(const std::string& u, const FetchOptions& o = {}) {
  Client c;
  return c.fetch(u, o);
}

// A self-signed certificate for 127.0.0.1, made once per test run.
struct TlsFiles {
  std::string cert, key;
};
const TlsFiles& tls_files() {
  static const TlsFiles files = [] {
    TlsFiles f{temp_dir() + "/h2-cert.pem", temp_dir() + "/h2-key.pem"};
    std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
                      " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
                      f.key + " -out " + f.cert + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl could not make a test certificate");
    return f;
  }();
  return files;
}

// --- raw frames ---------------------------------------------------------------------------

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
enum : uint8_t { kData = 0, kHeaders = 1, kPriority = 2, kRst = 3, kSettings = 4, kPing = 6, kGoaway = 7, kWindow = 8 };
enum : uint8_t { kEndStream = 1, kAck = 1, kEndHeaders = 4, kPadded = 8 };
constexpr uint32_t kEnhanceYourCalm = 11;

std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  auto len = static_cast<uint32_t>(payload.size());
  f += static_cast<char>(len >> 16);
  f += static_cast<char>(len >> 8);
  f += static_cast<char>(len);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  for (int shift = 24; shift >= 0; shift -= 8) f += static_cast<char>(stream >> shift);
  f += payload;
  return f;
}

std::string u32(uint32_t v) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>(v >> shift);
  return s;
}

// HPACK integer with an n-bit prefix (RFC 7541 §5.1).
void hpack_int(std::string& out, uint8_t first, int prefix_bits, std::size_t v) {
  std::size_t max = (1u << prefix_bits) - 1;
  if (v < max) {
    out += static_cast<char>(first | v);
    return;
  }
  out += static_cast<char>(first | max);
  v -= max;
  while (v >= 128) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

// A header block of literal fields without indexing (no dynamic table state to track).
std::string hpack(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [name, value] : fields) {
    out += '\0';
    hpack_int(out, 0, 7, name.size());
    out += name;
    hpack_int(out, 0, 7, value.size());
    out += value;
  }
  return out;
}

std::string get_headers(uint32_t stream, const std::string& path, bool end_stream = true,
                        std::vector<std::pair<std::string, std::string>> extra = {}) {
  std::vector<std::pair<std::string, std::string>> f = {
      {":method", "GET"}, {":scheme", "http"}, {":path", path}, {":authority", "test"}};
  f.insert(f.end(), extra.begin(), extra.end());
  return frame(kHeaders, kEndHeaders | (end_stream ? kEndStream : 0), stream, hpack(f));
}

struct Frame {
  uint8_t type = 0, flags = 0;
  uint32_t stream = 0;
  std::string payload;
  uint32_t u32_at(std::size_t off) const {
    if (payload.size() < off + 4) return ~0u;
    auto b = [&](std::size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(payload[off + i])); };
    return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
  }
  uint32_t goaway_error() const { return u32_at(4); }
};

// HTTP/2 spoken by hand over a blocking socket.
class RawH2 {
 public:
  explicit RawH2(uint16_t port) : sock_(ioc_) {
    sock_.connect({asio::ip::make_address("127.0.0.1"), port});
    sock_.set_option(tcp::no_delay(true));
  }
  // Sends the preface and an empty SETTINGS frame.
  void greet() { send(std::string(kPreface) + frame(kSettings, 0, 0, "")); }
  // False once the server has closed (writes fail).
  bool send(std::string_view bytes) {
    boost::system::error_code ec;
    asio::write(sock_, asio::buffer(bytes), ec);
    return !ec;
  }
  // The next frame, or nullopt when the connection closed or nothing came within `ms`.
  std::optional<Frame> read(int ms = 3000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (buf_.size() < 9 || buf_.size() < 9 + length()) {
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
      if (left <= 0) return std::nullopt;
      pollfd pfd{sock_.native_handle(), POLLIN, 0};
      if (poll(&pfd, 1, left) <= 0) continue;
      char tmp[16384];
      ssize_t n = ::recv(sock_.native_handle(), tmp, sizeof tmp, 0);
      if (n <= 0) {
        closed_ = true;
        return std::nullopt;
      }
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
    Frame f;
    f.type = static_cast<uint8_t>(buf_[3]);
    f.flags = static_cast<uint8_t>(buf_[4]);
    f.stream = (static_cast<uint32_t>(static_cast<uint8_t>(buf_[5])) << 24 |
                static_cast<uint32_t>(static_cast<uint8_t>(buf_[6])) << 16 |
                static_cast<uint32_t>(static_cast<uint8_t>(buf_[7])) << 8 | static_cast<uint8_t>(buf_[8])) &
               0x7fffffff;
    f.payload = buf_.substr(9, length());
    buf_.erase(0, 9 + length());
    return f;
  }
  // Reads until a GOAWAY arrives (returned) or the connection closes or goes quiet.
  std::optional<Frame> read_until_goaway(int ms = 5000) {
    while (auto f = read(ms))
      if (f->type == kGoaway) return f;
    return std::nullopt;
  }
  // The DATA payload of `stream` up to END_STREAM, acknowledging SETTINGS and opening windows
  // as a real client would.
  std::optional<std::string> read_body(uint32_t stream, int ms = 5000) {
    std::string body;
    while (auto f = read(ms)) {
      if (f->type == kSettings && !(f->flags & kAck)) send(frame(kSettings, kAck, 0, ""));
      if (f->stream != stream) continue;
      if (f->type == kRst) return std::nullopt;
      if (f->type == kData) {
        body += f->payload;
        if (!f->payload.empty()) {  // keep the server's send windows open
          auto n = static_cast<uint32_t>(f->payload.size());
          send(frame(kWindow, 0, 0, u32(n)) + frame(kWindow, 0, stream, u32(n)));
        }
      }
      if ((f->type == kData || f->type == kHeaders) && (f->flags & kEndStream)) return body;
    }
    return std::nullopt;
  }
  // Raw bytes up to and including `end` (an HTTP/1.1 head before an upgrade).
  std::optional<std::string> read_until(std::string_view end, int ms = 3000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (buf_.find(end) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      pollfd pfd{sock_.native_handle(), POLLIN, 0};
      if (poll(&pfd, 1, 50) <= 0) continue;
      char tmp[4096];
      ssize_t n = ::recv(sock_.native_handle(), tmp, sizeof tmp, 0);
      if (n <= 0) return std::nullopt;
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
    auto k = buf_.find(end) + end.size();
    std::string head = buf_.substr(0, k);
    buf_.erase(0, k);
    return head;
  }
  bool closed() const { return closed_; }

 private:
  std::size_t length() const {
    return static_cast<std::size_t>(static_cast<uint8_t>(buf_[0])) << 16 |
           static_cast<std::size_t>(static_cast<uint8_t>(buf_[1])) << 8 | static_cast<uint8_t>(buf_[2]);
  }
  asio::io_context ioc_;
  tcp::socket sock_;
  std::string buf_;
  bool closed_ = false;
};

// Sends DATA `frames` on `stream` only as the server's flow-control windows allow, reading its
// SETTINGS and WINDOW_UPDATEs meanwhile. False when the server stops granting window.
bool send_within_windows(RawH2& c, uint32_t stream, const std::vector<std::string>& frames) {
  int64_t conn = 65535, strm = 65535, initial = 65535;
  for (const auto& f : frames) {
    auto len = static_cast<int64_t>(f.size() - 9);
    while (conn < len || strm < len) {
      auto in = c.read(3000);
      if (!in) return false;
      if (in->type == kSettings && !(in->flags & kAck)) {
        for (std::size_t off = 0; off + 6 <= in->payload.size(); off += 6) {
          auto id = static_cast<uint8_t>(in->payload[off + 1]);
          if (id == 4) {
            int64_t v = in->u32_at(off + 2);
            strm += v - initial;
            initial = v;
          }
        }
        c.send(frame(kSettings, kAck, 0, ""));
      }
      if (in->type == kWindow && in->stream == 0) conn += in->u32_at(0);
      if (in->type == kWindow && in->stream == stream) strm += in->u32_at(0);
      if (in->type == kRst || in->type == kGoaway) return false;
    }
    conn -= len;
    strm -= len;
    if (!c.send(f)) return false;
  }
  return true;
}

// The server still answers both protocols.
void expect_alive(const TestServer& s) {
  auto r = fetch(url(s, "/hello"));
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.version, CURL_HTTP_VERSION_2_0);
  RawClient c(s.port);
  auto r1 = c.request(get("/hello"));
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->result_int(), 200);
}

// --- protocols ----------------------------------------------------------------------------

TEST(Http2, prior_knowledge_h2c_answers_with_the_same_headers_as_http11) {
  TestServer s;
  add_routes(s.router);
  s.start();
  auto r = fetch(url(s, "/hello"));
  ASSERT_EQ(r.code, CURLE_OK) << r.error;
  EXPECT_EQ(r.version, CURL_HTTP_VERSION_2_0);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"hello":"world"})");
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.header("content-length"), "17");
  EXPECT_EQ(r.header("server"), "harmar");
  EXPECT_NE(r.header("date").find("GMT"), std::string::npos);
  EXPECT_FALSE(r.header("x-request-id").empty());
}

TEST(Http2, h2c_upgrade_answers_the_upgrading_request_and_keeps_the_connection) {
  TestServer s;
  add_routes(s.router);
  s.start();
  Client c;
  auto r = c.fetch(url(s, "/items/first"), {.http_version = CURL_HTTP_VERSION_2_0});
  ASSERT_EQ(r.code, CURLE_OK) << r.error;
  EXPECT_EQ(r.version, CURL_HTTP_VERSION_2_0);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"id":"first"})");
  // The next request goes over the upgraded connection as an ordinary stream.
  r = c.fetch(url(s, "/items/second"), {.http_version = CURL_HTTP_VERSION_2_0});
  ASSERT_EQ(r.code, CURLE_OK) << r.error;
  EXPECT_EQ(r.version, CURL_HTTP_VERSION_2_0);
  EXPECT_EQ(r.body, R"({"id":"second"})");
}

TEST(Http2, an_upgrading_post_brings_its_body_to_stream_1) {
  TestServer s;
  s.router.post("/who", describe_request());
  s.start();
  RawH2 c(s.port);
  // HTTP2-Settings: SETTINGS_MAX_CONCURRENT_STREAMS = 100, base64url.
  c.send("POST /who?q=1 HTTP/1.1\r\nHost: up\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
         "HTTP2-Settings: AAMAAABk\r\nContent-Length: 7\r\nX-Custom: c\r\n\r\npayload");
  auto head = c.read_until("\r\n\r\n");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->substr(0, 34), "HTTP/1.1 101 Switching Protocols\r\n");
  c.greet();
  auto body = c.read_body(1);
  ASSERT_TRUE(body);
  auto o = boost::json::parse(*body).as_object();
  EXPECT_EQ(o["body"], "payload");
  EXPECT_EQ(o["host"], "up");
  EXPECT_EQ(o["custom"], "c");
  EXPECT_EQ(o["q"], "1");
  EXPECT_EQ(o["version"], 20);
  // Stream 3 is an ordinary HTTP/2 request on the upgraded connection.
  c.send(frame(kHeaders, kEndHeaders | kEndStream, 3,
               hpack({{":method", "POST"}, {":scheme", "http"}, {":path", "/who"}, {":authority", "up"}})));
  body = c.read_body(3);
  ASSERT_TRUE(body);
  EXPECT_EQ(boost::json::parse(*body).as_object()["body"], "");
}

TEST(Http2, a_malformed_http2_settings_upgrade_is_400) {
  TestServer s;
  add_routes(s.router);
  s.start();
  RawClient c(s.port);
  auto r = c.request(get("/hello", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: !!!\r\n"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 400);
  EXPECT_EQ((*r)["Content-Type"], "application/problem+json");
}

TEST(Http2, tls_negotiates_h2_by_alpn_and_still_serves_http11_clients) {
  auto o = TestServer::defaults();
  o.tls_cert = tls_files().cert;
  o.tls_key = tls_files().key;
  TestServer s(o);
  add_routes(s.router);
  s.router.get("/who/{id}", describe_request());
  s.start();
  auto r = fetch(url(s, "/who/7", true), {.http_version = CURL_HTTP_VERSION_2TLS, .cainfo = tls_files().cert});
  ASSERT_EQ(r.code, CURLE_OK) << r.error;
  EXPECT_EQ(r.version, CURL_HTTP_VERSION_2_0);
  auto body = boost::json::parse(r.body).as_object();
  EXPECT_EQ(body["secure"], true);
  EXPECT_EQ(body["version"], 20);
  auto r1 = fetch(url(s, "/hello", true), {.http_version = CURL_HTTP_VERSION_1_1, .cainfo = tls_files().cert});
  ASSERT_EQ(r1.code, CURLE_OK) << r1.error;
  EXPECT_EQ(r1.version, CURL_HTTP_VERSION_1_1);
  EXPECT_EQ(r1.body, R"({"hello":"world"})");
}

TEST(Http2, a_handler_sees_the_same_request_over_http11_and_http2) {
  TestServer s;
  s.router.post("/who/{id}", describe_request());
  s.start();
  FetchOptions o{.body = std::string("payload"),
                 .headers = {"X-Custom: abc", "Cookie: a=1; b=2", "Content-Type: text/plain", "X-Request-Id: same-id"}};
  o.http_version = CURL_HTTP_VERSION_1_1;
  auto r1 = fetch(url(s, "/who/a%20b?q=x+y&z=1"), o);
  o.http_version = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
  auto r2 = fetch(url(s, "/who/a%20b?q=x+y&z=1"), o);
  ASSERT_EQ(r1.version, CURL_HTTP_VERSION_1_1);
  ASSERT_EQ(r2.version, CURL_HTTP_VERSION_2_0);
  auto b1 = boost::json::parse(r1.body).as_object();
  auto b2 = boost::json::parse(r2.body).as_object();
  EXPECT_EQ(b1["version"], 11);
  EXPECT_EQ(b2["version"], 20);
  b1.erase("version");
  b2.erase("version");
  EXPECT_EQ(b1, b2);
  EXPECT_EQ(b2["id"], "a b");
  EXPECT_EQ(b2["q"], "x y");
  EXPECT_EQ(b2["host"], boost::json::value("127.0.0.1:" + std::to_string(s.port)));
  EXPECT_EQ(b2["cookie"], "a=1; b=2");
  EXPECT_EQ(b2["body"], "payload");
  EXPECT_EQ(b2["request_id"], "same-id");
}

TEST(Http2, split_cookie_fields_are_joined_for_the_handler) {
  TestServer s;
  s.router.get("/who", describe_request());
  s.start();
  RawH2 c(s.port);
  c.greet();
  c.send(get_headers(1, "/who", true, {{"cookie", "a=1"}, {"cookie", "b=2"}}));
  auto body = c.read_body(1);
  ASSERT_TRUE(body);
  EXPECT_EQ(boost::json::parse(*body).as_object()["cookie"], "a=1; b=2");
}

// --- multiplexing -------------------------------------------------------------------------

struct MultiResult {
  std::vector<Fetched> results;
  std::set<long> local_ports;
  long connects = 0;
};

net::ServerOptions tls_options() {
  auto o = TestServer::defaults();
  o.tls_cert = tls_files().cert;
  o.tls_key = tls_files().key;
  return o;
}

// Runs all `paths` at once over h2 (TLS) with multiplexing; curl opens one connection for them.
// (Over h2c, the curl 7.88 of Debian 12 cannot reuse a prior-knowledge connection: curl#10634.)
MultiResult fetch_all(const TestServer& s, const std::vector<std::string>& paths) {
  CURLM* m = curl_multi_init();
  curl_multi_setopt(m, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
  MultiResult out;
  out.results.resize(paths.size());
  std::vector<CURL*> handles;
  std::vector<std::string> urls;
  urls.reserve(paths.size());
  for (std::size_t i = 0; i < paths.size(); ++i) {
    CURL* h = curl_easy_init();
    urls.push_back(url(s, paths[i], true));
    curl_easy_setopt(h, CURLOPT_URL, urls.back().c_str());
    curl_easy_setopt(h, CURLOPT_CAINFO, tls_files().cert.c_str());
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out.results[i].body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_multi_add_handle(m, h);
    handles.push_back(h);
  }
  int running = 1;
  while (running) {
    curl_multi_perform(m, &running);
    if (running) curl_multi_poll(m, nullptr, 0, 100, nullptr);
  }
  for (std::size_t i = 0; i < handles.size(); ++i) {
    CURL* h = handles[i];
    Fetched& f = out.results[i];
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &f.status);
    curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &f.version);
    long port = 0, connects = 0;
    curl_easy_getinfo(h, CURLINFO_LOCAL_PORT, &port);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
    out.local_ports.insert(port);
    out.connects += connects;
    curl_multi_remove_handle(m, h);
    curl_easy_cleanup(h);
  }
  curl_multi_cleanup(m);
  return out;
}

TEST(Http2, many_concurrent_streams_are_answered_correctly_over_one_connection) {
  TestServer s(tls_options());
  add_routes(s.router);
  s.start();
  std::vector<std::string> paths;
  for (int i = 0; i < 60; ++i)
    paths.push_back(i % 3 == 0 ? "/slow/" + std::to_string(150 + i) : "/items/" + std::to_string(i));
  auto t0 = std::chrono::steady_clock::now();
  auto out = fetch_all(s, paths);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(out.local_ports.size(), 1u);
  EXPECT_EQ(out.connects, 1);
  for (int i = 0; i < 60; ++i) {
    const auto& f = out.results[static_cast<std::size_t>(i)];
    EXPECT_EQ(f.status, 200) << i;
    EXPECT_EQ(f.version, CURL_HTTP_VERSION_2_0) << i;
    if (i % 3 == 0) {
      EXPECT_EQ(f.body, "{\"slept\":" + std::to_string(150 + i) + "}") << i;
    } else {
      EXPECT_EQ(f.body, "{\"id\":\"" + std::to_string(i) + "\"}") << i;
    }
  }
  // Twenty handlers of 150-210 ms ran side by side, not one after another (3.6 s).
  EXPECT_LT(took, 2500);
}

TEST(Http2, h2c_streams_sent_at_once_are_answered_each_on_its_own_stream) {
  TestServer s;
  add_routes(s.router);
  s.start();
  RawH2 c(s.port);
  c.greet();
  std::string batch;
  for (uint32_t i = 0; i < 40; ++i)
    batch += get_headers(2 * i + 1, i % 2 ? "/items/" + std::to_string(i) : "/slow/" + std::to_string(300 - i));
  c.send(batch);
  std::map<uint32_t, std::string> bodies;
  std::set<uint32_t> done;
  auto t0 = std::chrono::steady_clock::now();
  while (done.size() < 40) {
    auto f = c.read(5000);
    ASSERT_TRUE(f) << "after " << done.size() << " streams";
    if (f->type == kSettings && !(f->flags & kAck)) c.send(frame(kSettings, kAck, 0, ""));
    if (f->type == kData) bodies[f->stream] += f->payload;
    if ((f->type == kData || f->type == kHeaders) && (f->flags & kEndStream)) done.insert(f->stream);
  }
  // Twenty handlers of about 300 ms each ran side by side, not one after another (6 s).
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(2500));
  for (uint32_t i = 0; i < 40; ++i) {
    std::string want = i % 2 ? "{\"id\":\"" + std::to_string(i) + "\"}" : "{\"slept\":" + std::to_string(300 - i) + "}";
    EXPECT_EQ(bodies[2 * i + 1], want) << i;
  }
}

TEST(Http2, streams_beyond_the_concurrency_limit_wait_their_turn) {
  auto o = tls_options();
  o.h2_max_streams = 4;
  TestServer s(o);
  add_routes(s.router);
  s.start();
  std::vector<std::string> paths;
  for (int i = 0; i < 24; ++i) paths.push_back("/slow/" + std::to_string(50 + i));
  // Streams curl opens before it learns the limit are refused (REFUSED_STREAM) and retried,
  // sometimes on a second connection: what matters is that every request is answered.
  auto out = fetch_all(s, paths);
  for (int i = 0; i < 24; ++i) {
    EXPECT_EQ(out.results[static_cast<std::size_t>(i)].status, 200) << i;
    EXPECT_EQ(out.results[static_cast<std::size_t>(i)].body, "{\"slept\":" + std::to_string(50 + i) + "}") << i;
  }
}

// --- bodies, errors and limits ------------------------------------------------------------

TEST(Http2, post_bodies_arrive_whole_with_or_without_a_length) {
  TestServer s;
  add_routes(s.router);
  s.start();
  std::string small = "hello over h2";
  auto r = fetch(url(s, "/echo"), {.body = small});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, small);
  EXPECT_EQ(r.header("content-type"), "text/plain");
  // Larger than the stream and connection windows: flow control has to keep it moving.
  std::string big(3 << 20, 'x');
  for (std::size_t i = 0; i < big.size(); i += 997) big[i] = static_cast<char>('a' + i % 26);
  r = fetch(url(s, "/big"), {.body = big});
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_TRUE(r.body == big) << "echoed " << r.body.size() << " bytes";
  r = fetch(url(s, "/big"), {.body = big, .stream_body = true});
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_TRUE(r.body == big) << "echoed " << r.body.size() << " bytes";
}

TEST(Http2, padding_counts_against_flow_control_and_is_given_back) {
  TestServer s;
  add_routes(s.router);
  s.start();
  RawH2 c(s.port);
  c.greet();
  c.send(frame(kHeaders, kEndHeaders, 1,
               hpack({{":method", "POST"}, {":scheme", "http"}, {":path", "/big"}, {":authority", "t"}})));
  // More padding than both windows hold: the upload only completes if padding is credited back.
  std::vector<std::string> frames;
  std::string want;
  for (int i = 0; i < 5000; ++i) {
    std::string data(200, static_cast<char>('a' + i % 26));
    want += data;
    std::string payload(1, static_cast<char>(255));
    payload += data;
    payload += std::string(255, '\0');
    frames.push_back(frame(kData, kPadded | (i == 4999 ? kEndStream : 0), 1, payload));
  }
  ASSERT_TRUE(send_within_windows(c, 1, frames));
  auto body = c.read_body(1);
  ASSERT_TRUE(body);
  EXPECT_TRUE(*body == want) << body->size() << " of " << want.size() << " bytes";
}

TEST(Http2, several_large_uploads_at_once_all_complete) {
  TestServer s(tls_options());
  add_routes(s.router);
  s.start();
  // Together they exceed the per-connection body budget, so some must wait for others.
  std::string body(3 << 20, 'u');
  CURLM* m = curl_multi_init();
  curl_multi_setopt(m, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
  std::vector<CURL*> hs;
  std::vector<std::string> bodies(5);
  std::string u = url(s, "/big", true);
  for (int i = 0; i < 5; ++i) {
    CURL* h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, u.c_str());
    curl_easy_setopt(h, CURLOPT_CAINFO, tls_files().cert.c_str());
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &bodies[static_cast<std::size_t>(i)]);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
    curl_multi_add_handle(m, h);
    hs.push_back(h);
  }
  int running = 1;
  while (running) {
    curl_multi_perform(m, &running);
    if (running) curl_multi_poll(m, nullptr, 0, 100, nullptr);
  }
  long connects = 0;
  for (std::size_t i = 0; i < hs.size(); ++i) {
    long status = 0, n = 0;
    curl_easy_getinfo(hs[i], CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(hs[i], CURLINFO_NUM_CONNECTS, &n);
    connects += n;
    EXPECT_EQ(status, 200) << i;
    EXPECT_EQ(bodies[i].size(), body.size()) << i;
    curl_multi_remove_handle(m, hs[i]);
    curl_easy_cleanup(hs[i]);
  }
  curl_multi_cleanup(m);
  EXPECT_EQ(connects, 1);
}

TEST(Http2, unknown_routes_and_methods_are_problem_json) {
  TestServer s;
  add_routes(s.router);
  s.start();
  auto r = fetch(url(s, "/nope"));
  EXPECT_EQ(r.version, CURL_HTTP_VERSION_2_0);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("content-type"), "application/problem+json");
  EXPECT_EQ(boost::json::parse(r.body).as_object()["code"], "not_found");
  r = fetch(url(s, "/hello"), {.method = "DELETE"});
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET, HEAD, OPTIONS");
  EXPECT_EQ(r.header("content-type"), "application/problem+json");
}

TEST(Http2, head_has_a_length_but_no_body) {
  TestServer s;
  add_routes(s.router);
  s.start();
  auto r = fetch(url(s, "/hello"), {.method = "HEAD"});
  ASSERT_EQ(r.code, CURLE_OK) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-length"), "17");
  EXPECT_TRUE(r.body.empty());
}

TEST(Http2, response_headers_are_lower_cased_without_connection_specific_ones) {
  TestServer s;
  add_routes(s.router);
  s.start();
  auto r = fetch(url(s, "/headers"));
  ASSERT_EQ(r.code, CURLE_OK) << r.error;  // curl refuses a Connection header in HTTP/2
  EXPECT_EQ(r.header("x-custom"), "yes");
  EXPECT_EQ(r.header("cache-control"), "no-store");
  EXPECT_EQ(r.headers.count("connection"), 0u);
  EXPECT_EQ(r.headers.count("x-split"), 0u);
  EXPECT_EQ(r.headers.count("x-injected"), 0u);
}

// With raw frames, to see the RST_STREAM(NO_ERROR) that stops the upload (RFC 9113 §8.1).
TEST(Http2, bodies_over_the_route_limit_are_413_and_the_upload_is_stopped) {
  auto o = TestServer::defaults();
  o.body_limit = 1000;
  TestServer s(o);
  add_routes(s.router);
  s.start();
  RawH2 c(s.port);
  c.greet();
  auto post = [](uint32_t id, std::vector<std::pair<std::string, std::string>> extra) {
    std::vector<std::pair<std::string, std::string>> f = {
        {":method", "POST"}, {":scheme", "http"}, {":path", "/echo"}, {":authority", "t"}};
    f.insert(f.end(), extra.begin(), extra.end());
    return frame(kHeaders, kEndHeaders, id, hpack(f));
  };
  // Declared too large: refused on the header alone. Undeclared: refused when DATA passes the limit.
  c.send(post(1, {{"content-length", "500000"}}));
  c.send(post(3, {}) + frame(kData, 0, 3, std::string(600, 'x')) + frame(kData, 0, 3, std::string(600, 'x')));
  // Stream 3 keeps sending: past the small allowance for refused bodies it is told to stop.
  for (int i = 0; i < 6; ++i) c.send(frame(kData, 0, 3, std::string(16000, 'x')));
  std::map<uint32_t, std::string> bodies;
  std::map<uint32_t, uint32_t> resets;
  while (resets.size() < 2) {
    auto f = c.read(3000);
    ASSERT_TRUE(f) << "expected a response and RST_STREAM(NO_ERROR) on streams 1 and 3";
    if (f->type == kSettings && !(f->flags & kAck)) c.send(frame(kSettings, kAck, 0, ""));
    if (f->type == kData) bodies[f->stream] += f->payload;
    if (f->type == kRst) resets[f->stream] = f->u32_at(0);
  }
  for (uint32_t id : {1u, 3u}) {
    EXPECT_NE(bodies[id].find("payload_too_large"), std::string::npos) << id;
    EXPECT_EQ(resets[id], 0u) << id;  // NO_ERROR: "stop sending", not a failure
  }
  // Within the limit still works, on the same connection.
  c.send(post(5, {}) + frame(kData, kEndStream, 5, std::string(900, 'z')));
  auto body = c.read_body(5);
  ASSERT_TRUE(body);
  EXPECT_EQ(body->size(), 900u);
}

TEST(Http2, curl_sees_413_for_a_short_body_over_the_limit) {
  auto o = TestServer::defaults();
  o.body_limit = 1000;
  TestServer s(o);
  add_routes(s.router);
  s.start();
  // A short refused body is read to its end, so curl (7.88 mishandles a reset mid-upload)
  // sees a plain 413 whether or not the answer overtakes its upload.
  for (bool declared : {true, false}) {
    auto r = fetch(url(s, "/echo"), {.body = std::string(20000, 'y'), .stream_body = !declared});
    EXPECT_EQ(r.status, 413) << r.error;
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
  }
}

TEST(Http2, oversized_headers_are_431) {
  auto o = TestServer::defaults();
  o.header_limit = 2048;
  TestServer s(o);
  add_routes(s.router);
  s.start();
  auto r = fetch(url(s, "/hello"), {.headers = {"X-Big: " + std::string(4000, 'a')}});
  EXPECT_EQ(r.status, 431) << r.error;
  expect_alive(s);
}

TEST(Http2, a_connection_past_its_request_rate_gets_429) {
  auto o = TestServer::defaults();
  o.connection_rps = 5;  // burst of 10
  TestServer s(o);
  add_routes(s.router);
  s.start();
  Client c;
  int ok = 0, limited = 0;
  for (int i = 0; i < 30; ++i) {
    // h2c by Upgrade: curl reuses that connection (not a prior-knowledge one, curl#10634).
    auto r = c.fetch(url(s, "/hello"), {.http_version = CURL_HTTP_VERSION_2_0});
    EXPECT_EQ(r.code, CURLE_OK) << i << ": " << r.error;
    EXPECT_EQ(r.version, CURL_HTTP_VERSION_2_0);
    if (r.status == 200) ++ok;
    if (r.status == 429) {
      ++limited;
      EXPECT_EQ(r.header("retry-after"), "1");
    }
  }
  EXPECT_GE(ok, 10);
  EXPECT_LE(ok, 12);
  EXPECT_EQ(ok + limited, 30);
}

// --- lifecycle ----------------------------------------------------------------------------

TEST(Http2, shutdown_finishes_in_flight_streams_then_closes) {
  TestServer s;
  auto started = std::make_shared<std::promise<void>>();
  s.router.get("/slow", [started](Request&) -> asio::awaitable<Response> {
    started->set_value();
    co_await sleep_ms(400);
    co_return Response(200, R"({"slow":true})");
  });
  s.start();
  auto pending = std::async(std::launch::async, [&] { return fetch(url(s, "/slow")); });
  ASSERT_EQ(started->get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto t0 = std::chrono::steady_clock::now();
  s.server->shutdown();
  auto r = pending.get();
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, R"({"slow":true})");
  s.server->wait();
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 2500);
}

TEST(Http2, shutdown_cuts_streams_that_outlast_the_grace_period) {
  auto o = TestServer::defaults();
  o.shutdown_timeout_ms = 200;
  TestServer s(o);
  add_routes(s.router);
  s.start();
  RawH2 c(s.port);
  c.greet();
  c.send(get_headers(1, "/slow/60000") + get_headers(3, "/slow/60000"));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto t0 = std::chrono::steady_clock::now();
  s.server->shutdown();
  s.server->wait();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  auto g = c.read_until_goaway(2000);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->goaway_error(), 0u);
  EXPECT_FALSE(c.read(1000));
  EXPECT_TRUE(c.closed());
}

TEST(Http2, shutdown_sends_goaway_to_an_idle_connection) {
  TestServer s;
  add_routes(s.router);
  s.start();
  RawH2 c(s.port);
  c.greet();
  c.send(get_headers(1, "/hello"));
  ASSERT_TRUE(c.read_body(1));
  s.server->shutdown();
  auto g = c.read_until_goaway();
  ASSERT_TRUE(g);
  EXPECT_EQ(g->goaway_error(), 0u);
  EXPECT_FALSE(c.read(2000));
  EXPECT_TRUE(c.closed());
}

TEST(Http2, idle_connections_get_goaway_and_are_closed) {
  auto o = TestServer::defaults();
  o.idle_timeout_ms = 300;
  TestServer s(o);
  add_routes(s.router);
  s.start();
  RawH2 c(s.port);
  c.greet();
  c.send(get_headers(1, "/hello"));
  ASSERT_TRUE(c.read_body(1));
  auto t0 = std::chrono::steady_clock::now();
  auto g = c.read_until_goaway();
  ASSERT_TRUE(g);
  EXPECT_EQ(g->goaway_error(), 0u);
  EXPECT_FALSE(c.read(2000));
  EXPECT_TRUE(c.closed());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
}

TEST(Http2, a_client_that_never_sends_the_preface_is_cut_at_the_header_timeout) {
  auto o = TestServer::defaults();
  o.header_timeout_ms = 300;
  TestServer s(o);
  add_routes(s.router);
  s.start();
  RawClient c(s.port);
  c.send(kPreface);  // and then nothing, not even SETTINGS
  EXPECT_TRUE(c.closed_within(3000));
}

TEST(Http2, a_stream_that_stops_sending_its_body_is_reset_and_others_go_on) {
  auto o = TestServer::defaults();
  o.body_timeout_ms = 300;
  TestServer s(o);
  add_routes(s.router);
  s.start();
  RawH2 c(s.port);
  c.greet();
  c.send(frame(kHeaders, kEndHeaders, 1,
               hpack({{":method", "POST"}, {":scheme", "http"}, {":path", "/echo"}, {":authority", "t"}})));
  c.send(frame(kData, 0, 1, "part"));  // and never the rest
  std::optional<Frame> rst;
  while (auto f = c.read(3000)) {
    if (f->type == kSettings && !(f->flags & kAck)) c.send(frame(kSettings, kAck, 0, ""));
    if (f->type == kRst && f->stream == 1) {
      rst = f;
      break;
    }
  }
  ASSERT_TRUE(rst) << "the stalled stream should be reset";
  c.send(get_headers(3, "/hello"));
  auto body = c.read_body(3);
  ASSERT_TRUE(body);
  EXPECT_EQ(*body, R"({"hello":"world"})");
}

TEST(Http2, a_reset_or_vanished_client_does_not_disturb_a_running_handler) {
  TestServer s;
  add_routes(s.router);
  s.start();
  {
    RawH2 c(s.port);
    c.greet();
    c.send(get_headers(1, "/slow/300"));
    c.send(frame(kRst, 0, 1, u32(8)));  // CANCEL while the handler sleeps
    c.send(get_headers(3, "/hello"));
    auto body = c.read_body(3);
    ASSERT_TRUE(body);
    EXPECT_EQ(*body, R"({"hello":"world"})");
    c.send(get_headers(5, "/slow/200"));
  }  // closed with the handler of stream 5 still running
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  expect_alive(s);
}

// --- abuse --------------------------------------------------------------------------------

TEST(Http2, rapid_reset_is_answered_with_goaway) {
  TestServer s;
  add_routes(s.router);
  s.start();
  RawH2 c(s.port);
  c.greet();
  std::string burst;
  for (uint32_t id = 1; id < 2 * 1000; id += 2) {
    burst += get_headers(id, "/slow/50");
    burst += frame(kRst, 0, id, u32(8));
  }
  c.send(burst);
  auto g = c.read_until_goaway();
  ASSERT_TRUE(g);
  EXPECT_EQ(g->goaway_error(), kEnhanceYourCalm);
  expect_alive(s);
}

TEST(Http2, ping_and_settings_floods_end_the_connection) {
  TestServer s;
  add_routes(s.router);
  s.start();
  for (uint8_t type : {kPing, kSettings}) {
    std::string one = frame(type, 0, 0, type == kPing ? std::string(8, 'p') : std::string());
    {
      // A client that reads its ACKs: the server counts the frames and sends GOAWAY. Each batch
      // waits for its own 50 ACKs (fewer than nghttp2's unsent-ACK bound) rather than for a
      // pause in the answers, so the flood outpaces the per-second window however slow the
      // machine is.
      RawH2 c(s.port);
      c.greet();
      std::optional<Frame> goaway;
      for (int batch = 0; batch < 40 && !goaway && !c.closed(); ++batch) {
        std::string flood;
        for (int i = 0; i < 50; ++i) flood += one;
        c.send(flood);
        for (int acks = 0; acks < 50 && !goaway;) {
          auto f = c.read(3000);
          if (!f) break;
          if (f->type == kGoaway) goaway = f;
          if (f->type == type && (f->flags & kAck)) ++acks;
        }
      }
      ASSERT_TRUE(goaway) << int(type);
      EXPECT_EQ(goaway->goaway_error(), kEnhanceYourCalm) << int(type);
    }
    {
      // A client that never reads its ACKs: nghttp2 stops queueing them and the server hangs up.
      RawH2 c(s.port);
      c.greet();
      std::string flood;
      for (int i = 0; i < 3000; ++i) flood += one;
      c.send(flood);
      while (c.read(3000)) {
      }
      EXPECT_TRUE(c.closed()) << int(type);
    }
  }
  expect_alive(s);
}

TEST(Http2, garbage_after_the_preface_never_takes_the_server_down) {
  auto o = TestServer::defaults();
  o.header_timeout_ms = 500;
  o.idle_timeout_ms = 500;
  TestServer s(o);
  add_routes(s.router);
  s.start();
  std::mt19937 rng(20240611);
  auto byte = [&] { return static_cast<char>(rng() & 0xff); };
  for (int round = 0; round < 300; ++round) {
    RawH2 c(s.port);
    std::string out(kPreface);
    if (round % 2 == 0) out += frame(kSettings, 0, 0, "");
    int frames = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < frames; ++i) {
      if (round % 10 == 9) {
        for (int k = 0; k < 64; ++k) out += byte();  // not even frames
        continue;
      }
      uint8_t type = static_cast<uint8_t>(rng() % 12);
      uint8_t flags = static_cast<uint8_t>(rng());
      uint32_t stream = rng() % 4 == 0 ? rng() : rng() % 12;
      std::string payload;
      std::size_t len = rng() % 3 == 0 ? rng() % 400 : rng() % 16;
      if (type == kHeaders && rng() % 2 == 0) {
        payload = hpack({{":method", "GET"}, {":scheme", "http"}, {":path", "/items/" + std::to_string(rng() % 9)}});
        for (std::size_t k = 0; k < len % 8; ++k) payload[rng() % payload.size()] = byte();
      } else {
        for (std::size_t k = 0; k < len; ++k) payload += byte();
      }
      out += frame(type, flags, stream, payload);
    }
    c.send(out);
    // Take whatever the server answers, briefly, then hang up.
    while (c.read(20)) {
    }
  }
  expect_alive(s);
}

}  // namespace
}  // namespace harmar::testing

namespace harmar::testing {
namespace {

class OnePiece final : public net::BodyStream {
 public:
  explicit OnePiece(std::string s) : s_(std::move(s)) {}
  asio::awaitable<Result<std::string>> read() override { co_return std::exchange(s_, std::string()); }

 private:
  std::string s_;
};

TEST(Http2, streamed_upload_routes_are_refused_with_a_pointer_to_http11) {
  TestServer s;
  s.router.post("/upload", [](Request&) -> asio::awaitable<Response> { co_return Response(200, "{}"); },
                {.body_limit = 1 << 20, .stream_body = true});
  s.start();
  FetchOptions o;
  o.body = std::string(1000, 'x');
  auto r = fetch(url(s, "/upload"), o);
  ASSERT_EQ(r.code, CURLE_OK) << r.error;
  EXPECT_EQ(r.version, CURL_HTTP_VERSION_2_0);
  EXPECT_EQ(r.status, 505);
  EXPECT_NE(r.body.find("http1_required"), std::string::npos);
  o.http_version = CURL_HTTP_VERSION_1_1;  // the same request over HTTP/1.1 is served
  r = fetch(url(s, "/upload"), o);
  EXPECT_EQ(r.status, 200);
}

TEST(Http2, streamed_responses_are_sent_whole_up_to_the_h2_bound_and_refused_beyond) {
  TestServer s;
  s.router.get("/file/{n}", [](Request& req) -> asio::awaitable<Response> {
    std::size_t n = std::stoul(std::string(req.param("n")));
    Response r(200, {}, "application/octet-stream");
    r.stream = std::make_shared<OnePiece>(std::string(n, 'f'));
    r.stream_size = static_cast<int64_t>(n);
    co_return r;
  });
  s.start();
  auto r = fetch(url(s, "/file/300000"));
  ASSERT_EQ(r.code, CURLE_OK) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, std::string(300000, 'f'));
  r = fetch(url(s, "/file/" + std::to_string(net::Response::kMaxH2StreamedBody + 1)));
  EXPECT_EQ(r.status, 505);
  EXPECT_NE(r.body.find("http1_required"), std::string::npos);
  // HEAD answers what GET would: the streamed length, or the same refusal.
  r = fetch(url(s, "/file/300000"), {.method = "HEAD"});
  ASSERT_EQ(r.code, CURLE_OK) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-length"), "300000");
  EXPECT_TRUE(r.body.empty());
  r = fetch(url(s, "/file/" + std::to_string(net::Response::kMaxH2StreamedBody + 1)), {.method = "HEAD"});
  EXPECT_EQ(r.status, 505);
}

}  // namespace
}  // namespace harmar::testing
