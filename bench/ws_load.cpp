// ws_load: the WebSocket load client of bench/ws.sh. One process holds many connections on a few
// event loops, speaking either harmar's /v1/ws protocol or Socket.IO's (Engine.IO v4, WebSocket
// transport), so both servers face the same client.
//
//   ws_load hold   --port P --token T --channel C --count N [--sources 127.0.0.2-127.0.0.9]
//                  [--ready FILE] [--stop-after-failures K]
//                                                 open N sockets, subscribe, idle until SIGTERM
//   ws_load fanout --proto harmar|socketio --port P --count N [--token T --channel C]
//                  --send-path PATH [--send-token T] [--latency-msgs 20] [--burst 50] [--senders 8]
//                                                 N subscribers; messages POSTed to PATH on the
//                  [--server-pid PID]             same server; prints latency, throughput and
//                                                 the server's CPU time per delivery in the burst
//
// Every message body is "t=<unix ns when sent>;i=<index>": a receiver finds `"body":"t=` in the
// frame (harmar: data.message.body; Socket.IO: the event's body) and records now - t.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

namespace {

struct Options {
  std::string mode;
  std::string proto = "harmar";
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string token;
  std::string channel = "user";
  int count = 1000;
  std::vector<asio::ip::address_v4> sources;
  int concurrency = 256;
  int threads = 1;
  std::string ready;
  std::string send_path;
  std::string send_token;
  int latency_msgs = 20;
  int burst = 50;
  int senders = 8;
  int timeout_s = 120;
  int open_timeout_s = 10;
  int server_pid = 0;  // fanout: the server's CPU time during the burst is read from /proc
  int stop_after_failures = 0;  // 0: try every connection
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void die(const std::string& what) {
  std::cerr << "ws_load: " << what << "\n";
  std::exit(2);
}

std::vector<asio::ip::address_v4> parse_sources(const std::string& spec) {
  // "127.0.0.2-127.0.0.9" or one address
  std::vector<asio::ip::address_v4> out;
  auto dash = spec.find('-');
  auto first = asio::ip::make_address_v4(spec.substr(0, dash));
  auto last = dash == std::string::npos ? first : asio::ip::make_address_v4(spec.substr(dash + 1));
  for (uint32_t a = first.to_uint(); a <= last.to_uint(); ++a) out.push_back(asio::ip::address_v4(a));
  return out;
}

Options parse(int argc, char** argv) {
  if (argc < 2) die("usage: ws_load hold|fanout [options]");
  Options o;
  o.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) die("missing value for " + k);
    std::string v = argv[++i];
    if (k == "--proto") o.proto = v;
    else if (k == "--host") o.host = v;
    else if (k == "--port") o.port = static_cast<uint16_t>(std::stoi(v));
    else if (k == "--token") o.token = v;
    else if (k == "--channel") o.channel = v;
    else if (k == "--count") o.count = std::stoi(v);
    else if (k == "--sources") o.sources = parse_sources(v);
    else if (k == "--concurrency") o.concurrency = std::stoi(v);
    else if (k == "--threads") o.threads = std::stoi(v);
    else if (k == "--ready") o.ready = v;
    else if (k == "--send-path") o.send_path = v;
    else if (k == "--send-token") o.send_token = v;
    else if (k == "--latency-msgs") o.latency_msgs = std::stoi(v);
    else if (k == "--burst") o.burst = std::stoi(v);
    else if (k == "--senders") o.senders = std::max(1, std::stoi(v));
    else if (k == "--timeout") o.timeout_s = std::stoi(v);
    else if (k == "--open-timeout") o.open_timeout_s = std::stoi(v);
    else if (k == "--server-pid") o.server_pid = std::stoi(v);
    else if (k == "--stop-after-failures") o.stop_after_failures = std::stoi(v);
    else die("unknown option " + k);
  }
  if (o.port == 0) die("--port is required");
  return o;
}

// What every receiving connection reports into (one instance per event loop, merged at the end).
struct Tally {
  std::vector<int64_t> latency_ns;  // per delivery of a measured message, in arrival order
  std::unique_ptr<std::atomic<int64_t>[]> per_message;  // deliveries of message i (read by the sender)
  int messages = 0;
  int64_t last_delivery_ns = 0;
};

