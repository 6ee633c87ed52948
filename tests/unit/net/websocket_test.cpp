// WebSocket upgrade on the HTTP listener: echo, auth before the upgrade, the protocol's details
// (fragments, pings, close codes, limits), and a slow consumer cut off by its bounded send queue.
#include <boost/asio/connect.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <gtest/gtest.h>

#include <future>

#include "net/websocket.hpp"
#include "support/test_client.hpp"

namespace harmar::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

struct WsClient {
  asio::io_context ioc;
  websocket::stream<tcp::socket> ws{ioc};
  beast::flat_buffer buf;
  boost::system::error_code connect(uint16_t port, const std::string& target, const std::string& token = "") {
    ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
    if (!token.empty())
      ws.set_option(websocket::stream_base::decorator(
          [token](websocket::request_type& r) { r.set(beast::http::field::authorization, "Bearer " + token); }));
    boost::system::error_code ec;
    ws.handshake("127.0.0.1", target, ec);
    return ec;
  }
  std::string read() {
    buf.clear();
    ws.read(buf);
    return beast::buffers_to_string(buf.data());
  }
};

// "/ws" answers each message m with "echo:m".
void start_echo(TestServer& s) {
  s.router.websocket("/ws", [](net::WebSocket& ws, net::Request&) -> asio::awaitable<void> {
    while (auto msg = co_await ws.receive()) ws.send("echo:" + *msg);
  });
  s.start();
}

TEST(WebSocket, echoes_messages_over_the_upgraded_connection) {
  TestServer s;
  start_echo(s);
  WsClient c;
  ASSERT_FALSE(c.connect(s.port, "/ws"));
  for (int i = 0; i < 5; ++i) {
    c.ws.write(asio::buffer("m" + std::to_string(i)));
    EXPECT_EQ(c.read(), "echo:m" + std::to_string(i));
  }
  c.ws.close(websocket::close_code::normal);
}

