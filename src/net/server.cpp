#include "net/server.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <malloc.h>
#include <sys/eventfd.h>

#include <charconv>

#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "net/detail/sessions.hpp"
#include "net/tls.hpp"

namespace harmar::net {

ServerOptions ServerOptions::from(const config::Config& c) {
  ServerOptions o;
  o.listen = c.get_string("listen");
  o.workers = static_cast<int>(c.get_int("workers"));
  o.tls_cert = c.get_string("tls.cert");
  o.tls_key = c.get_string("tls.key");
  o.header_limit = static_cast<std::size_t>(c.get_size("limits.header_bytes"));
  o.body_limit = c.get_size("limits.body_bytes");
  o.header_timeout_ms = c.get_duration_ms("limits.header_timeout");
  o.body_timeout_ms = c.get_duration_ms("limits.body_timeout");
  o.idle_timeout_ms = c.get_duration_ms("limits.idle_timeout");
  o.write_timeout_ms = c.get_duration_ms("limits.write_timeout");
  o.connection_rps = c.get_int("limits.connection_rps");
  o.max_connections = c.get_int("limits.max_connections");
  o.h2_max_streams = static_cast<int>(c.get_int("limits.h2_streams"));
  o.shutdown_timeout_ms = c.get_duration_ms("shutdown_timeout");
  o.cors_origins = c.get_list("cors.origins");
  o.access_log = c.get_bool("log.access");
  return o;
}

namespace {

using namespace detail;
using boost::system::error_code;
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

Result<tcp::endpoint> parse_listen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) return Error::validation("listen must be HOST:PORT, got '" + listen + "'");
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "*") host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";
  unsigned port = 0;
  auto ps = listen.substr(colon + 1);
  auto [p, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
  if (ec != std::errc() || p != ps.data() + ps.size() || port > 65535)
    return Error::validation("listen port must be 0..65535, got '" + ps + "'");
  error_code aec;
  auto addr = asio::ip::make_address(host, aec);
  if (aec) return Error::validation("listen host must be an IP address, got '" + host + "'");
  return tcp::endpoint(addr, static_cast<unsigned short>(port));
}

void refresh_date(Worker& w) {
  int64_t s = now_ms() / 1000;
  if (s == w.date_second) return;
  w.date_second = s;
  w.date_line = "Date: " + format_http_date(s) + "\r\n";
}

// Asio allocates a small state for each descriptor it watches, and when the descriptor closes
// (or is parked) keeps the state on a free list for the next one: it never goes back to malloc.
// Allocated one at a time as connections arrive, these states land between the sessions' much
// larger allocations, and once the sessions are gone (parked, say) each of them pins a page the
// allocator could otherwise give back. Made 64 at a time, before the accepts that will take
// them, they sit together on a few pages instead. The block is made by watching and closing 64
// eventfds: only when the worker watches more descriptors than ever before.
void reserve_descriptor_states(Worker& w) {
  constexpr std::size_t kBlock = 64;
  std::size_t watched = w.connection_count - (w.lot ? w.lot->size() : 0) + 2;  // + the listener and the lot
  if (watched < w.descriptors_reserved) return;
  std::array<std::optional<asio::posix::stream_descriptor>, kBlock> block;
  for (auto& d : block) {
    int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) break;  // out of descriptors: the accept will say so
    d.emplace(w.ioc, fd);
  }
  w.descriptors_reserved += kBlock;
}

// Runs one TLS connection: handshake, then HTTP/1.1 or h2 as ALPN chose. (Plain connections go
// straight to serve_http1: no frame of this size is held for the life of every connection.)
asio::awaitable<void> serve_tls_connection(ServerState& st, Worker& w, tcp::socket sock, std::string ip) {
  error_code ec;
  sock.set_option(tcp::no_delay(true), ec);
  TlsStream stream(std::move(sock), *st.tls);
  // The handshake is bounded like a request header: a client that stalls it is cut off.
  struct Handshake final : Connection {
    Handshake(Worker& w, TlsStream& s) : w(w), s(s) { w.register_connection(*this); }
    ~Handshake() override { w.unregister_connection(*this); }
    void cut() override {
      error_code ignored;
      s.lowest_layer().close(ignored);
    }
    Worker& w;
    TlsStream& s;
  };
  {
    Handshake hs(w, stream);
    hs.idle = false;
    hs.deadline_ms = mono_ms() + st.opts.header_timeout_ms;
    co_await stream.async_handshake(asio::ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) co_return;
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(stream.native_handle(), &alpn, &alpn_len);
  if (alpn_len == 2 && alpn[0] == 'h' && alpn[1] == '2') {
    co_await serve_h2(st, w, std::move(stream), std::move(ip), std::string(), nullptr);
  } else {
    co_await serve_http1(st, w, std::move(stream), std::move(ip));
  }
}

}  // namespace

