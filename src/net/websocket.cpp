// Server-side WebSocket sessions. Beast answers the upgrade; after that the session speaks RFC 6455
// on the transport itself, because a fan-out needs what Beast's stream cannot give: a frame
// encoded once and shared by every socket it goes to (WebSocket::Frame), and everything queued
// for a socket written with one sendmsg. Most of a fan-out's cost is the kernel's work per
// syscall and per segment on both ends of the loopback, so frames that pile up while other
// sockets are served leave together: plain sockets with something to send are written by one
// sweep per worker (not one wake-up each), which yields between slices so events arriving
// meanwhile join the queues of the sockets not written yet. A socket the kernel will not take
// more from is left to its own writer coroutine, which waits for room. Client frames are small
// and rare: they are parsed from a buffer that is empty (and freed) while the socket is idle.
#include "net/websocket.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <vector>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "net/detail/sessions.hpp"
#include "net/detail/transport.hpp"

namespace harmar::net {
namespace {

enum Opcode : unsigned { kContinuation = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9, kPong = 0xA };

// A server frame (never masked), final, carrying `payload` whole.
std::string encode_frame(unsigned opcode, std::string_view payload) {
  std::string f;
  std::size_t n = payload.size();
  f.reserve(n + 10);
  f += static_cast<char>(0x80 | opcode);
  if (n < 126) {
    f += static_cast<char>(n);
  } else if (n < 65536) {
    f += static_cast<char>(126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((static_cast<uint64_t>(n) >> (8 * i)) & 0xff);
  }
  f.append(payload);
  return f;
}

// RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF.
bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t i = 0, n = s.size();
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      unsigned b = p[i + k];
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

}  // namespace

WebSocket::Frame WebSocket::text_frame(std::string_view text) {
  return std::make_shared<const std::string>(encode_frame(kText, text));
}

namespace detail {
namespace {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
using boost::system::error_code;

template <class Stream>
class WsSession final : public WebSocket, public Connection {
 public:
  WsSession(Worker& w, Stream stream, Options opts)
      : w_(w), t_(make_transport(std::move(stream), w)), wake_(w.ioc), done_(w.ioc), opts_(opts) {
    wake_.expires_at(asio::steady_timer::time_point::max());
    done_.expires_at(asio::steady_timer::time_point::max());
    w_.register_connection(*this);
  }
  ~WsSession() override {
    if (listed_) w_.ws_flush[flush_slot_] = nullptr;
    w_.unregister_connection(*this);
  }

