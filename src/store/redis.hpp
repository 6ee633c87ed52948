#pragma once
// Internal to the store: a small pipelined Redis client on Asio, used by the Redis PubSub and Kv.
//
// Threads. A Connection lives on one IoThread (a private io_context with one thread), which owns
// its socket, its queues and its timers; nothing else touches them. Callers on any executor (the
// worker io_contexts, the blocking pool) submit commands with async_command(): the command is
// encoded on the caller's thread, posted to the connection's thread, written in a batch with
// whatever else is queued (pipelining), and the reply is posted back to the caller's own
// executor, so a coroutine resumes where it started. hiredis is used only as the RESP parser
// (redisReader); resolving, connecting and all socket I/O are Asio's, so nothing ever blocks.
//
// Failures. Every command has a deadline (Url::timeout_ms). While the connection is down the
// client reconnects with exponential backoff; commands in flight when it drops, and commands
// issued while it is known to be down, fail at once with 503 `unavailable`. After each
// (re)connect the handshake runs AUTH, SELECT and CLIENT SETNAME, then `on_ready` (subscribers
// re-subscribe there).
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/result.hpp"

namespace harmar::store::redis {

namespace asio = boost::asio;

// redis://[user:password@]host[:port][/db][?name=NAME&timeout=DURATION]
//   name     prefix of CLIENT SETNAME (the role is appended: "NAME:kv"), default "harmar"
//   timeout  bound on every command, on connecting and on keepalive pings ("250ms", "2s"), default 2s
// `rediss://` (TLS) and unix sockets are not supported yet.
struct Url {
  std::string host;
  uint16_t port = 6379;
  std::string user;
  std::string password;
  int db = 0;
  std::string name = "harmar";
  int64_t timeout_ms = 2000;
};
Result<Url> parse_url(std::string_view url);

// One RESP2 reply, owned.
struct Reply {
  enum class Type { String, Array, Integer, Nil, Status, Error };
  Type type = Type::Nil;
  std::string str;  // String, Status, Error
  int64_t integer = 0;
  std::vector<Reply> elements;

  bool is_nil() const { return type == Type::Nil; }
  bool is_ok() const { return type == Type::Status && str == "OK"; }
};

// The RESP encoding of a command: an array of bulk strings (binary-safe).
std::string encode_command(const std::vector<std::string>& args);

// A private io_context run by one thread; destroying it waits for the thread.
class IoThread {
 public:
  explicit IoThread(std::string name);
  ~IoThread();
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;
  asio::io_context& context() { return ioc_; }

 private:
  asio::io_context ioc_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

namespace detail {
// A caller's completion handler, type-erased, invoked on the caller's executor.
template <class R>
class Completion {
 public:
  virtual ~Completion() = default;
  virtual void complete(R result) = 0;
};

template <class R, class Handler>
class CompletionImpl final : public Completion<R> {
 public:
  explicit CompletionImpl(Handler h)
      : handler_(std::move(h)), work_(asio::make_work_guard(asio::get_associated_executor(handler_))) {}
  void complete(R result) override {
    auto ex = work_.get_executor();
    // post() wakes the caller's context after queueing the handler, so the handler could run,
    // end its coroutine and let a short-lived io_context be destroyed while post() is still
    // signalling it. The handler first waits until post() has returned here.
    auto posting = std::make_shared<std::mutex>();
    std::lock_guard lock(*posting);
    asio::post(ex, [posting, h = std::move(handler_), r = std::move(result), w = std::move(work_)]() mutable {
      { std::lock_guard wait(*posting); }
      std::move(h)(std::move(r));
    });
  }

