#pragma once
// A server-side WebSocket as a handler sees it (routes registered with Router::websocket).
// Reading is a coroutine; sending only queues, so events can be pushed from anywhere on the
// socket's own executor without waiting on a slow client. A client that lets more than
// max_queue_bytes pile up is disconnected (close code 1008, "send queue overflow") and never
// slows anyone else down.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace harmar::net {

class WebSocket {
 public:
  struct Options {
    std::size_t max_message_bytes = 64 * 1024;
    std::size_t max_queue_bytes = 1 << 20;
    int64_t idle_timeout_ms = 60'000;  // pings are sent at half of this; no answer → closed
  };
  // A message already encoded as a WebSocket frame: one event fanned out to many sockets is
  // encoded once and the same bytes are queued on each of them.
  using Frame = std::shared_ptr<const std::string>;
  static Frame text_frame(std::string_view text);

  virtual ~WebSocket() = default;
  // The next text or binary message; nullopt once the connection is closed.
  virtual boost::asio::awaitable<std::optional<std::string>> receive() = 0;
  // Queues a text message. False if the socket is closed or the queue overflowed (the socket is
  // then being closed). Must be called on executor().
  virtual bool send(std::string text) = 0;
  // As send(), for a frame made by text_frame().
  virtual bool send_frame(Frame frame) = 0;
  // Sends a close frame after what is queued, then ends the connection.
  virtual void close(uint16_t code = 1000, std::string reason = {}) = 0;
  virtual bool is_open() const = 0;
  virtual std::size_t queued_bytes() const = 0;
  virtual boost::asio::any_io_executor executor() const = 0;
};

}  // namespace harmar::net