// One client socket. The upgrade and the frames are spoken directly on the TCP socket (no
// WebSocket library): the client shares the machine with the server it measures, so each frame
// costs it a parse in place, and whatever one read brings (often several frames) is handled at
// once. Reads land in the loop's scratch buffer; only a frame cut by a read is kept per socket.
class Conn {
 public:
  Conn(asio::io_context& ioc, const Options& o, Tally& t, std::vector<char>& scratch)
      : sock_(ioc), guard_(ioc), o_(o), t_(t), scratch_(scratch) {}

  // Connects, upgrades and subscribes (Socket.IO: joins the default namespace) within
  // --open-timeout seconds: a server out of descriptors leaves connections in its backlog forever.
  awaitable<bool> open(tcp::endpoint to, const asio::ip::address_v4* source) {
    guard_.expires_after(std::chrono::seconds(o_.open_timeout_s));
    guard_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;  // cancelled: opened in time (or the Conn is gone)
      boost::system::error_code ignored;
      sock_.close(ignored);
    });
    bool ok = co_await open_unguarded(to, source);
    guard_.cancel();
    co_return ok;
  }

  awaitable<bool> open_unguarded(tcp::endpoint to, const asio::ip::address_v4* source) {
    boost::system::error_code ec;
    sock_.open(tcp::v4(), ec);
    if (ec) co_return false;
    if (source) {
      // Defer the port choice to connect(): each (source, destination) pair has its own port range.
      int one = 1;
      ::setsockopt(sock_.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      sock_.bind(tcp::endpoint(*source, 0), ec);
      if (ec) co_return false;
    }
    co_await sock_.async_connect(to, asio::redirect_error(use_awaitable, ec));
    if (ec) co_return false;
    sock_.set_option(tcp::no_delay(true), ec);
    std::string target = o_.proto == "socketio" ? "/socket.io/?EIO=4&transport=websocket" : "/v1/ws";
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: " + o_.host +
                      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    if (!o_.token.empty() && o_.proto == "harmar") req += "Authorization: Bearer " + o_.token + "\r\n";
    req += "\r\n";
    co_await asio::async_write(sock_, asio::buffer(req), asio::redirect_error(use_awaitable, ec));
    if (ec) co_return false;
    sock_.non_blocking(true, ec);
    std::size_t head_end;
    for (;;) {
      if (!co_await read_more()) co_return false;
      head_end = in_.find("\r\n\r\n");
      if (head_end != std::string::npos) break;
      if (in_.size() > 16384) co_return false;
    }
    if (in_.compare(0, 12, "HTTP/1.1 101") != 0) co_return false;
    in_.erase(0, head_end + 4);
    std::string f;
    if (o_.proto == "socketio") {
      // Engine.IO open packet "0{...}", then join the default namespace: "40" -> "40{sid}".
      if (!co_await next_message(f) || f.empty() || f[0] != '0') co_return false;
      co_await write("40");
      for (;;) {
        if (!co_await next_message(f)) co_return false;
        if (f.rfind("40", 0) == 0) co_return true;
      }
    }
    co_await write("{\"op\":\"subscribe\",\"channel\":\"" + o_.channel + "\"}");
    for (;;) {
      if (!co_await next_message(f)) co_return false;
      if (f.find("\"subscribed\"") != std::string::npos) co_return true;
      if (f.find("\"error\"") != std::string::npos) {
        std::cerr << "ws_load: subscribe refused: " << f << "\n";
        co_return false;
      }
    }
  }

  // Reads until the connection ends, answering pings and timing measured messages.
  awaitable<void> run() {
    for (;;) {
      // Frames left over from opening first, then whatever each read brings.
      std::size_t used = 0;
      if (!in_.empty()) {
        used = handle_frames(in_.data(), in_.size());
        if (closed_) co_return;
        in_.erase(0, used);
      }
      boost::system::error_code ec;
      co_await sock_.async_wait(tcp::socket::wait_read, asio::redirect_error(use_awaitable, ec));
      if (ec) co_return;
      for (;;) {
        std::size_t n = sock_.read_some(asio::buffer(scratch_.data(), scratch_.size()), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) break;
        if (ec) co_return;
        if (in_.empty()) {
          used = handle_frames(scratch_.data(), n);
          if (closed_) co_return;
          in_.assign(scratch_.data() + used, n - used);  // a frame cut by the read
        } else {
          in_.append(scratch_.data(), n);
          used = handle_frames(in_.data(), in_.size());
          if (closed_) co_return;
          in_.erase(0, used);
        }
        if (n < scratch_.size()) break;
      }
    }
  }

 private:
  // The frame at data[0, size): its header length, payload length and opcode; false if cut.
  static bool frame_at(const char* data, std::size_t size, std::size_t& header, std::size_t& len, unsigned& opcode) {
    if (size < 2) return false;
    auto* p = reinterpret_cast<const unsigned char*>(data);
    opcode = p[0] & 0x0F;
    len = p[1] & 0x7F;
    header = 2;
    if (len == 126) {
      if (size < 4) return false;
      len = (std::size_t(p[2]) << 8) | p[3];
      header = 4;
    } else if (len == 127) {
      if (size < 10) return false;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
      header = 10;
    }
    if (p[1] & 0x80) header += 4;  // servers do not mask; tolerate it anyway (the payload is not unmasked)
    return size - header >= len;
  }

  // Handles the complete frames in data[0, size); returns the bytes they took. Never suspends:
  // data may be the loop's scratch buffer.
  std::size_t handle_frames(const char* data, std::size_t size) {
    std::size_t pos = 0, header, len;
    unsigned opcode;
    while (frame_at(data + pos, size - pos, header, len, opcode)) {
      std::string_view payload(data + pos + header, len);
      pos += header + len;
      if (opcode == 0x9) {
        write_now(payload, 0xA);
      } else if (opcode == 0x8) {
        closed_ = true;
        return pos;
      } else if (opcode == 0x1 || opcode == 0x2) {
        if (o_.proto == "socketio" && payload == "2") {
          write_now("3");
          continue;
        }
        record(payload);
      }
    }
    return pos;
  }

  void record(std::string_view f) {
    auto at = f.find("\"body\":\"t=");
    if (at == std::string_view::npos) return;
    int64_t sent = 0, index = -1;
    const char* p = f.data() + at + 10;
    const char* end = f.data() + f.size();
    auto r = std::from_chars(p, end, sent);
    if (r.ec != std::errc()) return;
    if (r.ptr + 3 < end && r.ptr[0] == ';' && r.ptr[1] == 'i' && r.ptr[2] == '=') std::from_chars(r.ptr + 3, end, index);
    int64_t now = now_ns();
    t_.latency_ns.push_back(now - sent);
    if (index >= 0 && index < t_.messages) t_.per_message[index].fetch_add(1, std::memory_order_relaxed);
    t_.last_delivery_ns = now;
  }

  // Reads whatever arrives next into in_ (while opening); false at the end.
  // (Waits first, then reads: the scratch buffer is shared, so no read may be left pending on it.)
  awaitable<bool> read_more() {
    for (;;) {
      boost::system::error_code ec;
      co_await sock_.async_wait(tcp::socket::wait_read, asio::redirect_error(use_awaitable, ec));
      if (ec) co_return false;
      std::size_t n = sock_.read_some(asio::buffer(scratch_.data(), scratch_.size()), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
      if (ec) co_return false;
      in_.append(scratch_.data(), n);
      co_return true;
    }
  }

  // The next whole message (while opening; control frames answered), copied out.
  awaitable<bool> next_message(std::string& out) {
    for (;;) {
      std::size_t header, len;
      unsigned opcode;
      while (frame_at(in_.data(), in_.size(), header, len, opcode)) {
        std::string payload = in_.substr(header, len);
        in_.erase(0, header + len);
        if (opcode == 0x9) {
          co_await write(payload, 0xA);
        } else if (opcode == 0x8) {
          co_return false;
        } else if (opcode == 0x1 || opcode == 0x2) {
          out = std::move(payload);
          co_return true;
        }
      }
      if (!co_await read_more()) co_return false;
    }
  }

  // A client frame: masked (with a zero key, which leaves the payload as it is).
  static std::string client_frame(std::string_view payload, unsigned opcode) {
    std::string f;
    f += static_cast<char>(0x80 | opcode);
    if (payload.size() < 126) {
      f += static_cast<char>(0x80 | payload.size());
    } else {
      f += static_cast<char>(0x80 | 126);
      f += static_cast<char>(payload.size() >> 8);
      f += static_cast<char>(payload.size() & 0xff);
    }
    f.append(4, '\0');
    f.append(payload);
    return f;
  }
  awaitable<void> write(std::string_view payload, unsigned opcode = 0x1) {
    std::string f = client_frame(payload, opcode);
    boost::system::error_code ec;
    co_await asio::async_write(sock_, asio::buffer(f), asio::redirect_error(use_awaitable, ec));
  }
  // A few bytes (pong, Engine.IO's "3") into a socket buffer that has room for them.
  void write_now(std::string_view payload, unsigned opcode = 0x1) {
    std::string f = client_frame(payload, opcode);
    boost::system::error_code ec;
    asio::write(sock_, asio::buffer(f), ec);
  }

  tcp::socket sock_;
  asio::steady_timer guard_;
  std::string in_;  // bytes of a frame not complete yet
  bool closed_ = false;
  const Options& o_;
  Tally& t_;
  std::vector<char>& scratch_;
};

struct Loop {
  asio::io_context ioc{1};
  Tally tally;
  std::vector<char> scratch = std::vector<char>(64 * 1024);  // every read of this loop lands here
  std::vector<std::unique_ptr<Conn>> conns;
};

// Opens o.count connections spread over the loops, at most o.concurrency handshakes at a time.
int open_all(std::vector<std::unique_ptr<Loop>>& loops, const Options& o) {
  std::atomic<int> next{0}, ok{0}, failed{0};
  tcp::endpoint to(asio::ip::make_address(o.host), o.port);
  int per_loop = std::max(1, o.concurrency / static_cast<int>(loops.size()));
  for (std::size_t l = 0; l < loops.size(); ++l) {
    for (int w = 0; w < per_loop; ++w) {
      asio::co_spawn(
          loops[l]->ioc,
          [&, l]() -> awaitable<void> {
            for (;;) {
              int i = next++;
              if (i >= o.count) co_return;
              auto c = std::make_unique<Conn>(loops[l]->ioc, o, loops[l]->tally, loops[l]->scratch);
              const asio::ip::address_v4* src = o.sources.empty() ? nullptr : &o.sources[i % o.sources.size()];
              bool opened = co_await c->open(to, src);
              if (!opened) {
                int f = ++failed;
                if (f <= 5) std::cerr << "ws_load: connection " << i << " failed\n";
                // The server has stopped taking connections (out of descriptors, memory): stop asking.
                if (o.stop_after_failures > 0 && f >= o.stop_after_failures) next = o.count;
                continue;
              }
              ok++;
              loops[l]->conns.push_back(std::move(c));
            }
          },
          asio::detached);
    }
  }
  std::vector<std::thread> threads;
  for (auto& l : loops) threads.emplace_back([&l] { l->ioc.run(); });
  for (auto& t : threads) t.join();
  for (auto& l : loops) l->ioc.restart();
  return ok.load();
}

// One HTTP/1.1 keep-alive client that POSTs the measured messages.
class Sender {
 public:
  Sender(asio::io_context& ioc, const Options& o) : sock_(ioc), o_(o) {}
  awaitable<bool> connect() {
    boost::system::error_code ec;
    co_await sock_.async_connect(tcp::endpoint(asio::ip::make_address(o_.host), o_.port),
                                 asio::redirect_error(use_awaitable, ec));
    co_return !ec;
  }
  // Stamps the body with the time right before it leaves, POSTs it, waits for the answer.
  awaitable<bool> post(int index) {
    std::string stamp = "t=" + std::to_string(now_ns()) + ";i=" + std::to_string(index);
    http::request<http::string_body> req{http::verb::post, o_.send_path, 11};
    req.set(http::field::host, o_.host);
    if (o_.proto == "harmar") {
      req.set(http::field::content_type, "application/json");
      req.set(http::field::authorization, "Bearer " + o_.send_token);
      req.body() = "{\"body\":\"" + stamp + "\",\"client_msg_id\":\"bench-" + std::to_string(now_ns()) + "-" +
                   std::to_string(index) + "\"}";
    } else {
      req.set(http::field::content_type, "text/plain");
      req.body() = stamp;
    }
    req.prepare_payload();
    boost::system::error_code ec;
    co_await http::async_write(sock_, req, asio::redirect_error(use_awaitable, ec));
    if (ec) co_return false;
    http::response<http::string_body> res;
    co_await http::async_read(sock_, buf_, res, asio::redirect_error(use_awaitable, ec));
    if (ec || res.result_int() >= 300) {
      std::cerr << "ws_load: POST " << o_.send_path << " -> " << res.result_int() << " " << res.body() << "\n";
      co_return false;
    }
    co_return true;
  }

 private:
  tcp::socket sock_;
  beast::flat_buffer buf_;
  const Options& o_;
};

// CPU time (user + system, every thread) of a process so far, in microseconds; 0 if unknown.
int64_t cpu_us(int pid) {
  if (pid <= 0) return 0;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close = stat.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  int64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {  // fields 14 and 15: utime, stime (clock ticks)
    if (i == 14) utime = std::stoll(field);
    if (i == 15) stime = std::stoll(field);
  }
  return (utime + stime) * 1'000'000 / sysconf(_SC_CLK_TCK);
}

int64_t percentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  std::size_t k = static_cast<std::size_t>(p * (v.size() - 1));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

int hold(const Options& o) {
  std::vector<std::unique_ptr<Loop>> loops;
  for (int i = 0; i < o.threads; ++i) loops.push_back(std::make_unique<Loop>());
  auto t0 = std::chrono::steady_clock::now();
  int opened = open_all(loops, o);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "ws_load: %d of %d connections open in %.1f s\n", opened, o.count, secs);
  if (!o.ready.empty()) std::ofstream(o.ready) << opened << "\n";
  // Idle, reading (WebSocket pings are answered inside the reads) until told to stop.
  asio::signal_set stop(loops[0]->ioc, SIGTERM, SIGINT);
  stop.async_wait([&](auto, int) {
    for (auto& l : loops) l->ioc.stop();
  });
  for (auto& l : loops)
    for (auto& c : l->conns) asio::co_spawn(l->ioc, c->run(), asio::detached);
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < loops.size(); ++i) threads.emplace_back([&l = loops[i]] { l->ioc.run(); });
  loops[0]->ioc.run();
  for (auto& l : loops) l->ioc.stop();
  for (auto& t : threads) t.join();
  std::_Exit(0);  // no orderly teardown of 100k sockets needed
}

