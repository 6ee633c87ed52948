#include "net/detail/parking.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <array>
#include <system_error>

#include "net/detail/sessions.hpp"

namespace harmar::net::detail {

using boost::system::error_code;

namespace {

int make_epoll() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  return fd;
}

}  // namespace

ParkingLot::ParkingLot(ServerState& st, Worker& w) : st_(st), w_(w), epoll_(w.ioc, make_epoll()) { wait(); }

ParkingLot::~ParkingLot() { close_all(); }

void ParkingLot::park(tcp::socket sock, int64_t deadline_ms) {
  if (w_.draining) return;  // parked after the shutdown began: close instead
  error_code ec;
  int fd = sock.release(ec);  // leaves Asio's epoll set; the descriptor stays open
  if (ec) return;             // `sock` closes it
  epoll_event ev{};
  ev.events = EPOLLIN;  // a hang-up reads as readable too: the new session sees the end
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.native_handle(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    ::close(fd);
    return;
  }
  if (static_cast<std::size_t>(fd) >= slot_of_fd_.size()) slot_of_fd_.resize(static_cast<std::size_t>(fd) + 1, -1);
  slot_of_fd_[fd] = static_cast<int32_t>(slots_.size());
  slots_.push_back({fd, deadline_ms});
  ++w_.connection_count;
}

int ParkingLot::take(std::size_t i) {
  int fd = slots_[i].fd;
  slot_of_fd_[fd] = -1;
  if (i + 1 != slots_.size()) {
    slots_[i] = slots_.back();
    slot_of_fd_[slots_[i].fd] = static_cast<int32_t>(i);
  }
  slots_.pop_back();
  --w_.connection_count;
  return fd;
}

void ParkingLot::sweep(int64_t now_ms) {
  for (std::size_t i = 0; i < slots_.size();) {
    if (now_ms >= slots_[i].deadline_ms) {
      ::close(take(i));  // also leaves the epoll set
    } else {
      ++i;
    }
  }
  // A burst of connections that came and went leaves capacity behind: give it back.
  if (slots_.capacity() > 1024 && slots_.size() < slots_.capacity() / 4) slots_.shrink_to_fit();
}

void ParkingLot::close_all() {
  while (!slots_.empty()) ::close(take(slots_.size() - 1));
}

void ParkingLot::wait() {
  epoll_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const error_code& ec) {
    if (ec) return;
    wake();
    wait();
  });
}

void ParkingLot::wake() {
  std::array<epoll_event, 64> events;
  for (;;) {
    int n = ::epoll_wait(epoll_.native_handle(), events.data(), static_cast<int>(events.size()), 0);
    for (int k = 0; k < n; ++k) {
      int fd = events[k].data.fd;
      if (fd < 0 || static_cast<std::size_t>(fd) >= slot_of_fd_.size() || slot_of_fd_[fd] < 0) continue;
      take(static_cast<std::size_t>(slot_of_fd_[fd]));
      ::epoll_ctl(epoll_.native_handle(), EPOLL_CTL_DEL, fd, nullptr);
      error_code ec;
      tcp::socket sock(w_.ioc);
      sock.assign(w_.protocol, fd, ec);
      if (ec) {
        ::close(fd);
        continue;
      }
      std::string ip = remote_ip(sock);
      asio::co_spawn(w_.ioc, serve_http1(st_, w_, std::move(sock), std::move(ip)), asio::detached);
    }
    if (n < static_cast<int>(events.size())) return;
  }
}

}  // namespace harmar::net::detail
