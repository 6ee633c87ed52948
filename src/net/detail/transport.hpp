#pragma once
// Internal to src/net: the byte streams under HTTP/1.1 and HTTP/2 sessions.
//
// Plain TCP reads into the worker's scratch buffer: the session must consume or copy the bytes
// before it next suspends, and no buffer is held while a connection is idle. TLS keeps a small
// buffer per connection (OpenSSL reads may be in flight while other sessions run).
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>

#include <string_view>

#include "net/detail/reactor_access.hpp"
#include "net/detail/sessions.hpp"

namespace harmar::net::detail {

// Each transport offers the same calls: *_now() never suspend (they may report would_block),
// the coroutines suspend until progress. Sessions try the former first, so the common request
// costs no coroutine frame for I/O at all.
struct PlainTransport {
  static constexpr bool kSecure = false;
  tcp::socket sock;
  Worker& w;
  // Set after a read that left the socket empty: the next read waits for readiness first instead
  // of paying for a recv that can only say EAGAIN. Asio is told too (its reads try a recv first).
  bool drained = false;

  void set_drained(bool empty) {
    drained = empty;
    if (empty) expect_readable_edge(sock);
  }

  // Bytes received already, valid until the caller suspends; would_block if none.
  std::string_view read_now(boost::system::error_code& ec) {
    if (drained) {
      ec = asio::error::would_block;
      return {};
    }
    std::size_t n = sock.read_some(asio::buffer(w.scratch.get(), Worker::kScratch), ec);
    if (ec) {
      if (ec == asio::error::try_again) ec = asio::error::would_block;
      set_drained(ec == asio::error::would_block);
      return {};
    }
    set_drained(n < Worker::kScratch);
    return {w.scratch.get(), n};
  }

  // Waits until read_now() has something to say. Asio re-arms the descriptor for a wait
  // (epoll_ctl MOD), so bytes that arrived since the last read are reported at once even with
  // edge-triggered epoll.
  asio::awaitable<void> wait_readable(boost::system::error_code& ec) {
    co_await sock.async_wait(tcp::socket::wait_read, asio::redirect_error(asio::use_awaitable, ec));
    drained = false;
  }

  // The next bytes received (suspending as needed); empty with `ec` set at the end.
  asio::awaitable<std::string_view> read(boost::system::error_code& ec) {
    for (;;) {
      std::string_view got = read_now(ec);
      if (ec != asio::error::would_block) co_return got;
      ec = {};
      co_await sock.async_wait(tcp::socket::wait_read, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return std::string_view();
      drained = false;
    }
  }

  // Writes what the socket takes now; would_block (with the count written) if not all of it.
  std::size_t write_now(std::string_view data, boost::system::error_code& ec) {
    std::size_t n = sock.write_some(asio::buffer(data), ec);
    if (ec == asio::error::try_again) ec = asio::error::would_block;
    if (ec) return ec == asio::error::would_block ? 0 : n;
    if (n < data.size()) ec = asio::error::would_block;
    return n;
  }

  asio::awaitable<void> write(std::string_view data, boost::system::error_code& ec) {
    std::size_t n = write_now(data, ec);
    if (ec != asio::error::would_block) co_return;
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
  int native_fd() { return sock.native_handle(); }
};

// TLS: OpenSSL may hold decrypted bytes and reads may be in flight while other sessions run, so
// each connection has its own buffer and every read goes through the SSL stream.
struct TlsTransport {
  static constexpr bool kSecure = true;
  static constexpr std::size_t kBuf = 16 * 1024;
  TlsStream stream;
  Worker& w;
  std::unique_ptr<char[]> buf = std::make_unique<char[]>(kBuf);

  std::string_view read_now(boost::system::error_code& ec) {
    ec = asio::error::would_block;
    return {};
  }

  asio::awaitable<void> wait_readable(boost::system::error_code& ec) { co_return; }

  asio::awaitable<std::string_view> read(boost::system::error_code& ec) {
    std::size_t n =
        co_await stream.async_read_some(asio::buffer(buf.get(), kBuf), asio::redirect_error(asio::use_awaitable, ec));
    co_return std::string_view(buf.get(), ec ? 0 : n);
  }

  std::size_t write_now(std::string_view, boost::system::error_code& ec) {
    ec = asio::error::would_block;
    return 0;
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
  int native_fd() { return stream.lowest_layer().native_handle(); }
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