namespace detail {

std::string remote_ip(const tcp::socket& sock) {
  error_code ec;
  auto remote = sock.remote_endpoint(ec);
  return ec ? std::string("unknown") : remote.address().to_string();
}

}  // namespace detail

struct Server::Impl {
  ServerState state;
  std::vector<std::unique_ptr<Worker>> workers;
  uint16_t port = 0;
  std::atomic<bool> stopping{false};
  metrics::Counter* accepted = nullptr;

  Impl(ServerOptions o, const Router& r, AuthHook a) : state{std::move(o), r, std::move(a), log::get("http"), log::get("access"), nullptr} {}

  asio::awaitable<void> accept_loop(Worker& w) {
    asio::steady_timer backoff(w.ioc);
    for (;;) {
      if (w.connection_count >= static_cast<std::size_t>(state.opts.max_connections)) {
        // Full: leave new connections in the kernel's backlog until some close.
        backoff.expires_after(std::chrono::milliseconds(10));
        error_code ignored;
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
        if (w.draining) co_return;
        continue;
      }
      reserve_descriptor_states(w);
      error_code ec;
      tcp::socket sock = co_await w.acceptor->async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (w.draining || ec == asio::error::operation_aborted || !w.acceptor->is_open()) co_return;
        state.log->warn(log::fields({{"msg", "accept failed"}, {"error", ec.message()}}));
        // Out of descriptors or similar: pause instead of spinning on the error.
        backoff.expires_after(std::chrono::milliseconds(50));
        error_code ignored;
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
        continue;
      }
      accepted->inc();
      std::string ip = remote_ip(sock);
      auto session = state.tls ? serve_tls_connection(state, w, std::move(sock), std::move(ip))
                               : serve_http1(state, w, std::move(sock), std::move(ip));
      asio::co_spawn(w.ioc, std::move(session), [this](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          state.log->error(log::fields({{"msg", "connection failed"}, {"error", ex.what()}}));
        }
      });
    }
  }

  // Every tick: refresh the Date header, cut connections past their deadline, and during
  // shutdown stop the worker once it has no connections left (or the grace period is over).
  void on_tick(Worker& w) {
    refresh_date(w);
    int64_t now = mono_ms();
    w.now_ms = now;
    if (w.lot) w.lot->sweep(now);
    std::size_t parked = 0;
    for (auto it = w.connections.begin(); it != w.connections.end();) {
      Connection& c = *it++;  // cut() and park() may unlink c
      if (c.deadline_ms && now >= c.deadline_ms) {
        c.expire();
      } else if (c.idle && c.idle_since_ms && now - c.idle_since_ms >= Worker::kParkAfterMs && !w.draining) {
        parked += c.park();
      }
    }
    // Parked sessions gave their memory back to the allocator; let it return the freed pages to
    // the system too: once a burst of parking is over, and every 1024 parks during a long one.
    // (Counting per tick missed bursts spread over several ticks, as on a loaded machine.)
    w.parked_since_trim += parked;
    if (w.parked_since_trim >= 1024 || (w.parked_since_trim >= 64 && parked == 0)) {
      malloc_trim(0);
      w.parked_since_trim = 0;
    }
    if (w.draining) {
      bool grace_over = w.force_close_at_ms && now >= w.force_close_at_ms;
      if (grace_over) {
        // Handlers still running are abandoned; their frames go with the io_context.
        for (auto it = w.connections.begin(); it != w.connections.end();) (it++)->cut();
      }
      if (w.connection_count == 0 || grace_over) {
        w.ioc.stop();
        return;
      }
    }
    w.tick.expires_after(std::chrono::milliseconds(Worker::kTickMs));
    w.tick.async_wait([this, &w](error_code ec) {
      if (!ec || ec == asio::error::operation_aborted) on_tick(w);
    });
  }

  void begin_drain(Worker& w) {
    w.draining = true;
    w.force_close_at_ms = mono_ms() + state.opts.shutdown_timeout_ms;
    error_code ignored;
    if (w.acceptor) w.acceptor->close(ignored);
    if (w.lot) w.lot->close_all();
    for (auto it = w.connections.begin(); it != w.connections.end();) (it++)->drain();
    w.tick.cancel();  // re-check at once
  }
};

