#pragma once
// Internal to src/net: the protocol sessions hand a connection to each other (HTTP/1.1 → WebSocket,
// HTTP/1.1 → HTTP/2 on h2c upgrade or prior knowledge, TLS → HTTP/2 by ALPN). Each template is
// instantiated for tcp::socket and ssl::stream<tcp::socket> in its own .cpp file.
#include <boost/asio/ssl/stream.hpp>

#include <string>

#include "net/detail/server_state.hpp"

namespace harmar::net::detail {

using TlsStream = asio::ssl::stream<tcp::socket>;

// The HTTP/2 connection preface a client sends first (RFC 9113 §3.4).
inline constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

template <class Stream>
asio::awaitable<void> serve_http1(ServerState& st, Worker& w, Stream stream, std::string remote_ip);

// Runs a WebSocket on `stream` after `req` (GET + Upgrade: websocket) matched `route`.
template <class Stream>
asio::awaitable<void> serve_websocket(ServerState& st, Worker& w, Stream stream, Request& req, const Route& route);

// Runs HTTP/2 on `stream`. `preread` holds bytes already read (starting with the client preface,
// unless `upgrade` is set: then `upgrade` is the HTTP/1.1 request that asked for h2c, which
// becomes stream 1, and `preread` is what followed it).
template <class Stream>
asio::awaitable<void> serve_h2(ServerState& st, Worker& w, Stream stream, std::string remote_ip, std::string preread,
                               Request* upgrade);

}  // namespace harmar::net::detail
