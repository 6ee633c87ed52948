// Streamed request bodies (RouteOptions::stream_body) and streamed responses (Response::stream)
// over HTTP/1.1, against a raw-socket client: the handler reads the body while it arrives, the
// socket is read only as fast as the handler reads, limits and lies are caught, and a client that
// hangs up mid-body leaves the handler with an error rather than a short body.
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>

#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "support/test_client.hpp"

namespace harmar::testing {
namespace {

namespace asio = boost::asio;
using net::Request;
using net::Response;

// What the streaming handler saw of one request; filled by the server thread.
struct Seen {
  std::mutex mu;
  std::promise<void> first_piece;  // set once the first bytes reached the handler
  bool first_set = false;
  std::promise<std::string> outcome;  // "ok:<bytes>" or "error:<code>"
  std::shared_ptr<std::promise<void>> gate;  // if set, the handler waits after its first piece
  std::shared_future<void> gate_open;
};

// Blocks the server's event loop thread only in the backpressure test, and only until the test
// opens the gate: it is how "the handler is busy" is simulated without a timer.
net::Handler counting_handler(Seen& seen) {
  return [&seen](Request& req) -> asio::awaitable<Response> {
    if (!req.body_source) co_return Response(500, R"({"error":"no body source"})");
    std::size_t total = 0, pieces = 0;
    uint64_t sum = 0;
    for (;;) {
      auto piece = co_await req.body_source->read();
      if (!piece) {
        seen.outcome.set_value("error:" + piece.error().code);
        co_return piece.error();
      }
      if (piece->empty()) break;
      for (unsigned char c : *piece) sum = sum * 31 + c;
      total += piece->size();
      ++pieces;
      std::unique_lock lock(seen.mu);
      if (!seen.first_set) {
        seen.first_set = true;
        seen.first_piece.set_value();
        if (seen.gate) {
          auto open = seen.gate_open;
          lock.unlock();
          open.wait();
        }
      }
    }
    if (!req.body.empty() && req.body.size() > 64 * 1024 + 4096)
      co_return Response(500, R"({"error":"body buffered"})");  // never more than a read's worth
    seen.outcome.set_value("ok:" + std::to_string(total));
    co_return Response::json(
        200, boost::json::object{{"bytes", total}, {"pieces", pieces}, {"sum", std::to_string(sum)}});
  };
}

std::string checksum(std::string_view data) {
  uint64_t sum = 0;
  for (unsigned char c : data) sum = sum * 31 + c;
  return std::to_string(sum);
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 1000) % 26);
  return s;
}

struct Fixture {
  explicit Fixture(int64_t limit = 64 << 20) {
    auto o = TestServer::defaults();
    o.body_limit = 1000;  // the default stays small: the streamed route has its own limit
    server = std::make_unique<TestServer>(o);
    server->router.post("/upload", counting_handler(seen), {.body_limit = limit, .stream_body = true});
    server->router.post("/echo", [](Request& req) -> asio::awaitable<Response> {
      co_return Response(200, req.body, "text/plain");
    });
    server->start();
  }
  std::string outcome() {
    auto f = seen.outcome.get_future();
    if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) return "timeout";
    return f.get();
  }
  Seen seen;
  std::unique_ptr<TestServer> server;
};

TEST(BodyStream, a_content_length_body_reaches_the_handler_whole_in_pieces) {
  Fixture f;
  RawClient c(f.server->port);
  std::string body = pattern(3 << 20);
  auto r = c.request("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                     body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->result_int(), 200) << r->body();
  auto o = boost::json::parse(r->body()).as_object();
  EXPECT_EQ(o["bytes"].as_int64(), static_cast<int64_t>(body.size()));
  EXPECT_EQ(o["sum"].as_string(), checksum(body));
  EXPECT_GT(o["pieces"].as_int64(), 1);  // it was not handed over whole
  EXPECT_EQ(f.outcome(), "ok:" + std::to_string(body.size()));
  // The connection stays usable: the next request on it is answered.
  r = c.request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "hi");
}

