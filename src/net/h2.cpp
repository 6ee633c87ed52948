// HTTP/2 sessions (nghttp2). Placeholder until the HTTP/2 work lands: the connection is closed.
#include <boost/beast/core/stream_traits.hpp>

#include "net/detail/sessions.hpp"

namespace harmar::net::detail {

template <class Stream>
asio::awaitable<void> serve_h2(ServerState& st, Worker& w, Stream stream, std::string remote_ip, std::string preread,
                               Request* upgrade) {
  boost::system::error_code ignored;
  boost::beast::get_lowest_layer(stream).close(ignored);
  co_return;
}

template asio::awaitable<void> serve_h2<tcp::socket>(ServerState&, Worker&, tcp::socket, std::string, std::string, Request*);
template asio::awaitable<void> serve_h2<TlsStream>(ServerState&, Worker&, TlsStream, std::string, std::string, Request*);

}  // namespace harmar::net::detail
