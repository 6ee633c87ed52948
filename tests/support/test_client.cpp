#include "support/test_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <gtest/gtest.h>

#include <poll.h>

namespace harmar::testing {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

RawClient::RawClient(uint16_t port) : sock_(ioc_) {
  sock_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  sock_.set_option(tcp::no_delay(true));
}

void RawClient::send(std::string_view bytes) { asio::write(sock_, asio::buffer(bytes)); }

std::optional<HttpResponse> RawClient::read(bool head_request) {
  http::response_parser<http::string_body> p;
  p.body_limit(64 << 20);
  p.skip(head_request);
  boost::system::error_code ec;
  http::read(sock_, buf_, p, ec);
  if (ec) return std::nullopt;
  return p.release();
}

bool RawClient::closed_within(int ms) {
  pollfd pfd{sock_.native_handle(), POLLIN, 0};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    if (poll(&pfd, 1, std::max(left, 1)) <= 0) continue;
    char c;
    ssize_t n = ::recv(sock_.native_handle(), &c, 1, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
  }
  return false;
}

std::string get(std::string_view target, std::string_view extra) {
  std::string r = "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n";
  r += extra;
  r += "\r\n";
  return r;
}

net::ServerOptions TestServer::defaults() {
  net::ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.workers = 2;
  o.access_log = false;
  o.shutdown_timeout_ms = 3000;
  return o;
}

TestServer::TestServer(net::ServerOptions o, net::AuthHook a) : opts(std::move(o)), auth(std::move(a)) {}

void TestServer::start() {
  server = std::make_unique<net::Server>(opts, router, auth);
  auto st = server->start();
  ASSERT_TRUE(st.ok()) << st.error().detail;
  port = server->port();
}

TestServer::~TestServer() {
  if (server) {
    server->shutdown();
    server->wait();
  }
}

}  // namespace harmar::testing
