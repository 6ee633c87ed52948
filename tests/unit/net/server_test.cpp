// The HTTP/1.1 server against a raw-socket client: framing, limits, timeouts, auth, CORS and
// graceful shutdown, as a client on the wire sees them.
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "net/detail/server_state.hpp"
#include "support/test_client.hpp"

namespace harmar::testing {
namespace {

namespace asio = boost::asio;
using net::Auth;
using net::Request;
using net::Response;

asio::awaitable<void> sleep_ms(int ms) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(std::chrono::milliseconds(ms));
  co_await t.async_wait(asio::use_awaitable);
}

void add_basic_routes(net::Router& r) {
  r.get("/hello", [](Request&) -> asio::awaitable<Response> { co_return Response(200, R"({"hello":"world"})"); });
  r.get("/items/{id}", [](Request& req) -> asio::awaitable<Response> {
    co_return Response::json(200, boost::json::object{{"id", req.param("id")}});
  });
  r.post("/echo", [](Request& req) -> asio::awaitable<Response> { co_return Response(200, req.body, "text/plain"); });
  r.get("/boom", [](Request&) -> asio::awaitable<Response> {
    throw std::runtime_error("kaboom");
    co_return Response();
  });
  r.get("/slow", [](Request&) -> asio::awaitable<Response> {
    co_await sleep_ms(400);
    co_return Response(200, R"({"slow":true})");
  });
}

TEST(Server, answers_json_with_request_id_date_and_length) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  auto r = c.request(get("/hello"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
  EXPECT_EQ(r->body(), R"({"hello":"world"})");
  EXPECT_EQ((*r)["Content-Type"], "application/json");
  EXPECT_EQ((*r)["Content-Length"], "17");
  EXPECT_FALSE((*r)["Date"].empty());
  EXPECT_FALSE((*r)["X-Request-Id"].empty());
  EXPECT_TRUE(r->keep_alive());
}

TEST(Server, echoes_a_sane_request_id_and_replaces_a_hostile_one) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  auto r = c.request(get("/hello", "X-Request-Id: abc-123\r\n"));
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["X-Request-Id"], "abc-123");
  r = c.request(get("/hello", "X-Request-Id: bad id<script>\r\n"));
  ASSERT_TRUE(r);
  EXPECT_NE((*r)["X-Request-Id"], "bad id<script>");
  EXPECT_FALSE((*r)["X-Request-Id"].empty());
}

TEST(Server, unknown_route_is_404_and_wrong_method_is_405_with_allow) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  auto r = c.request(get("/nope"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 404);
  EXPECT_EQ((*r)["Content-Type"], "application/problem+json");
  auto body = boost::json::parse(r->body()).as_object();
  EXPECT_EQ(body["code"], "not_found");
  EXPECT_EQ(body["status"], 404);
  r = c.request("DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 405);
  EXPECT_EQ((*r)["Allow"], "GET, HEAD, OPTIONS");
}

TEST(Server, path_parameters_are_decoded) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  auto r = c.request(get("/items/a%2Fb"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), R"({"id":"a/b"})");
}

TEST(Server, head_has_length_but_no_body) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  auto r = c.request("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n", true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
  EXPECT_EQ((*r)["Content-Length"], "17");
  EXPECT_TRUE(r->body().empty());
  // The connection is still in sync: the next response parses.
  r = c.request(get("/hello"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), R"({"hello":"world"})");
}

TEST(Server, pipelined_requests_are_answered_in_order) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  std::string batch;
  for (int i = 0; i < 20; ++i) batch += get("/items/" + std::to_string(i));
  c.send(batch);
  for (int i = 0; i < 20; ++i) {
    auto r = c.read();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->body(), "{\"id\":\"" + std::to_string(i) + "\"}");
  }
}

TEST(Server, bodies_arrive_whole_with_content_length_or_chunked) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  std::string big(300000, 'x');
  auto r = c.request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(big.size()) + "\r\n\r\n" + big);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), big);
  r = c.request("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "hello world");
}