 private:
  Handler handler_;
  asio::executor_work_guard<asio::associated_executor_t<Handler>> work_;
};

template <class R, class Handler>
std::unique_ptr<Completion<R>> make_completion(Handler h) {
  return std::make_unique<CompletionImpl<R, std::decay_t<Handler>>>(std::move(h));
}
}  // namespace detail

struct ConnectionOptions {
  Url url;
  std::string role;  // appended to the client name: "kv", "pub", "sub"
  // Subscriber mode: replies are not matched to commands; every reply (subscribe acks, messages)
  // goes to on_push, on the connection's thread. Commands are sent with send().
  bool subscriber = false;
  std::function<void(Reply&&)> on_push;
  std::function<void()> on_ready;  // after each successful (re)connect, on the connection's thread
  std::function<void()> on_down;   // when an established connection drops, on the connection's thread
  int64_t max_backoff_ms = 5000;
  int64_t keepalive_ms = 10000;           // subscriber mode: PING period when idle
  std::size_t max_outstanding = 100000;   // queued + in flight; more fail with 503 at once
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Starts connecting in the background on `ioc` (whose one thread must run it).
  static std::shared_ptr<Connection> start(asio::io_context& ioc, ConnectionOptions opts);
  // The same in two steps, for owners that must know the connection before its callbacks run.
  static std::shared_ptr<Connection> create(asio::io_context& ioc, ConnectionOptions opts);
  void start();
  ~Connection();

  // From any thread: `wire` holds `replies` encoded commands, sent back to back. Completes with
  // the one reply, or an Array of them when replies > 1.
  template <class Token>
  auto async_batch(std::string wire, std::size_t replies, Token&& token) {
    return asio::async_initiate<Token, void(Result<Reply>)>(
        [self = shared_from_this()](auto handler, std::string wire, std::size_t replies) {
          self->submit(std::move(wire), replies, detail::make_completion<Result<Reply>>(std::move(handler)));
        },
        token, std::move(wire), replies);
  }

  // From any thread. Completes with the reply on the handler's executor; a Redis error reply
  // becomes Error{500, "redis_error", message}; a dropped connection or a timeout, 503.
  template <class Token>
  auto async_command(const std::vector<std::string>& args, Token&& token) {
    return async_batch(encode_command(args), 1, std::forward<Token>(token));
  }
  asio::awaitable<Result<Reply>> command(std::vector<std::string> args) {
    return async_command(args, asio::use_awaitable);
  }
  // Several commands written back to back (e.g. MULTI … EXEC) that no other caller's command can
  // interleave with; completes with an Array of their replies (an error reply stays an element).
  asio::awaitable<Result<Reply>> commands(std::vector<std::vector<std::string>> cmds);

  // From any thread: fails everything pending, closes the socket, stops reconnecting.
  void stop();
  // Whether the connection is established and past its handshake (from any thread, racy).
  bool connected() const { return connected_.load(std::memory_order_relaxed); }

  // Connection thread only.
  bool ready() const { return state_ == State::Ready; }
  void send(const std::vector<std::string>& args);  // subscriber mode: no reply is awaited
  asio::io_context& context() { return ioc_; }

  Connection(asio::io_context& ioc, ConnectionOptions opts);  // use start()

 private:
  enum class State { Connecting, Ready, Backoff, Stopped };
  struct Request;
  struct Io;

  void submit(std::string wire, std::size_t replies, std::unique_ptr<detail::Completion<Result<Reply>>> done);
  void enqueue(Request req);

  asio::awaitable<void> run();
  asio::awaitable<Status> connect_once();
  asio::awaitable<Result<Reply>> read_reply();
  asio::awaitable<Status> read_loop();
  void on_reply(Reply&& reply);
  void flush();
  void start_ticker();
  void on_tick();
  void reset(std::string reason);
  void drop(const std::string& reason);
  void fail_all(const Error& e);
  void stop_now();
  int64_t backoff_ms(int failures) const;
  std::string client_name() const;

  asio::io_context& ioc_;
  ConnectionOptions opts_;
  std::unique_ptr<Io> io_;
  State state_ = State::Connecting;
  std::atomic<bool> connected_{false};
  uint64_t generation_ = 0;  // one per socket: stale completions compare and bail out
  bool writing_ = false;
  bool ticking_ = false;
  std::string reset_reason_;
  std::string last_error_;
  int64_t ping_sent_ms_ = 0;
  int64_t last_ping_ms_ = 0;
};

}  // namespace harmar::store::redis