int fanout(const Options& o) {
  std::vector<std::unique_ptr<Loop>> loops;
  for (int i = 0; i < o.threads; ++i) loops.push_back(std::make_unique<Loop>());
  int total_msgs = o.latency_msgs + o.burst;
  for (auto& l : loops) {
    l->tally.per_message = std::make_unique<std::atomic<int64_t>[]>(total_msgs);
    l->tally.messages = total_msgs;
  }
  auto t0 = std::chrono::steady_clock::now();
  int n = open_all(loops, o);
  double connect_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (n < o.count) std::fprintf(stderr, "ws_load: only %d of %d connections\n", n, o.count);
  for (auto& l : loops)
    for (auto& c : l->conns) asio::co_spawn(l->ioc, c->run(), asio::detached);
  std::vector<std::thread> threads;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& l : loops) guards.push_back(asio::make_work_guard(l->ioc));
  for (std::size_t i = 1; i < loops.size(); ++i) threads.emplace_back([&l = loops[i]] { l->ioc.run(); });

  // Deliveries of message i so far, across loops (read racily: a progress check, not the result).
  auto delivered = [&](int i) {
    int64_t d = 0;
    for (auto& l : loops) d += l->tally.per_message[i].load(std::memory_order_relaxed);
    return d;
  };
  struct Result {
    bool ok = true;
    int64_t burst_start_ns = 0;
    int64_t burst_sent_ns = 0;
    int64_t cpu_start_us = 0;
    int64_t cpu_end_us = 0;
  } result;
  auto& ioc0 = loops[0]->ioc;
  asio::co_spawn(
      ioc0,
      [&]() -> awaitable<void> {
        Sender s(ioc0, o);
        bool up = co_await s.connect();
        if (!up) {
          result.ok = false;
          co_return;
        }
        asio::steady_timer pause(ioc0);
        auto deadline = [&] { return std::chrono::steady_clock::now() + std::chrono::seconds(o.timeout_s); };
        // Latency: one message at a time, the next once every socket has the previous one.
        for (int i = 0; i < o.latency_msgs; ++i) {
          bool sent = co_await s.post(i);
          if (!sent) {
            result.ok = false;
            break;
          }
          auto until = deadline();
          while (delivered(i) < n && std::chrono::steady_clock::now() < until) {
            pause.expires_after(std::chrono::milliseconds(1));
            co_await pause.async_wait(use_awaitable);
          }
          pause.expires_after(std::chrono::milliseconds(20));
          co_await pause.async_wait(use_awaitable);
        }
        // Throughput: a burst from --senders connections at once, each POSTing back to back (many
        // people talking in one busy room), so what is measured is the fan-out, not one client's
        // round trip; done when every socket has every message.
        result.burst_start_ns = now_ns();
        result.cpu_start_us = cpu_us(o.server_pid);
        int next_msg = o.latency_msgs, senders_left = o.senders;
        asio::steady_timer all_sent(ioc0);
        all_sent.expires_at(asio::steady_timer::time_point::max());
        for (int k = 0; k < o.senders; ++k) {
          asio::co_spawn(
              ioc0,
              [&]() -> awaitable<void> {
                Sender mine(ioc0, o);
                bool up = co_await mine.connect();
                if (!up) result.ok = false;
                while (up && result.ok && next_msg < total_msgs) {
                  int i = next_msg++;
                  bool sent = co_await mine.post(i);
                  if (!sent) result.ok = false;
                }
                if (--senders_left == 0) all_sent.cancel();
              },
              asio::detached);
        }
        while (senders_left > 0) {
          boost::system::error_code ignored;
          co_await all_sent.async_wait(asio::redirect_error(use_awaitable, ignored));
        }
        result.burst_sent_ns = now_ns();
        auto until = deadline();
        for (;;) {
          int64_t all = 0;
          for (int i = o.latency_msgs; i < total_msgs; ++i) all += delivered(i);
          if (all >= int64_t(n) * o.burst || std::chrono::steady_clock::now() > until) {
            result.cpu_end_us = cpu_us(o.server_pid);
            break;
          }
          pause.expires_after(std::chrono::milliseconds(1));
          co_await pause.async_wait(use_awaitable);
        }
        pause.expires_after(std::chrono::milliseconds(200));  // stragglers, duplicates
        co_await pause.async_wait(use_awaitable);
        for (auto& l : loops) l->ioc.stop();
      },
      asio::detached);
  ioc0.run();
  for (auto& l : loops) l->ioc.stop();
  for (auto& t : threads) t.join();

  // Merge: latencies of the latency phase and of the burst, deliveries, the last delivery.
  std::vector<int64_t> lat;
  int64_t lat_deliveries = 0, burst_deliveries = 0, last = 0;
  for (auto& l : loops) {
    for (int i = 0; i < o.latency_msgs; ++i) lat_deliveries += l->tally.per_message[i];
    for (int i = o.latency_msgs; i < total_msgs; ++i) burst_deliveries += l->tally.per_message[i];
    last = std::max(last, l->tally.last_delivery_ns);
  }
  // The first lat_deliveries samples per loop belong to the latency phase (messages go one at a time).
  std::vector<int64_t> lat_phase, burst_phase;
  for (auto& l : loops) {
    int64_t k = 0;
    for (int i = 0; i < o.latency_msgs; ++i) k += l->tally.per_message[i];
    auto& v = l->tally.latency_ns;
    lat_phase.insert(lat_phase.end(), v.begin(), v.begin() + std::min<int64_t>(k, v.size()));
    burst_phase.insert(burst_phase.end(), v.begin() + std::min<int64_t>(k, v.size()), v.end());
  }
  double burst_s = result.burst_start_ns && last > result.burst_start_ns ? (last - result.burst_start_ns) / 1e9 : 0;
  std::printf(
      "{\"proto\":\"%s\",\"connections\":%d,\"connect_s\":%.2f,\"ok\":%s,"
      "\"latency_messages\":%d,\"latency_deliveries\":%lld,\"latency_expected\":%lld,"
      "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
      "\"burst_messages\":%d,\"burst_deliveries\":%lld,\"burst_expected\":%lld,\"burst_s\":%.3f,"
      "\"deliveries_per_s\":%.0f,\"burst_p50_ms\":%.3f,\"burst_p99_ms\":%.3f,\"server_cpu_us_per_delivery\":%.3f}\n",
      o.proto.c_str(), n, connect_s, result.ok ? "true" : "false", o.latency_msgs, (long long)lat_deliveries,
      (long long)n * o.latency_msgs, percentile(lat_phase, 0.5) / 1e6, percentile(lat_phase, 0.99) / 1e6,
      percentile(lat_phase, 1.0) / 1e6, o.burst, (long long)burst_deliveries, (long long)n * o.burst, burst_s,
      burst_s > 0 ? burst_deliveries / burst_s : 0.0, percentile(burst_phase, 0.5) / 1e6,
      percentile(burst_phase, 0.99) / 1e6,
      burst_deliveries > 0 ? double(result.cpu_end_us - result.cpu_start_us) / burst_deliveries : 0.0);
  std::fflush(stdout);
  std::_Exit(result.ok ? 0 : 1);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  if (o.mode == "hold") return hold(o);
  if (o.mode == "fanout") return fanout(o);
  die("mode must be hold or fanout");
}