TEST(Server, too_large_bodies_are_413_before_they_are_read) {
  auto o = TestServer::defaults();
  o.body_limit = 1000;
  TestServer s(o);
  add_basic_routes(s.router);
  s.start();
  {
    RawClient c(s.port);
    // Only the header is sent: the server must refuse on Content-Length alone.
    auto r = c.request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 413);
    EXPECT_NE(r->body().find("payload_too_large"), std::string::npos);
    EXPECT_TRUE(c.closed_within(2000));
  }
  {
    RawClient c(s.port);
    std::string chunk(800, 'y');
    auto r = c.request("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n" + chunk +
                       "\r\n320\r\n" + chunk + "\r\n0\r\n\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 413);
  }
}

TEST(Server, oversized_headers_are_431) {
  auto o = TestServer::defaults();
  o.header_limit = 2048;
  TestServer s(o);
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  auto r = c.request(get("/hello", "X-Big: " + std::string(4000, 'a') + "\r\n"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 431);
}

TEST(Server, malformed_and_smuggling_shaped_requests_are_refused) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  struct Case {
    std::string raw;
    int status;
  } cases[] = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET /hello HTTP/1.1\r\nBad Header\r\n\r\n", 400},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", 505},
  };
  for (const auto& tc : cases) {
    RawClient c(s.port);
    auto r = c.request(tc.raw);
    ASSERT_TRUE(r) << tc.raw;
    EXPECT_EQ(r->result_int(), tc.status) << tc.raw;
    EXPECT_EQ((*r)["Content-Type"], "application/problem+json");
    EXPECT_TRUE(c.closed_within(2000)) << tc.raw;
  }
}

TEST(Server, slowloris_is_cut_off_at_the_header_timeout_while_others_are_served) {
  auto o = TestServer::defaults();
  o.header_timeout_ms = 400;
  o.workers = 1;
  TestServer s(o);
  add_basic_routes(s.router);
  s.start();
  RawClient slow(s.port);
  slow.send("GET /hello HTTP/1.1\r\nHost: x\r\nX-Dribble: ");
  auto t0 = std::chrono::steady_clock::now();
  // The single worker keeps serving others meanwhile.
  RawClient other(s.port);
  auto r = other.request(get("/hello"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
  for (int i = 0; i < 3; ++i) slow.send("a");  // dribbling does not extend the deadline
  EXPECT_TRUE(slow.closed_within(3000));
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(waited, 300);
  EXPECT_LT(waited, 2500);
}

TEST(Server, idle_keep_alive_connections_are_closed) {
  auto o = TestServer::defaults();
  o.idle_timeout_ms = 300;
  TestServer s(o);
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  ASSERT_TRUE(c.request(get("/hello")));
  EXPECT_TRUE(c.closed_within(3000));
}

TEST(Server, a_connection_past_its_request_rate_gets_429_with_retry_after) {
  auto o = TestServer::defaults();
  o.connection_rps = 5;  // burst of 10
  TestServer s(o);
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  int ok = 0, limited = 0;
  std::string retry_after;
  for (int i = 0; i < 30; ++i) {
    auto r = c.request(get("/hello"));
    ASSERT_TRUE(r);
    if (r->result_int() == 200) ++ok;
    if (r->result_int() == 429) {
      ++limited;
      retry_after = std::string((*r)["Retry-After"]);
    }
  }
  EXPECT_GE(ok, 10);
  EXPECT_LE(ok, 12);
  EXPECT_EQ(ok + limited, 30);
  EXPECT_EQ(retry_after, "1");
}

TEST(Server, expect_100_continue_gets_an_interim_response) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  char buf[64] = {};
  std::size_t n = c.socket().read_some(boost::asio::buffer(buf, sizeof buf));
  EXPECT_EQ(std::string(buf, n), "HTTP/1.1 100 Continue\r\n\r\n");
  c.send("hello");
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "hello");
}

