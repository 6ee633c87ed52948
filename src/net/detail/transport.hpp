#pragma once
// Internal to src/net: the byte streams under HTTP/1.1 and HTTP/2 sessions.
//
// Plain TCP reads into the worker's scratch buffer: the session must consume or copy the bytes
// before it next suspends, and no buffer is held while a connection is idle. TLS keeps a small
// buffer per connection (OpenSSL reads may be in flight while other sessions run).
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>

#include <string_view>

#include "net/detail/sessions.hpp"

namespace harmar::net::detail {

struct PlainTransport {
  static constexpr bool kSecure = false;
  tcp::socket sock;
  Worker& w;

  // The next bytes received, valid until the caller suspends; empty with `ec` set at the end.
  asio::awaitable<std::string_view> read(boost::system::error_code& ec) {
    for (;;) {
      // Read first: only an EAGAIN read proves the socket drained, which guarantees the
      // edge-triggered reactor reports the next bytes to the wait below.
      std::size_t n = sock.read_some(asio::buffer(w.scratch.get(), Worker::kScratch), ec);
      if (!ec) co_return std::string_view(w.scratch.get(), n);
      if (ec != asio::error::would_block && ec != asio::error::try_again) co_return std::string_view();
      co_await sock.async_wait(tcp::socket::wait_read, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return std::string_view();
    }
  }

  asio::awaitable<void> write(std::string_view data, boost::system::error_code& ec) {
    // Most writes fit the socket buffer: one non-blocking send, no suspension.
    std::size_t n = sock.write_some(asio::buffer(data), ec);
    if (!ec && n == data.size()) co_return;
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) co_return;
    if (ec) n = 0;
    ec = {};
    co_await asio::async_write(sock, asio::buffer(data.substr(n)), asio::redirect_error(asio::use_awaitable, ec));
  }

  void cut() {
    boost::system::error_code ignored;
    sock.close(ignored);
  }

  void finish() {
    boost::system::error_code ignored;
    sock.shutdown(tcp::socket::shutdown_send, ignored);
    sock.close(ignored);
  }

  tcp::socket&& take() { return std::move(sock); }
};

struct TlsTransport {
  static constexpr bool kSecure = true;
  static constexpr std::size_t kBuf = 16 * 1024;
  TlsStream stream;
  Worker& w;
  std::unique_ptr<char[]> buf = std::make_unique<char[]>(kBuf);

  asio::awaitable<std::string_view> read(boost::system::error_code& ec) {
    std::size_t n =
        co_await stream.async_read_some(asio::buffer(buf.get(), kBuf), asio::redirect_error(asio::use_awaitable, ec));
    co_return std::string_view(buf.get(), ec ? 0 : n);
  }

  asio::awaitable<void> write(std::string_view data, boost::system::error_code& ec) {
    co_await asio::async_write(stream, asio::buffer(data), asio::redirect_error(asio::use_awaitable, ec));
  }

  void cut() {
    boost::system::error_code ignored;
    stream.lowest_layer().close(ignored);
  }

  void finish() {
    // No close_notify round trip: the peer learns of the end from the TCP FIN, and a client that
    // never answers cannot hold the worker.
    boost::system::error_code ignored;
    stream.lowest_layer().shutdown(tcp::socket::shutdown_send, ignored);
    stream.lowest_layer().close(ignored);
  }

  TlsStream&& take() { return std::move(stream); }
};

template <class Stream>
struct TransportFor;
template <>
struct TransportFor<tcp::socket> {
  using type = PlainTransport;
};
template <>
struct TransportFor<TlsStream> {
  using type = TlsTransport;
};

// Makes the transport for a freshly accepted (or handed-over) stream: non-blocking for the
// read-first/write-first paths above, Nagle off (responses are written whole already).
template <class Stream>
typename TransportFor<Stream>::type make_transport(Stream stream, Worker& w) {
  boost::system::error_code ignored;
  if constexpr (std::is_same_v<Stream, tcp::socket>) stream.non_blocking(true, ignored);
  stream.lowest_layer().set_option(tcp::no_delay(true), ignored);
  return {std::move(stream), w};
}

}  // namespace harmar::net::detail