TEST(BodyStream, a_chunked_body_reaches_the_handler_whole) {
  Fixture f;
  RawClient c(f.server->port);
  std::string body = pattern(200000);
  std::string wire = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (std::size_t off = 0; off < body.size(); off += 7000) {
    std::string piece = body.substr(off, 7000);
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
    wire += size + piece + "\r\n";
  }
  wire += "0\r\n\r\n";
  auto r = c.request(wire);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->result_int(), 200) << r->body();
  auto o = boost::json::parse(r->body()).as_object();
  EXPECT_EQ(o["bytes"].as_int64(), static_cast<int64_t>(body.size()));
  EXPECT_EQ(o["sum"].as_string(), checksum(body));
}

TEST(BodyStream, a_slow_client_is_read_as_it_sends) {
  Fixture f;
  RawClient c(f.server->port);
  std::string body = pattern(30000);
  c.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
  c.send(body.substr(0, 1000));
  // The handler gets the first kilobyte while the rest has not been sent: it is not waiting for
  // the whole body.
  auto first = f.seen.first_piece.get_future();
  ASSERT_EQ(first.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  for (std::size_t off = 1000; off < body.size(); off += 4000) c.send(body.substr(off, 4000));
  auto r = c.read();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->result_int(), 200) << r->body();
  EXPECT_EQ(boost::json::parse(r->body()).as_object()["sum"].as_string(), checksum(body));
}

TEST(BodyStream, the_socket_is_read_only_as_fast_as_the_handler_reads) {
  Fixture f(256 << 20);
  auto gate = std::make_shared<std::promise<void>>();
  f.seen.gate = gate;
  f.seen.gate_open = gate->get_future().share();
  RawClient c(f.server->port);
  const std::size_t total = 200 << 20;
  std::string piece = pattern(1 << 20);
  c.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(total) + "\r\n\r\n");
  int fd = c.socket().native_handle();
  int flags = ::fcntl(fd, F_GETFL);
  ASSERT_EQ(::fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
  // While the handler holds its first piece, the client can only fill the socket buffers: far
  // less than the body. (The kernel's buffers are a few MiB at most.)
  std::size_t sent = 0;
  auto first = f.seen.first_piece.get_future();
  bool first_seen = false;
  for (;;) {
    std::size_t off = sent % piece.size();
    ssize_t n = ::send(fd, piece.data() + off, piece.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << errno;
    if (!first_seen) {
      ASSERT_EQ(first.wait_for(std::chrono::seconds(10)), std::future_status::ready);
      first_seen = true;
      continue;  // the server read its first piece: the buffers may have drained a little
    }
    break;
  }
  EXPECT_LT(sent, std::size_t{32} << 20) << "the server read ahead of its handler";
  gate->set_value();
  ASSERT_EQ(::fcntl(fd, F_SETFL, flags), 0);
  while (sent < total) {
    std::size_t off = sent % piece.size();
    std::size_t n = std::min(piece.size() - off, total - sent);
    c.send(std::string_view(piece.data() + off, n));
    sent += n;
  }
  auto r = c.read();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->result_int(), 200) << r->body();
  EXPECT_EQ(boost::json::parse(r->body()).as_object()["bytes"].as_int64(), static_cast<int64_t>(total));
}

TEST(BodyStream, a_declared_length_over_the_limit_is_413_before_the_body_is_read) {
  Fixture f(10000);
  RawClient c(f.server->port);
  // Only the header is sent: the refusal comes on Content-Length alone.
  auto r = c.request("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 413);
  EXPECT_NE(r->body().find("payload_too_large"), std::string::npos);
  EXPECT_TRUE(c.closed_within(2000));
  EXPECT_FALSE(f.seen.first_set);  // the handler never ran
}

TEST(BodyStream, a_chunked_body_growing_past_the_limit_is_an_error_for_the_handler_and_a_413) {
  Fixture f(10000);
  RawClient c(f.server->port);
  std::string piece(4000, 'z');
  c.send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfa0\r\n" + piece + "\r\n");
  auto first = f.seen.first_piece.get_future();  // the handler is reading: the rest goes to it
  ASSERT_EQ(first.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  std::string more;
  for (int i = 0; i < 3; ++i) more += "fa0\r\n" + piece + "\r\n";
  auto r = c.request(more);  // no last chunk: the server must not wait for the rest
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 413);
  EXPECT_EQ(f.outcome(), "error:payload_too_large");
  EXPECT_TRUE(c.closed_within(2000));
}

TEST(BodyStream, a_client_that_hangs_up_mid_body_leaves_the_handler_an_error) {
  Fixture f;
  {
    RawClient c(f.server->port);
    c.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + pattern(30000));
    auto first = f.seen.first_piece.get_future();
    ASSERT_EQ(first.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  }  // closed with 70000 bytes missing
  EXPECT_EQ(f.outcome(), "error:incomplete_body");
}

TEST(BodyStream, a_client_that_declares_more_than_it_sends_leaves_the_handler_an_error) {
  Fixture f;
  RawClient c(f.server->port);
  c.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + pattern(500));
  ::shutdown(c.socket().native_handle(), SHUT_WR);  // the client says it is done: 4500 bytes short
  EXPECT_EQ(f.outcome(), "error:incomplete_body");
  EXPECT_TRUE(c.closed_within(5000));
}