// After a read that emptied the socket, the server waits for the kernel to report new bytes
// instead of trying a read first: the rest of a request must still be picked up when it comes.
// The 100 Continue is the proof that the header was read before the body is sent.
TEST(Server, a_kept_alive_connection_reads_the_rest_of_a_request_that_arrives_after_the_server_drained_it) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  ASSERT_TRUE(c.request(get("/hello")));
  for (int i = 0; i < 3; ++i) {
    c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nExpect: 100-continue\r\n\r\n");
    char buf[64] = {};
    std::size_t n = c.socket().read_some(boost::asio::buffer(buf, sizeof buf));
    ASSERT_EQ(std::string(buf, n), "HTTP/1.1 100 Continue\r\n\r\n") << i;
    std::string body = "body-" + std::to_string(i);
    c.send(body);
    auto r = c.read();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->body(), body);
  }
}

// The head is collected in a fixed buffer: headers longer than it, and many that only together
// are, must still arrive whole and in order.
TEST(Server, response_headers_longer_than_the_head_buffer_arrive_whole_and_in_order) {
  TestServer s;
  s.router.get("/long", [](Request&) -> asio::awaitable<Response> {
    Response r(200, "ok", "text/plain");
    for (int i = 0; i < 6; ++i) r.header("X-Part-" + std::to_string(i), std::string(150, static_cast<char>('a' + i)));
    r.header("X-Huge", std::string(3000, 'z'));
    r.header("X-Last", "end");
    co_return r;
  });
  s.start();
  RawClient c(s.port);
  for (int round = 0; round < 2; ++round) {  // the second response reuses the connection's buffer
    auto r = c.request(get("/long"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body(), "ok");
    std::vector<std::string> names;
    for (const auto& f : *r) names.emplace_back(f.name_string());
    std::vector<std::string> parts(names.end() - 8, names.end());
    EXPECT_EQ(parts, (std::vector<std::string>{"X-Part-0", "X-Part-1", "X-Part-2", "X-Part-3", "X-Part-4", "X-Part-5",
                                               "X-Huge", "X-Last"}));
    for (int i = 0; i < 6; ++i)
      EXPECT_EQ((*r)["X-Part-" + std::to_string(i)], std::string(150, static_cast<char>('a' + i)));
    EXPECT_EQ((*r)["X-Huge"], std::string(3000, 'z'));
    EXPECT_EQ((*r)["X-Last"], "end");
    EXPECT_EQ((*r)["Content-Type"], "text/plain");
  }
}

TEST(Server, a_throwing_handler_is_a_500_problem_naming_the_request) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  auto r = c.request(get("/boom", "X-Request-Id: trace-me\r\n"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 500);
  EXPECT_NE(r->body().find("trace-me"), std::string::npos);
  EXPECT_EQ(r->body().find("kaboom"), std::string::npos);  // internals stay in the log
}

TEST(Server, http10_closes_unless_keep_alive_is_asked_for) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  auto r = c.request("GET /hello HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), R"({"hello":"world"})");
  EXPECT_TRUE(c.closed_within(2000));
}

net::AuthHook test_auth() {
  net::AuthHook a;
  a.authenticate = [](Request& req) -> asio::awaitable<Result<Principal>> {
    auto h = req.header("Authorization");
    Principal p;
    if (h == "Bearer user-token") {
      p.kind = Principal::Kind::User;
      p.id = p.user_id = "u1";
      p.roles = {"user"};
    } else if (h == "Bearer admin-token") {
      p.kind = Principal::Kind::User;
      p.id = p.user_id = "u0";
      p.roles = {"admin"};
    } else if (h == "Bearer device-key") {
      p.kind = Principal::Kind::Device;
      p.id = "d1";
      p.user_id = "u1";
    } else {
      co_return Error::unauthorized("invalid token");
    }
    co_return p;
  };
  a.authorize = [](const Principal& p, std::string_view perm) { return p.is_admin(); };
  return a;
}

TEST(Server, routes_enforce_who_may_call_them) {
  TestServer s(TestServer::defaults(), test_auth());
  auto whoami = [](Request& req) -> asio::awaitable<Response> {
    co_return Response::json(200, boost::json::object{{"id", req.principal ? req.principal->id : "anonymous"}});
  };
  s.router.get("/user", whoami, {.auth = Auth::User});
  s.router.get("/device", whoami, {.auth = Auth::Device});
  s.router.get("/admin", whoami, {.auth = Auth::User, .permission = "admin:all"});
  s.router.get("/maybe", whoami, {.auth = Auth::Optional});
  s.start();
  RawClient c(s.port);
  auto status = [&](std::string path, std::string token) {
    auto r = c.request(get(path, token.empty() ? "" : "Authorization: Bearer " + token + "\r\n"));
    return r ? r->result_int() : 0;
  };
  EXPECT_EQ(status("/user", ""), 401);
  EXPECT_EQ(status("/user", "forged"), 401);
  EXPECT_EQ(status("/user", "user-token"), 200);
  EXPECT_EQ(status("/user", "device-key"), 403);
  EXPECT_EQ(status("/device", "user-token"), 403);
  EXPECT_EQ(status("/device", "device-key"), 200);
  EXPECT_EQ(status("/admin", "user-token"), 403);
  EXPECT_EQ(status("/admin", "admin-token"), 200);
  EXPECT_EQ(status("/maybe", ""), 200);
  EXPECT_EQ(status("/maybe", "forged"), 401);
  auto r = c.request(get("/maybe", "Authorization: Bearer user-token\r\n"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), R"({"id":"u1"})");
}

TEST(Server, cors_answers_preflights_and_tags_allowed_origins_only) {
  auto o = TestServer::defaults();
  o.cors_origins = {"https://app.example"};
  TestServer s(o);
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  auto r = c.request("OPTIONS /echo HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
                     "Access-Control-Request-Method: POST\r\n\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 204);
  EXPECT_EQ((*r)["Access-Control-Allow-Origin"], "https://app.example");
  EXPECT_NE((*r)["Access-Control-Allow-Methods"].find("POST"), std::string::npos);
  r = c.request(get("/hello", "Origin: https://app.example\r\n"));
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["Access-Control-Allow-Origin"], "https://app.example");
  r = c.request(get("/hello", "Origin: https://evil.example\r\n"));
  ASSERT_TRUE(r);
  EXPECT_TRUE((*r)["Access-Control-Allow-Origin"].empty());
}

// A handler that signals when it starts, then takes `ms`.
net::Handler signalling_slow(std::shared_ptr<std::promise<void>> started, int ms) {
  return [started, ms](Request&) -> asio::awaitable<Response> {
    started->set_value();
    co_await sleep_ms(ms);
    co_return Response(200, R"({"slow":true})");
  };
}

TEST(Server, shutdown_finishes_in_flight_requests_then_stops_accepting) {
  TestServer s;
  auto started = std::make_shared<std::promise<void>>();
  s.router.get("/slow", signalling_slow(started, 400));
  s.start();
  RawClient c(s.port);
  c.send(get("/slow"));
  ASSERT_EQ(started->get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto t0 = std::chrono::steady_clock::now();
  s.server->shutdown();
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
  EXPECT_EQ(r->body(), R"({"slow":true})");
  EXPECT_EQ((*r)["Connection"], "close");
  s.server->wait();
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 2500);
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket sock(ioc);
  boost::system::error_code ec;
  sock.connect({boost::asio::ip::make_address("127.0.0.1"), s.port}, ec);
  EXPECT_TRUE(ec) << "the listener should be closed";
}

TEST(Server, shutdown_cuts_requests_that_outlast_the_grace_period) {
  auto o = TestServer::defaults();
  o.shutdown_timeout_ms = 200;
  TestServer s(o);
  auto started = std::make_shared<std::promise<void>>();
  s.router.get("/forever", signalling_slow(started, 60'000));
  s.start();
  RawClient c(s.port);
  c.send(get("/forever"));
  ASSERT_EQ(started->get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto t0 = std::chrono::steady_clock::now();
  s.server->shutdown();
  s.server->wait();
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 2000);
  EXPECT_TRUE(c.closed_within(1000));
}

TEST(Server, port_zero_with_several_workers_shares_one_port) {
  auto o = TestServer::defaults();
  o.workers = 3;
  TestServer s(o);
  add_basic_routes(s.router);
  s.start();
  ASSERT_NE(s.port, 0);
  // Many connections land on the three listeners; all of them answer.
  for (int i = 0; i < 30; ++i) {
    RawClient c(s.port);
    auto r = c.request(get("/hello"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 200);
  }
}

TEST(Server, a_bad_listen_address_is_a_clear_error) {
  auto o = TestServer::defaults();
  o.listen = "not-an-ip:80";
  net::Router r;
  net::Server bad(o, r);
  auto st = bad.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().detail.find("IP address"), std::string::npos);
}

}  // namespace
}  // namespace harmar::testing

namespace harmar::testing {
namespace {

TEST(Server, a_parked_idle_connection_still_answers_and_still_times_out) {
  auto o = TestServer::defaults();
  o.idle_timeout_ms = 4000;
  o.workers = 1;
  TestServer s(o);
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  ASSERT_TRUE(c.request(get("/hello")));
  // Idle past the park threshold (the scenario itself, not synchronisation): the session's state
  // is given up, and the next request starts a new one on the same connection.
  std::this_thread::sleep_for(std::chrono::milliseconds(net::detail::Worker::kParkAfterMs + 600));
  auto r = c.request(get("/items/7"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), R"({"id":"7"})");
  std::this_thread::sleep_for(std::chrono::milliseconds(net::detail::Worker::kParkAfterMs + 600));
  // Parked connections keep their idle deadline.
  EXPECT_TRUE(c.closed_within(6000));
}

TEST(Server, parked_connections_are_closed_at_shutdown_without_waiting_for_their_deadline) {
  auto o = TestServer::defaults();
  o.idle_timeout_ms = 60'000;
  o.shutdown_timeout_ms = 60'000;
  o.workers = 1;
  TestServer s(o);
  add_basic_routes(s.router);
  s.start();
  RawClient a(s.port), b(s.port);
  ASSERT_TRUE(a.request(get("/hello")));
  ASSERT_TRUE(b.request(get("/hello")));
  // Idle past the park threshold (the scenario itself, not synchronisation).
  std::this_thread::sleep_for(std::chrono::milliseconds(net::detail::Worker::kParkAfterMs + 600));
  // One wakes up and is served by a fresh session; the other stays parked.
  auto r = a.request(get("/items/1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), R"({"id":"1"})");
  s.server->shutdown();
  s.server->wait();  // with a minute of grace and of idle deadline left, only closing them ends it
  EXPECT_TRUE(a.closed_within(1000));
  EXPECT_TRUE(b.closed_within(1000));
}

TEST(Server, requests_larger_than_the_inbox_and_small_ones_share_a_connection) {
  TestServer s;
  add_basic_routes(s.router);
  s.start();
  RawClient c(s.port);
  std::string big_header = "X-Padding: " + std::string(3000, 'p') + "\r\n";
  for (int i = 0; i < 3; ++i) {
    auto r = c.request(get("/items/big" + std::to_string(i), big_header));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body(), R"({"id":"big)" + std::to_string(i) + R"("})");
    r = c.request(get("/items/small" + std::to_string(i)));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body(), R"({"id":"small)" + std::to_string(i) + R"("})");
  }
  // Pipelined past the inbox: one read fills it, the rest is read on.
  std::string burst;
  for (int i = 0; i < 40; ++i) burst += get("/items/" + std::to_string(i));
  ASSERT_GT(burst.size(), 1024u);
  c.send(burst);
  for (int i = 0; i < 40; ++i) {
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body(), R"({"id":")" + std::to_string(i) + R"("})");
  }
}

}  // namespace
}  // namespace harmar::testing
