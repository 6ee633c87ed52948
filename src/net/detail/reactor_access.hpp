#pragma once
// Internal to src/net: one hint to Asio's epoll reactor that it cannot express itself.
#include <boost/asio/ip/tcp.hpp>

namespace harmar::net::detail {

// Tells the reactor that `sock` has nothing to read until epoll reports it readable again (our
// last recv came back short, so the kernel queue was empty). Asio otherwise starts every read
// with a speculative recv, which for a keep-alive connection waiting on its client's next request
// only ever says EAGAIN: one wasted system call per request. The descriptor stays registered
// edge-triggered, and any byte arriving after that recv raises a new edge, so no data is missed.
void expect_readable_edge(boost::asio::ip::tcp::socket& sock);

}  // namespace harmar::net::detail