TEST(BodyStream, bytes_past_a_declared_length_are_the_next_request_not_body) {
  Fixture f;
  RawClient c(f.server->port);
  // 10 bytes declared, 25 sent: the handler gets exactly 10, the rest is a malformed request.
  auto r = c.request("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789smuggled bytes\r\n\r\n");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->result_int(), 200);
  EXPECT_EQ(boost::json::parse(r->body()).as_object()["bytes"].as_int64(), 10);
  r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 400);
}

TEST(BodyStream, an_early_refusal_of_an_unread_body_reaches_the_client_intact) {
  TestServer s;
  s.router.post("/refuse", [](Request&) -> asio::awaitable<Response> {
    co_return Error::conflict("no room", "backup_quota_exceeded");  // without reading the body
  }, {.body_limit = 64 << 20, .stream_body = true});
  s.start();
  for (int i = 0; i < 20; ++i) {  // a reset instead of a lingering close loses the answer now and then
    RawClient c(s.port);
    std::string body(300000, 'r');
    c.send("POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
    c.send(body);
    auto r = c.read();
    ASSERT_TRUE(r) << "attempt " << i;
    EXPECT_EQ(r->result_int(), 409);
    EXPECT_NE(r->body().find("backup_quota_exceeded"), std::string::npos);
    EXPECT_TRUE(c.closed_within(5000));
  }
}

// --- streamed responses -------------------------------------------------------------------

class Pieces final : public net::BodyStream {
 public:
  Pieces(std::vector<std::string> pieces, bool fail_at_end) : pieces_(std::move(pieces)), fail_(fail_at_end) {}
  asio::awaitable<Result<std::string>> read() override {
    if (next_ < pieces_.size()) co_return pieces_[next_++];
    if (fail_) co_return Error::internal("the disk went away");
    co_return std::string();
  }

 private:
  std::vector<std::string> pieces_;
  std::size_t next_ = 0;
  bool fail_;
};

TEST(BodyStream, a_streamed_response_is_sent_with_its_length_and_keeps_the_connection) {
  TestServer s;
  std::string a = pattern(100000), b = pattern(70000);
  s.router.get("/file", [&](Request&) -> asio::awaitable<Response> {
    Response r(200, {}, "application/octet-stream");
    r.stream = std::make_shared<Pieces>(std::vector<std::string>{a, b}, false);
    r.stream_size = static_cast<int64_t>(a.size() + b.size());
    co_return r;
  });
  s.start();
  RawClient c(s.port);
  auto r = c.request(get("/file"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
  EXPECT_EQ((*r)["Content-Length"], std::to_string(a.size() + b.size()));
  EXPECT_EQ(r->body(), a + b);
  r = c.request("HEAD /file HTTP/1.1\r\nHost: x\r\n\r\n", true);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["Content-Length"], std::to_string(a.size() + b.size()));
  r = c.request(get("/file"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), a + b);
}

TEST(BodyStream, a_streamed_response_that_fails_midway_cuts_the_connection) {
  TestServer s;
  s.router.get("/broken", [](Request&) -> asio::awaitable<Response> {
    Response r(200, {}, "application/octet-stream");
    r.stream = std::make_shared<Pieces>(std::vector<std::string>{std::string(1000, 'q')}, true);
    r.stream_size = 5000;
    co_return r;
  });
  s.start();
  RawClient c(s.port);
  auto r = c.request(get("/broken"));
  EXPECT_FALSE(r);  // 1000 of 5000 promised bytes, then the end: no complete response
}

}  // namespace
}  // namespace harmar::testing
