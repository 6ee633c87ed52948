// The outbound HTTP client against a real HTTP server (our in-process test server): bodies,
// headers, the size cap, timeouts, redirects, and what it refuses to do.
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include "net/http_client.hpp"
#include "support/test_client.hpp"
#include "support/test_support.hpp"

namespace harmar::net {
namespace {

struct Upstream {
  testing::TestServer server;
  Upstream() {
    server.router.get("/json", [](Request&) -> asio::awaitable<Response> { co_return Response(200, R"({"ok":true})"); });
    server.router.post("/echo", [](Request& req) -> asio::awaitable<Response> {
      Response r(201, req.body, nullptr);
      r.header("X-Method", std::string(req.method_text()));
      r.header("X-Content-Type", std::string(req.header("Content-Type")));
      r.header("X-Auth", std::string(req.header("Authorization")));
      co_return r;
    });
    server.router.put("/echo", [](Request& req) -> asio::awaitable<Response> {
      Response r(200, req.body, nullptr);
      r.header("X-Method", std::string(req.method_text()));
      co_return r;
    });
    server.router.get("/big", [](Request&) -> asio::awaitable<Response> {
      co_return Response(200, std::string(2 << 20, 'x'), "application/octet-stream");
    });
    server.router.get("/slow", [](Request&) -> asio::awaitable<Response> {
      asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::seconds(3));
      boost::system::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      co_return Response(200, "late");
    });
    server.router.get("/redirect", [](Request&) -> asio::awaitable<Response> {
      Response r(302, "", nullptr);
      r.header("Location", "/json");
      co_return r;
    });
    server.router.get("/loop", [](Request&) -> asio::awaitable<Response> {
      Response r(302, "", nullptr);
      r.header("Location", "/loop");
      co_return r;
    });
    server.router.get("/error", [](Request&) -> asio::awaitable<Response> {
      co_return Response(503, R"({"down":true})");
    });
    server.start();
  }
  std::string url(std::string_view path) const { return "http://127.0.0.1:" + std::to_string(server.port) + std::string(path); }
};

Result<ClientResponse> fetch(ClientRequest r) { return testing::run(http_fetch(std::move(r))); }

ClientRequest get(std::string url) {
  ClientRequest r;
  r.url = std::move(url);
  return r;
}

TEST(HttpClient, gets_a_body_with_its_status_and_headers) {
  Upstream up;
  auto r = fetch(get(up.url("/json")));
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"ok":true})");
  EXPECT_EQ(r->header("content-type"), "application/json");
  EXPECT_EQ(r->effective_url, up.url("/json"));
}

TEST(HttpClient, sends_method_body_and_headers) {
  Upstream up;
  ClientRequest req;
  req.method = "POST";
  req.url = up.url("/echo");
  req.body = "a=1&b=2";
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded"}, {"Authorization", "Bearer t"}};
  auto r = fetch(req);
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, "a=1&b=2");
  EXPECT_EQ(r->header("X-Method"), "POST");
  EXPECT_EQ(r->header("X-Content-Type"), "application/x-www-form-urlencoded");
  EXPECT_EQ(r->header("X-Auth"), "Bearer t");
  req.method = "PUT";
  auto p = fetch(req);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->header("X-Method"), "PUT");
}

TEST(HttpClient, an_error_status_is_a_response_not_an_error) {
  Upstream up;
  auto r = fetch(get(up.url("/error")));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503);
}

TEST(HttpClient, a_body_over_the_cap_is_502_upstream_too_large) {
  Upstream up;
  auto req = get(up.url("/big"));
  req.max_response_bytes = 1 << 20;
  auto r = fetch(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 502);
  EXPECT_EQ(r.error().code, "upstream_too_large");
  req.max_response_bytes = 4 << 20;
  EXPECT_TRUE(fetch(req).ok());
}

TEST(HttpClient, a_slow_server_is_504_upstream_timeout) {
  Upstream up;
  auto req = get(up.url("/slow"));
  req.timeout_ms = 300;
  auto started = std::chrono::steady_clock::now();
  auto r = fetch(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 504);
  EXPECT_EQ(r.error().code, "upstream_timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
}

TEST(HttpClient, redirects_are_followed_only_when_allowed_and_only_so_often) {
  Upstream up;
  auto r = fetch(get(up.url("/redirect")));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 302) << "max_redirects 0 returns the redirect itself";
  EXPECT_EQ(r->header("Location"), "/json");
  auto follow = get(up.url("/redirect"));
  follow.max_redirects = 3;
  auto f = fetch(follow);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->status, 200);
  EXPECT_EQ(f->effective_url, up.url("/json"));
  auto loop = get(up.url("/loop"));
  loop.max_redirects = 2;
  auto l = fetch(loop);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().code, "too_many_redirects");
}

TEST(HttpClient, refuses_other_schemes_line_breaks_in_headers_and_reports_unreachable_hosts) {
  EXPECT_EQ(fetch(get("ftp://127.0.0.1/x")).error().status, 500);
  EXPECT_EQ(fetch(get("file:///etc/passwd")).error().status, 500);
  auto bad = get("http://127.0.0.1:1/");
  bad.headers = {{"X-A", "1\r\nX-Injected: 2"}};
  EXPECT_EQ(fetch(bad).error().status, 500);
  auto down = fetch(get("http://127.0.0.1:1/"));
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().status, 502);
  EXPECT_EQ(down.error().code, "upstream_unreachable");
}

TEST(HttpClient, encodes_forms_and_queries) {
  EXPECT_EQ(url_encode("a b&c=d/é~"), "a%20b%26c%3Dd%2F%C3%A9~");
  EXPECT_EQ(form_encode({{"grant_type", "authorization_code"}, {"redirect_uri", "https://x.test/cb?a=1"}}),
            "grant_type=authorization_code&redirect_uri=https%3A%2F%2Fx.test%2Fcb%3Fa%3D1");
  EXPECT_EQ(with_query("https://x.test/auth", {{"a", "1"}}), "https://x.test/auth?a=1");
  EXPECT_EQ(with_query("https://x.test/auth?z=0", {{"a", "1"}}), "https://x.test/auth?z=0&a=1");
  EXPECT_EQ(with_query("https://x.test/auth?", {{"a", "1"}}), "https://x.test/auth?a=1");
  EXPECT_EQ(with_query("https://x.test/auth#frag", {{"a", "1"}}), "https://x.test/auth?a=1#frag");
}

}  // namespace
}  // namespace harmar::net
