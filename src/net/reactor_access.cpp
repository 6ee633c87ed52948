// Reaches two members Asio keeps private: the socket's reactor state and the reactor's
// "try a speculative read" flag. The explicit instantiation below is the standard-conforming way
// to name a private member (access is not checked in explicit instantiations). Pinned to the
// Boost version whose epoll reactor we read; a new Boost must be re-checked (see
// boost/asio/detail/impl/epoll_reactor.ipp: start_op and descriptor_state::perform_io).
#include "net/detail/reactor_access.hpp"

#include <boost/asio/detail/epoll_reactor.hpp>
#include <boost/version.hpp>

static_assert(BOOST_VERSION == 108100, "re-check expect_readable_edge against this Boost's epoll_reactor");

namespace harmar::net::detail {
namespace {

namespace asio = boost::asio;

using Reactor = asio::detail::epoll_reactor;
using DescriptorState = Reactor::descriptor_state;

struct TrySpeculative {
  using type = bool (DescriptorState::*)[Reactor::max_ops];
  friend type member(TrySpeculative);
};

template <class Tag, typename Tag::type M>
struct Expose {
  friend typename Tag::type member(Tag) { return M; }
};
template struct Expose<TrySpeculative, &DescriptorState::try_speculative_>;

// basic_socket's implementation is protected: a derived class may name it.
struct SocketImpl : asio::ip::tcp::socket {
  static DescriptorState* state(asio::ip::tcp::socket& s) {
    return (s.*&SocketImpl::impl_).get_implementation().reactor_data_;
  }
};

}  // namespace

void expect_readable_edge(asio::ip::tcp::socket& sock) {
  // The socket belongs to one worker's io_context, run by one thread: the thread that also runs
  // start_op and perform_io, the flag's other writers.
  if (DescriptorState* d = SocketImpl::state(sock)) (d->*member(TrySpeculative{}))[Reactor::read_op] = false;
}

}  // namespace harmar::net::detail