  // Answers the upgrade (Beast checks the request and writes the 101); the connection's deadline
  // bounds it.
  asio::awaitable<bool> accept(const Request& req) {
    beast::http::request<beast::http::empty_body> breq;
    breq.method_string(req.method_text());
    breq.target(req.target());
    breq.version(req.version);
    for (std::size_t i = 0; i < req.header_count(); ++i) {
      auto [k, v] = req.header_at(i);
      breq.insert(k, v);
    }
    websocket::stream<Stream&> handshake(stream());
    handshake.set_option(websocket::stream_base::decorator(
        [id = std::string(req.request_id())](websocket::response_type& res) {
          res.set(beast::http::field::server, "harmar");
          res.set("X-Request-Id", id);
        }));
    error_code ec;
    co_await handshake.async_accept(breq, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return false;
    accepted_ = true;
    idle = false;
    heard();
    co_return true;
  }

  asio::awaitable<std::optional<std::string>> receive() override {
    for (;;) {
      if (!open_ || peer_closed_ || failed_) co_return std::nullopt;
      if (auto msg = next_message()) co_return msg;
      if (!open_ || peer_closed_ || failed_) co_return std::nullopt;
      error_code ec;
      std::string_view got = co_await t_.read(ec);
      if (ec) {
        stop();
        co_return std::nullopt;
      }
      heard();
      in_.append(got.data(), got.size());  // before suspending again: plain reads land in scratch
    }
  }

  bool send(std::string text) override { return send_frame(text_frame(text)); }

  bool send_frame(Frame frame) override {
    if (!open_ || closing_) return false;
    if (queued_ + frame->size() > opts_.max_queue_bytes) {
      // The client is not keeping up: drop what waits and end it, rather than buffer without bound.
      drop_unsent();
      close(1008, "send queue overflow");
      return false;
    }
    push(std::move(frame));
    return true;
  }

  void close(uint16_t code, std::string reason) override {
    if (!open_ || closing_) return;
    closing_ = true;
    std::string payload;
    payload += static_cast<char>(code >> 8);
    payload += static_cast<char>(code & 0xff);
    payload += std::string_view(reason).substr(0, 123);
    push(std::make_shared<const std::string>(encode_frame(kClose, payload)));
  }

  bool is_open() const override { return open_ && !closing_; }
  std::size_t queued_bytes() const override { return queued_; }
  asio::any_io_executor executor() const override { return w_.ioc.get_executor(); }

  void cut() override {
    t_.cut();
    stop();
  }
  void drain() override {
    draining = true;
    close(1001, "server shutting down");
  }
  // Keep-alive: silent for half the idle timeout → ping; silent for the other half → cut. Also
  // bounds the handshake and the wait for the client's answer to a close frame.
  void expire() override {
    if (!accepted_ || closing_) {
      cut();
      return;
    }
    // Bytes the handler has not read yet (it is busy elsewhere) are the client speaking too.
    error_code ec;
    if (stream().lowest_layer().available(ec) > 0 && !ec) {
      heard();
      return;
    }
    if (pinged_) {
      cut();
      return;
    }
    pinged_ = true;
    if (queued_ + 2 <= opts_.max_queue_bytes) push(std::make_shared<const std::string>(encode_frame(kPing, {})));
    deadline_ms = w_.deadline_after(opts_.idle_timeout_ms / 2);
  }

  // Sends queued frames in order, the close frame last; then half-closes and leaves the
  // connection to the reader until the client closes too (or the deadline cuts it).
  asio::awaitable<void> write_loop() {
    while (open_) {
      if (waiting() == 0) {
        if (closing_) break;
        error_code ignored;
        writer_idle_ = true;
        co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
        writer_idle_ = false;
        continue;
      }
      error_code ec;
      co_await write_queued(ec);
      if (ec) {
        cut();
        break;
      }
    }
    if (open_) {
      error_code ignored;
      stream().lowest_layer().shutdown(tcp::socket::shutdown_send, ignored);
      deadline_ms = w_.deadline_after(kCloseTimeoutMs);
    }
    writer_done_ = true;
    done_.cancel();
  }

  asio::awaitable<void> wait_writer() {
    while (!writer_done_) {
      error_code ignored;
      co_await done_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
  }

  // After the handler: reads (and discards) until the client closes its side.
  // The sweep's turn: writes what the socket takes now; the writer takes over what is left.
  void flush_now() {
    listed_ = false;
    if (!open_ || !writer_idle_) return;
    error_code ec;
    bool all = write_now(ec);
    if (ec) {
      cut();
      return;
    }
    if (!all || closing_) wake_.cancel();
  }

  static void sweep(Worker& w) {
    for (std::size_t budget = kSweepSlice; budget > 0 && w.ws_flush_next < w.ws_flush.size(); --budget) {
      Connection* c = w.ws_flush[w.ws_flush_next++];
      if (c) static_cast<WsSession*>(c)->flush_now();
    }
    if (w.ws_flush_next < w.ws_flush.size()) {
      asio::post(w.ioc, [&w] { sweep(w); });  // events queued meanwhile go out with this sweep
      return;
    }
    w.ws_flush.clear();
    w.ws_flush_next = 0;
    w.ws_flush_posted = false;
  }

  asio::awaitable<void> linger() {
    while (open_ && !peer_closed_) {
      error_code ec;
      co_await t_.read(ec);
      if (ec) break;
    }
  }

 private:
  Stream& stream() {
    if constexpr (std::is_same_v<Stream, tcp::socket>)
      return t_.sock;
    else
      return t_.stream;
  }

  void stop() {
    open_ = false;
    wake_.cancel();
  }

  // The client spoke: it is alive.
  void heard() {
    pinged_ = false;
    if (!closing_) deadline_ms = w_.deadline_after(opts_.idle_timeout_ms / 2);
  }

  void push(Frame frame) {
    queued_ += frame->size();
    queue_.push_back(std::move(frame));
    if (waiting() > 1) return;  // the writer or the sweep knows already
    if constexpr (std::is_same_v<Stream, tcp::socket>) {
      if (writer_idle_ && !closing_) {
        if (!listed_) {
          listed_ = true;
          flush_slot_ = w_.ws_flush.size();
          w_.ws_flush.push_back(this);
          if (!w_.ws_flush_posted) {
            w_.ws_flush_posted = true;
            asio::post(w_.ioc, [&w = w_] { sweep(w); });
          }
        }
        return;
      }
    }
    wake_.cancel();
  }

  // Drops queued frames that have not started to leave (a frame half written must be finished,
  // or the stream is corrupt).
  void drop_unsent() {
    std::size_t keep_until = head_ + started_;
    for (std::size_t i = keep_until; i < queue_.size(); ++i) queued_ -= queue_[i]->size();
    queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(keep_until), queue_.end());
  }

  // The next complete message from what has been read, answering control frames on the way.
  std::optional<std::string> next_message() {
    for (;;) {
      std::size_t avail = in_.size() - pos_;
      if (avail < 2) break;
      const auto* p = reinterpret_cast<const unsigned char*>(in_.data() + pos_);
      bool fin = p[0] & 0x80;
      unsigned opcode = p[0] & 0x0F;
      bool masked = p[1] & 0x80;
      uint64_t len = p[1] & 0x7F;
      std::size_t header = 2;
      if (len == 126) {
        if (avail < 4) break;
        len = (uint64_t(p[2]) << 8) | p[3];
        header = 4;
      } else if (len == 127) {
        if (avail < 10) break;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
        header = 10;
      }
      // No extension is negotiated, so the reserved bits stay clear; clients must mask.
      if ((p[0] & 0x70) || !masked) return fail(1002, "protocol error");
      bool control = opcode & 0x8;
      if (control) {
        if (!fin || len > 125 || (opcode != kClose && opcode != kPing && opcode != kPong))
          return fail(1002, "protocol error");
      } else {
        if (opcode > kBinary || (opcode == kContinuation) != in_message_) return fail(1002, "protocol error");
        if (len > opts_.max_message_bytes || msg_.size() + len > opts_.max_message_bytes)
          return fail(1009, "message too big");
      }
      if (avail < header + 4 + len) break;
      const unsigned char* mask = p + header;
      char* payload = in_.data() + pos_ + header + 4;
      for (std::size_t i = 0; i < len; ++i) payload[i] = static_cast<char>(payload[i] ^ mask[i & 3]);
      std::string_view data(payload, len);
      pos_ += header + 4 + len;
      if (control) {
        on_control(opcode, data);
        if (peer_closed_) break;
        continue;
      }
      if (closing_) continue;  // after our close frame, nothing more is taken
      if (opcode != kContinuation) {
        in_message_ = true;
        text_ = opcode == kText;
      }
      msg_.append(data);
      if (!fin) continue;
      in_message_ = false;
      std::string out;
      out.swap(msg_);
      compact();
      if (text_ && !valid_utf8(out)) return fail(1007, "invalid utf-8");
      return out;
    }
    compact();
    return std::nullopt;
  }

  void on_control(unsigned opcode, std::string_view data) {
    if (opcode == kPing) {
      if (!closing_ && queued_ + data.size() + 2 <= opts_.max_queue_bytes)
        push(std::make_shared<const std::string>(encode_frame(kPong, data)));
    } else if (opcode == kClose) {
      peer_closed_ = true;
      uint16_t code = data.size() >= 2 ? static_cast<uint16_t>((uint8_t(data[0]) << 8) | uint8_t(data[1])) : 1000;
      close(code, {});
    }
  }

  std::optional<std::string> fail(uint16_t code, const char* reason) {
    failed_ = true;
    in_.clear();
    pos_ = 0;
    close(code, reason);
    return std::nullopt;
  }

  // Drops what was parsed; an idle socket holds no input buffer.
  void compact() {
    if (pos_ == in_.size()) {
      std::string().swap(in_);
      pos_ = 0;
    } else if (pos_ > 0) {
      in_.erase(0, pos_);
      pos_ = 0;
    }
  }

  // Plain TCP: writes queued frames, up to kMaxIov per sendmsg, until the queue is empty (true) or
  // the socket takes no more now (false).
  bool write_now(error_code& ec) {
    while (waiting() > 0) {
      iovec iov[kMaxIov];
      int n = 0;
      std::size_t want = 0;
      for (std::size_t i = head_; i < queue_.size() && n < kMaxIov; ++i, ++n) {
        const std::string& f = *queue_[i];
        std::size_t off = i == head_ ? head_off_ : 0;
        iov[n].iov_base = const_cast<char*>(f.data() + off);
        iov[n].iov_len = f.size() - off;
        want += iov[n].iov_len;
      }
      msghdr mh{};
      mh.msg_iov = iov;
      mh.msg_iovlen = static_cast<std::size_t>(n);
      ssize_t sent = ::sendmsg(stream().native_handle(), &mh, MSG_NOSIGNAL);
      if (sent < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) ec = error_code(errno, boost::system::system_category());
        return false;
      }
      consume(static_cast<std::size_t>(sent));
      if (static_cast<std::size_t>(sent) < want) return false;  // full: asking again would say EAGAIN
    }
    return true;
  }

