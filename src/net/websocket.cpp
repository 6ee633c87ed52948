// Server-side WebSocket sessions on Beast. One coroutine (the route's handler) reads; a second
// one drains the send queue, so pushing an event never waits on the network. When several small
// frames wait (a burst fanned out), the socket is corked while they are written, so they leave
// in one TCP segment instead of one each: most of a fan-out's cost is the kernel's per-segment
// work on both ends (bench/ws.sh: server CPU per delivery 11.8 → 7.5 us in a burst).
#include "net/websocket.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <vector>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "net/detail/sessions.hpp"

namespace harmar::net::detail {
namespace {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
using boost::system::error_code;

template <class Stream>
class WsSession final : public WebSocket, public Connection {
 public:
  WsSession(Worker& w, Stream stream, Options opts)
      : w_(w), ws_(std::move(stream)), wake_(w.ioc), done_(w.ioc), opts_(opts) {
    wake_.expires_at(asio::steady_timer::time_point::max());
    done_.expires_at(asio::steady_timer::time_point::max());
    w_.register_connection(*this);
  }
  ~WsSession() override { w_.unregister_connection(*this); }

  asio::awaitable<bool> accept(const Request& req, int64_t timeout_ms) {
    beast::http::request<beast::http::empty_body> breq;
    breq.method_string(req.method_text());
    breq.target(req.target());
    breq.version(req.version);
    for (std::size_t i = 0; i < req.header_count(); ++i) {
      auto [k, v] = req.header_at(i);
      breq.insert(k, v);
    }
    ws_.set_option(websocket::stream_base::decorator(
        [id = std::string(req.request_id())](websocket::response_type& res) {
          res.set(beast::http::field::server, "harmar");
          res.set("X-Request-Id", id);
        }));
    websocket::stream_base::timeout t;
    t.handshake_timeout = std::chrono::milliseconds(timeout_ms);
    t.idle_timeout = std::chrono::milliseconds(opts_.idle_timeout_ms);
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.read_message_max(opts_.max_message_bytes);
    ws_.auto_fragment(false);
    error_code ec;
    co_await ws_.async_accept(breq, asio::redirect_error(asio::use_awaitable, ec));
    idle = false;
    co_return !ec;
  }

  asio::awaitable<std::optional<std::string>> receive() override {
    if (!open_) co_return std::nullopt;
    // Read in small steps: the read an idle socket keeps pending then holds kReadStep bytes, not
    // Beast's default of a whole TCP frame (1.5 KiB); client frames are small and rare.
    error_code ec;
    do {
      co_await ws_.async_read_some(rbuf_, kReadStep, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        stop();
        co_return std::nullopt;
      }
    } while (!ws_.is_message_done());
    std::string msg = beast::buffers_to_string(rbuf_.data());
    rbuf_.consume(rbuf_.size());
    if (rbuf_.capacity() > kReadStep) rbuf_.shrink_to_fit();
    co_return msg;
  }

  bool send(std::string text) override {
    if (!open_ || closing_) return false;
    if (queued_ + text.size() > opts_.max_queue_bytes) {
      // The client is not keeping up: drop what waits and end it, rather than buffer without bound.
      queue_.clear();
      head_ = 0;
      queued_ = 0;
      close(1008, "send queue overflow");
      return false;
    }
    queued_ += text.size();
    queue_.push_back(std::move(text));
    if (waiting() == 1) wake_.cancel();  // else the writer is already awake
    return true;
  }

  void close(uint16_t code, std::string reason) override {
    if (!open_ || closing_) return;
    closing_ = true;
    close_code_ = code;
    close_reason_ = std::move(reason);
    wake_.cancel();
  }

  bool is_open() const override { return open_ && !closing_; }
  std::size_t queued_bytes() const override { return queued_; }
  asio::any_io_executor executor() const override { return w_.ioc.get_executor(); }

  void cut() override {
    error_code ignored;
    beast::get_lowest_layer(ws_).close(ignored);
    stop();
  }
  void drain() override {
    draining = true;
    close(1001, "server shutting down");
  }

