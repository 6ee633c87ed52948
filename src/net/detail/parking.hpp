#pragma once
// Internal to src/net: idle keep-alive connections held without a session.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <cstdint>
#include <vector>

namespace harmar::net::detail {

struct ServerState;
struct Worker;

// A plain connection idle past Worker::kParkAfterMs gives up its session (coroutine frames,
// buffers) and its Asio registration: what remains is the descriptor in this epoll set of the
// worker's and 16 bytes here, about what nginx keeps for an idle keep-alive connection. The
// client's next bytes start a fresh session on the same socket; a parked connection still times
// out at its idle deadline and is closed at shutdown.
class ParkingLot {
 public:
  ParkingLot(ServerState& st, Worker& w);
  ~ParkingLot();
  ParkingLot(const ParkingLot&) = delete;
  ParkingLot& operator=(const ParkingLot&) = delete;

  // Takes the socket's descriptor until the client sends something (or hangs up) or
  // `deadline_ms` (monotonic) passes. Counts in the worker's connections meanwhile.
  void park(boost::asio::ip::tcp::socket sock, int64_t deadline_ms);
  // Closes the parked connections whose deadline has passed.
  void sweep(int64_t now_ms);
  // Closes every parked connection (shutdown).
  void close_all();
  std::size_t size() const { return slots_.size(); }

 private:
  struct Slot {
    int fd;
    int64_t deadline_ms;
  };
  void wait();
  // Hands the connections whose clients spoke back to new sessions.
  void wake();
  // Forgets slot i (swapping the last slot into its place) and returns its descriptor.
  int take(std::size_t i);

  ServerState& st_;
  Worker& w_;
  boost::asio::posix::stream_descriptor epoll_;
  std::vector<Slot> slots_;
  std::vector<int32_t> slot_of_fd_;  // descriptor -> index in slots_, -1 when not parked
};

}  // namespace harmar::net::detail
