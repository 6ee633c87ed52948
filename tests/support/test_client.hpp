#pragma once
// A blocking HTTP/1.1 client over a raw socket, for tests that need to control bytes on the
// wire (pipelining, malformed requests, slow clients), plus an in-process server fixture.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <memory>
#include <optional>
#include <string>

#include "net/router.hpp"
#include "net/server.hpp"

namespace harmar::testing {

using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

class RawClient {
 public:
  explicit RawClient(uint16_t port);
  void send(std::string_view bytes);
  // Reads one response; nullopt if the connection closed first.
  std::optional<HttpResponse> read(bool head_request = false);
  std::optional<HttpResponse> request(std::string_view bytes, bool head_request = false) {
    send(bytes);
    return read(head_request);
  }
  // True if the server closed the connection within `ms` milliseconds.
  bool closed_within(int ms);
  boost::asio::ip::tcp::socket& socket() { return sock_; }

 private:
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket sock_;
  boost::beast::flat_buffer buf_;
};

// "GET /path HTTP/1.1" with Host and the given extra header lines.
std::string get(std::string_view target, std::string_view extra = "");

struct TestServer {
  explicit TestServer(net::ServerOptions opts = defaults(), net::AuthHook auth = {});
  ~TestServer();
  // Starts the server after routes were added.
  void start();
  static net::ServerOptions defaults();

  net::Router router;
  net::ServerOptions opts;
  net::AuthHook auth;
  std::unique_ptr<net::Server> server;
  uint16_t port = 0;
};

}  // namespace harmar::testing