  // Writes what the socket takes of the queue; waits for room if it takes nothing.
  asio::awaitable<void> write_queued(error_code& ec) {
    if constexpr (std::is_same_v<Stream, tcp::socket>) {
      if (write_now(ec) || ec) co_return;
      co_await t_.sock.async_wait(tcp::socket::wait_write, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      // One TLS record for what fits, instead of one per frame.
      std::string buf;
      std::size_t k = 0;
      for (std::size_t i = head_; i < queue_.size() && (k == 0 || buf.size() + queue_[i]->size() <= kTlsRecord);
           ++i, ++k)
        buf += *queue_[i];
      started_ = k;
      co_await asio::async_write(t_.stream, asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
      started_ = 0;
      if (ec) co_return;
      for (std::size_t i = 0; i < k; ++i) {
        queued_ -= queue_[head_]->size();
        pop_front();
      }
    }
  }

  // `n` more bytes of the queue are on the wire.
  void consume(std::size_t n) {
    while (n > 0) {
      std::size_t size = queue_[head_]->size();
      std::size_t left = size - head_off_;
      if (n < left) {
        head_off_ += n;
        break;
      }
      n -= left;
      head_off_ = 0;
      queued_ -= size;
      pop_front();
    }
    started_ = head_off_ > 0 ? 1 : 0;
  }

  std::size_t waiting() const { return queue_.size() - head_; }
  void pop_front() {
    queue_[head_].reset();
    if (++head_ == queue_.size()) {
      queue_.clear();
      head_ = 0;
      if (queue_.capacity() > 64) std::vector<Frame>().swap(queue_);
    } else if (head_ >= 64 && head_ * 2 >= queue_.size()) {
      // Never emptied (a steady stream): drop the written slots so the vector does not grow.
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  static constexpr int kMaxIov = 64;
  static constexpr std::size_t kSweepSlice = 256;  // sockets written before the sweep yields
  static constexpr std::size_t kTlsRecord = 16 * 1024;
  static constexpr int64_t kCloseTimeoutMs = 5000;

  Worker& w_;
  typename TransportFor<Stream>::type t_;
  // Frames [head_, end) wait to be written; the first head_off_ bytes of queue_[head_] are
  // written already. A vector rather than a deque: a deque allocates half a kilobyte as it is
  // constructed, for every socket, idle or not.
  std::vector<Frame> queue_;
  std::size_t head_ = 0;
  std::size_t head_off_ = 0;
  std::size_t started_ = 0;  // frames at the head partly on the wire: never dropped
  std::size_t queued_ = 0;
  std::string in_;   // read, not parsed yet
  std::size_t pos_ = 0;
  std::string msg_;  // the fragments of a message so far
  asio::steady_timer wake_;
  asio::steady_timer done_;
  Options opts_;
  bool accepted_ = false;
  bool open_ = true;
  bool closing_ = false;      // our close frame is queued: nothing more is sent
  bool peer_closed_ = false;  // the client's close frame arrived
  bool failed_ = false;       // the client broke the protocol
  bool in_message_ = false;
  bool text_ = true;
  bool pinged_ = false;
  bool writer_done_ = false;
  bool writer_idle_ = false;  // the writer waits for wake_: the sweep may write for it
  bool listed_ = false;       // in w_.ws_flush, at flush_slot_
  std::size_t flush_slot_ = 0;
};

}  // namespace

template <class Stream>
asio::awaitable<void> serve_websocket(ServerState& st, Worker& w, Stream stream, Request& req, const Route& route) {
  WebSocket::Options opts = route.options.websocket;
  if (opts.idle_timeout_ms <= 0) opts.idle_timeout_ms = st.opts.idle_timeout_ms;
  WsSession<Stream> session(w, std::move(stream), opts);
  session.deadline_ms = mono_ms() + st.opts.header_timeout_ms;
  if (!co_await session.accept(req)) co_return;
  asio::co_spawn(w.ioc, session.write_loop(), asio::detached);
  try {
    co_await route.websocket(session, req);
  } catch (const std::exception& e) {
    st.log->error(log::fields({{"msg", "websocket handler failed"}, {"route", route.pattern}, {"error", e.what()}}));
  }
  session.close(1000, {});
  co_await session.wait_writer();
  co_await session.linger();
}

template asio::awaitable<void> serve_websocket<tcp::socket>(ServerState&, Worker&, tcp::socket, Request&, const Route&);
template asio::awaitable<void> serve_websocket<TlsStream>(ServerState&, Worker&, TlsStream, Request&, const Route&);

}  // namespace detail
}  // namespace harmar::net