  // Sends queued messages in order, then the close frame if one was asked for.
  asio::awaitable<void> write_loop() {
    while (open_) {
      if (waiting() == 0 && !closing_) {
        batch_left_ = 0;  // an overflow may have dropped the rest of a batch
        cork(false);
        error_code ignored;
        co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
        wake_.expires_at(asio::steady_timer::time_point::max());
        continue;
      }
      error_code ec;
      if (waiting() > 0) {
        if (batch_left_ == 0) {
          // A batch is what waits now. Only a small one is corked: corked bytes leave in full
          // segments or at uncork, and a large batch meeting a full socket buffer would stall.
          batch_left_ = waiting() > 1 && queued_ <= kCorkBytes ? waiting() : 1;
          cork(batch_left_ > 1);
        }
        std::string msg = std::move(queue_[head_]);
        pop_front();
        queued_ -= msg.size();
        ws_.text(true);
        co_await ws_.async_write(asio::buffer(msg), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
        if (--batch_left_ == 0) cork(false);
        continue;
      }
      cork(false);
      websocket::close_reason cr(static_cast<websocket::close_code>(close_code_), close_reason_);
      co_await ws_.async_close(cr, asio::redirect_error(asio::use_awaitable, ec));
      break;
    }
    stop();
    writer_done_ = true;
    done_.cancel();
  }

  asio::awaitable<void> wait_writer() {
    while (!writer_done_) {
      error_code ignored;
      co_await done_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
  }

 private:
  void stop() {
    open_ = false;
    wake_.cancel();
  }

  std::size_t waiting() const { return queue_.size() - head_; }
  void pop_front() {
    if (++head_ == queue_.size()) {
      queue_.clear();
      head_ = 0;
      if (queue_.capacity() > 64) std::vector<std::string>().swap(queue_);
    } else if (head_ >= 64 && head_ * 2 >= queue_.size()) {
      // Never emptied (a steady stream): drop the written slots so the vector does not grow.
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  // Holds back partial segments while a batch of frames is written (TCP_CORK); uncorking sends
  // what is held at once.
  void cork(bool on) {
    if (corked_ == on) return;
    corked_ = on;
    int v = on ? 1 : 0;
    auto& sock = beast::get_lowest_layer(ws_);
    if (sock.is_open()) ::setsockopt(sock.native_handle(), IPPROTO_TCP, TCP_CORK, &v, sizeof v);
  }

  Worker& w_;
  websocket::stream<Stream> ws_;
  beast::flat_buffer rbuf_;
  // Frames [head_, end) wait to be written. A vector rather than a deque: a deque allocates half
  // a kilobyte as it is constructed, for every socket, idle or not.
  std::vector<std::string> queue_;
  std::size_t head_ = 0;
  std::size_t queued_ = 0;
  asio::steady_timer wake_;
  asio::steady_timer done_;
  Options opts_;
  bool open_ = true;
  bool closing_ = false;
  bool writer_done_ = false;
  bool corked_ = false;
  std::size_t batch_left_ = 0;  // frames of the current batch not written yet
  static constexpr std::size_t kCorkBytes = 8 * 1024;
  static constexpr std::size_t kReadStep = 256;
  uint16_t close_code_ = 1000;
  std::string close_reason_;
};

}  // namespace

template <class Stream>
asio::awaitable<void> serve_websocket(ServerState& st, Worker& w, Stream stream, Request& req, const Route& route) {
  WebSocket::Options opts = route.options.websocket;
  if (opts.idle_timeout_ms <= 0) opts.idle_timeout_ms = st.opts.idle_timeout_ms;
  WsSession<Stream> session(w, std::move(stream), opts);
  session.deadline_ms = mono_ms() + st.opts.header_timeout_ms;
  if (!co_await session.accept(req, st.opts.header_timeout_ms)) co_return;
  session.deadline_ms = 0;  // Beast's idle timeout and pings take over
  asio::co_spawn(w.ioc, session.write_loop(), asio::detached);
  try {
    co_await route.websocket(session, req);
  } catch (const std::exception& e) {
    st.log->error(log::fields({{"msg", "websocket handler failed"}, {"route", route.pattern}, {"error", e.what()}}));
  }
  session.close(1000, {});
  co_await session.wait_writer();
}

template asio::awaitable<void> serve_websocket<tcp::socket>(ServerState&, Worker&, tcp::socket, Request&, const Route&);
template asio::awaitable<void> serve_websocket<TlsStream>(ServerState&, Worker&, TlsStream, Request&, const Route&);

}  // namespace harmar::net::detail