Server::Server(ServerOptions opts, const Router& router, AuthHook auth)
    : impl_(std::make_unique<Impl>(std::move(opts), router, std::move(auth))) {}

Server::~Server() {
  shutdown();
  wait();
}

Status Server::start() {
  auto& st = impl_->state;
  HARMAR_TRY(tcp::endpoint ep, parse_listen(st.opts.listen));
  if (!st.opts.tls_cert.empty() || !st.opts.tls_key.empty()) {
    if (st.opts.tls_cert.empty() || st.opts.tls_key.empty())
      return Error::validation("TLS needs both tls.cert and tls.key");
    HARMAR_TRY(st.tls, make_server_tls(st.opts.tls_cert, st.opts.tls_key));
  }
  int n = st.opts.workers > 0 ? st.opts.workers : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  impl_->accepted = &metrics::registry().counter("harmar_http_connections_accepted_total", "TCP connections accepted.");
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>(i);
    error_code ec;
    tcp::acceptor acc(w->ioc);
    acc.open(ep.protocol(), ec);
    if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acc.set_option(reuse_port(true), ec);
    if (!ec) acc.bind(ep, ec);
    if (!ec) acc.listen(4096, ec);
    if (ec) return Error::unavailable("cannot listen on " + st.opts.listen + ": " + ec.message(), 0);
    // With port 0 the first listener picks a port; the others join it (SO_REUSEPORT).
    if (ep.port() == 0) ep.port(acc.local_endpoint().port());
    w->acceptor.emplace(std::move(acc));
    w->protocol = ep.protocol();
    if (!st.tls) w->lot = std::make_unique<ParkingLot>(st, *w);  // only plain connections park
    refresh_date(*w);
    w->now_ms = mono_ms();
    impl_->workers.push_back(std::move(w));
  }
  impl_->port = ep.port();
  auto* impl = impl_.get();
  metrics::registry().gauge_fn("harmar_http_open_connections", "Open client connections (all workers).", [impl] {
    double n = 0;
    for (auto& w : impl->workers) n += static_cast<double>(w->connection_count);  // racy read: a gauge
    return n;
  });
  for (auto& wp : impl_->workers) {
    Worker& w = *wp;
    asio::co_spawn(w.ioc, impl->accept_loop(w), asio::detached);
    impl->on_tick(w);
    w.thread = std::thread([&w, impl] {
      try {
        w.ioc.run();
      } catch (const std::exception& e) {
        impl->state.log->critical(log::fields({{"msg", "worker stopped by an exception"}, {"error", e.what()}}));
        std::abort();
      }
    });
  }
  st.log->info(log::fields({{"msg", "listening"},
                            {"address", ep.address().to_string() + ":" + std::to_string(ep.port())},
                            {"workers", std::to_string(n)},
                            {"tls", st.tls ? "on" : "off"}}));
  return {};
}

uint16_t Server::port() const { return impl_->port; }

void Server::shutdown() {
  if (impl_->stopping.exchange(true)) return;
  for (auto& wp : impl_->workers) {
    Worker& w = *wp;
    asio::post(w.ioc, [impl = impl_.get(), &w] { impl->begin_drain(w); });
  }
}

void Server::wait() {
  for (auto& w : impl_->workers)
    if (w->thread.joinable()) w->thread.join();
}

std::vector<asio::io_context*> Server::worker_contexts() const {
  std::vector<asio::io_context*> out;
  for (auto& w : impl_->workers) out.push_back(&w->ioc);
  return out;
}

}  // namespace harmar::net