TEST(WebSocket, a_plain_get_on_a_websocket_route_is_426) {
  TestServer s;
  s.router.websocket("/ws", [](net::WebSocket&, net::Request&) -> asio::awaitable<void> { co_return; });
  s.start();
  RawClient c(s.port);
  auto r = c.request(get("/ws"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 426);
}

TEST(WebSocket, authentication_happens_before_the_upgrade) {
  net::AuthHook auth;
  auth.authenticate = [](net::Request& req) -> asio::awaitable<Result<Principal>> {
    if (req.header("Authorization") != "Bearer good") co_return Error::unauthorized("bad token");
    Principal p;
    p.id = p.user_id = "u1";
    co_return p;
  };
  TestServer s(TestServer::defaults(), auth);
  s.router.websocket("/ws", [](net::WebSocket& ws, net::Request& req) -> asio::awaitable<void> {
    ws.send("hello " + req.principal->id);
    while (co_await ws.receive()) {
    }
  }, {.auth = net::Auth::User});
  s.start();
  WsClient refused;
  EXPECT_TRUE(refused.connect(s.port, "/ws", "bad"));
  WsClient ok;
  ASSERT_FALSE(ok.connect(s.port, "/ws", "good"));
  EXPECT_EQ(ok.read(), "hello u1");
}

TEST(WebSocket, fragments_are_joined_into_one_message_and_pings_are_answered) {
  TestServer s;
  start_echo(s);
  WsClient c;
  ASSERT_FALSE(c.connect(s.port, "/ws"));
  std::string pong;
  c.ws.control_callback([&](websocket::frame_type kind, beast::string_view payload) {
    if (kind == websocket::frame_type::pong) pong = std::string(payload);
  });
  c.ws.ping("are you there");
  c.ws.write_some(false, asio::buffer(std::string("frag")));
  c.ws.write_some(false, asio::buffer(std::string("men")));
  c.ws.write_some(true, asio::buffer(std::string("ted")));
  EXPECT_EQ(c.read(), "echo:fragmented");
  EXPECT_EQ(pong, "are you there");  // answered before the echo, in the order asked
  c.ws.close(websocket::close_code::normal);
}

TEST(WebSocket, the_clients_close_code_is_answered_in_kind) {
  TestServer s;
  s.router.websocket("/ws", [](net::WebSocket& ws, net::Request&) -> asio::awaitable<void> {
    while (co_await ws.receive()) {
    }
  });
  s.start();
  WsClient c;
  ASSERT_FALSE(c.connect(s.port, "/ws"));
  c.ws.close(websocket::close_code::going_away);
  EXPECT_EQ(c.ws.reason().code, 1001);
}

TEST(WebSocket, a_message_over_the_limit_ends_the_connection_with_1009) {
  TestServer s;
  s.router.websocket("/ws", [](net::WebSocket& ws, net::Request&) -> asio::awaitable<void> {
    while (auto msg = co_await ws.receive()) ws.send("echo:" + std::to_string(msg->size()));
  });
  s.start();
  WsClient c;
  ASSERT_FALSE(c.connect(s.port, "/ws"));
  c.ws.write(asio::buffer(std::string(1000, 'a')));
  EXPECT_EQ(c.read(), "echo:1000");
  boost::system::error_code ec;
  c.ws.write(asio::buffer(std::string(65 * 1024, 'b')), ec);
  for (;;) {
    c.buf.clear();
    c.ws.read(c.buf, ec);
    if (ec) break;
  }
  EXPECT_EQ(ec, websocket::error::closed);
  EXPECT_EQ(c.ws.reason().code, 1009);
}

TEST(WebSocket, a_frame_sent_to_many_sockets_arrives_whole_on_each) {
  TestServer s;
  auto frame = net::WebSocket::text_frame(std::string(70 * 1024, 'f'));  // the 64-bit length form
  s.router.websocket("/ws", [frame](net::WebSocket& ws, net::Request&) -> asio::awaitable<void> {
    ws.send_frame(frame);
    ws.send_frame(net::WebSocket::text_frame("small"));
    while (co_await ws.receive()) {
    }
  });
  s.start();
  WsClient a, b;
  ASSERT_FALSE(a.connect(s.port, "/ws"));
  ASSERT_FALSE(b.connect(s.port, "/ws"));
  for (WsClient* c : {&a, &b}) {
    EXPECT_EQ(c->read(), std::string(70 * 1024, 'f'));
    EXPECT_EQ(c->read(), "small");
    c->ws.close(websocket::close_code::normal);
  }
}

TEST(WebSocket, a_silent_client_is_pinged_then_cut_off) {
  TestServer s;
  s.router.websocket("/ws", [](net::WebSocket& ws, net::Request&) -> asio::awaitable<void> {
    while (co_await ws.receive()) {
    }
  }, {.websocket = {.idle_timeout_ms = 400}});
  s.start();
  WsClient c;
  ASSERT_FALSE(c.connect(s.port, "/ws"));
  // Read beneath the WebSocket layer, so nothing answers the ping: a ping frame, then the end.
  std::string got;
  boost::system::error_code ec;
  for (;;) {
    char buf[64];
    std::size_t n = c.ws.next_layer().read_some(asio::buffer(buf), ec);
    if (ec) break;
    got.append(buf, n);
  }
  EXPECT_EQ(got, std::string("\x89\x00", 2));
}

TEST(WebSocket, a_client_that_answers_pings_outlives_the_idle_timeout) {
  TestServer s;
  s.router.websocket("/ws", [](net::WebSocket& ws, net::Request&) -> asio::awaitable<void> {
    co_await ws.receive();
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(std::chrono::milliseconds(1600));  // four idle timeouts without a message
    co_await t.async_wait(asio::use_awaitable);
    ws.send("still here");
    while (co_await ws.receive()) {
    }
  }, {.websocket = {.idle_timeout_ms = 400}});
  s.start();
  WsClient c;
  ASSERT_FALSE(c.connect(s.port, "/ws"));
  int pings = 0;
  c.ws.control_callback([&](websocket::frame_type kind, beast::string_view) { pings += kind == websocket::frame_type::ping; });
  c.ws.write(asio::buffer(std::string("wait")));
  EXPECT_EQ(c.read(), "still here");  // Beast answers the pings while it reads
  EXPECT_GE(pings, 1);
  c.ws.close(websocket::close_code::normal);
}

TEST(WebSocket, a_consumer_that_stops_reading_is_disconnected_not_buffered_forever) {
  TestServer s;
  auto accepted = std::make_shared<std::promise<int>>();
  s.router.websocket("/flood", [accepted](net::WebSocket& ws, net::Request&) -> asio::awaitable<void> {
    std::string payload(16 * 1024, 'x');
    // 64 MiB offered; the client reads nothing, so the bounded queue must overflow.
    int sent = 0;
    for (; sent < 4096; ++sent) {
      if (!ws.send(payload)) break;
      if (sent % 16 == 0) {  // let the writer run, as a real event source would
        asio::steady_timer t(co_await asio::this_coro::executor);
        t.expires_after(std::chrono::milliseconds(1));
        co_await t.async_wait(asio::use_awaitable);
      }
    }
    accepted->set_value(sent);
    while (co_await ws.receive()) {
    }
  });
  s.start();
  WsClient c;
  c.ws.next_layer().open(tcp::v4());
  c.ws.next_layer().set_option(asio::socket_base::receive_buffer_size(4096));
  ASSERT_FALSE(c.connect(s.port, "/flood"));
  auto fut = accepted->get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_LT(fut.get(), 4096);
  // Draining what arrived ends with the close frame and its reason.
  boost::system::error_code ec;
  for (;;) {
    c.buf.clear();
    c.ws.read(c.buf, ec);
    if (ec) break;
  }
  EXPECT_EQ(ec, websocket::error::closed);
  EXPECT_EQ(c.ws.reason().code, 1008);
  EXPECT_EQ(std::string(c.ws.reason().reason.data(), c.ws.reason().reason.size()), "send queue overflow");
}

}  // namespace
}  // namespace harmar::testing
