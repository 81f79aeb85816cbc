// StreamWriter and WriteBatch on a real loopback TCP connection: small writes made in one loop
// turn leave in one syscall after the loop has handled its events, large writes go to the
// socket at once, order is kept across both, and a writer that goes away with gathered bytes
// leaves nothing behind.

#include "proxy/stream_writer.h"

#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "tests/support/net.h"
#include "tests/unit/proxy/test_loop.h"

namespace portico {
namespace {

// A loop carrying LoopBuffers (as a worker's does), one accepted TCP connection wrapped in a
// uv_tcp_t for the writer, and the peer's plain blocking socket to read what arrived.
class WriterFixture : private StreamWriter::Owner {
 public:
  WriterFixture() {
    uint16_t port = 0;
    int listener = test::listen_loopback(4, &port);
    REQUIRE(listener >= 0);
    std::string error;
    peer_ = test::connect_tcp("127.0.0.1", port, std::chrono::seconds(5), &error);
    REQUIRE(peer_ >= 0);
    int fd = accept(listener, nullptr, nullptr);
    close(listener);
    REQUIRE(fd >= 0);
    uv_tcp_init(loop_.get(), &tcp_);
    REQUIRE(uv_tcp_open(&tcp_, fd) == 0);
    writer_ = std::make_unique<StreamWriter>();
    writer_->init(reinterpret_cast<uv_stream_t*>(&tcp_), this);
  }

  ~WriterFixture() {
    writer_.reset();
    loop_.close_all();
    close(peer_);
  }

  StreamWriter& writer() { return *writer_; }
  void drop_writer() { writer_.reset(); }
  void turn() { uv_run(loop_.get(), UV_RUN_NOWAIT); }
  int write_done_calls() const { return write_done_calls_; }
  int last_status() const { return last_status_; }

  // Whatever the peer can read now, without waiting.
  std::string peer_read_now() {
    std::string got;
    char buf[65536];
    for (;;) {
      ssize_t n = recv(peer_, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }
  // One recv() call: what a single read on the peer returns.
  std::string peer_read_once() {
    char buf[65536];
    ssize_t n = recv(peer_, buf, sizeof buf, MSG_DONTWAIT);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }

 private:
  void on_write_done(int status) override {
    ++write_done_calls_;
    last_status_ = status;
  }

  test::TestLoop loop_;
  uv_tcp_t tcp_;
  std::unique_ptr<StreamWriter> writer_;
  int peer_ = -1;
  int write_done_calls_ = 0;
  int last_status_ = 1;
};

TEST_CASE("stream writer: small writes of one loop turn leave together, after the turn",
          "[stream_writer]") {
  WriterFixture f;
  REQUIRE(f.writer().write("GET ", 4) == 0);
  REQUIRE(f.writer().write("/ HTTP/1.1\r\n", 12) == 0);
  std::string owned = "\r\n";
  REQUIRE(f.writer().write_owned(std::move(owned)) == 0);
  CHECK(owned.empty());
  // Gathered, not sent: backpressure still sees the bytes.
  CHECK(f.writer().queued() == 18);
  CHECK(f.peer_read_now().empty());
  f.turn();
  CHECK(f.writer().queued() == 0);
  CHECK(f.write_done_calls() == 1);
  CHECK(f.last_status() == 0);
  // One write(2) of all three: a single recv sees every byte.
  CHECK(f.peer_read_once() == "GET / HTTP/1.1\r\n\r\n");
}

TEST_CASE("stream writer: gathered bytes that outgrow the small block move to a large one",
          "[stream_writer]") {
  WriterFixture f;
  // 1,500 bytes fit the 2 KiB block; 3,000 more do not, and the first must survive the move.
  const std::string first(1500, 'a');
  const std::string second(3000, 'b');
  const std::string third(WriteBatch::kBlockSize - first.size() - second.size(), 'c');
  REQUIRE(first.size() < WriteBatch::kSmallBlockSize);
  REQUIRE(f.writer().write(first.data(), first.size()) == 0);
  REQUIRE(f.writer().write(second.data(), second.size()) == 0);
  REQUIRE(f.writer().write(third.data(), third.size()) == 0);  // exactly fills the large block
  CHECK(f.writer().queued() == WriteBatch::kBlockSize);
  CHECK(f.peer_read_now().empty());
  f.turn();
  CHECK(f.writer().queued() == 0);
  CHECK(f.peer_read_now() == first + second + third);
  // The blocks went back to the loop's free lists; the next turn starts small again.
  REQUIRE(f.writer().write("next", 4) == 0);
  f.turn();
  CHECK(f.peer_read_now() == "next");
}

TEST_CASE("stream writer: a large write goes to the socket at once, after what was gathered",
          "[stream_writer]") {
  WriterFixture f;
  REQUIRE(f.writer().write("head:", 5) == 0);
  const std::string body(WriteBatch::kBlockSize + 1, 'b');
  REQUIRE(f.writer().write(body.data(), body.size()) == 0);
  CHECK(f.writer().queued() == 0);  // the kernel took it all, no loop turn needed
  std::string got = f.peer_read_now();
  CHECK(got.size() == 5 + body.size());
  CHECK(got.substr(0, 5) == "head:");
  CHECK(got.substr(5) == body);
}

TEST_CASE("stream writer: a string handed over whole is sent without waiting for the loop",
          "[stream_writer]") {
  WriterFixture f;
  std::string big(3 * WriteBatch::kBlockSize, 'x');
  REQUIRE(f.writer().write_owned(std::move(big)) == 0);
  CHECK(f.writer().queued() == 0);
  CHECK(f.peer_read_now().size() == 3 * WriteBatch::kBlockSize);
}

TEST_CASE("stream writer: bytes gathered before a close are offered to the socket",
          "[stream_writer]") {
  WriterFixture f;
  REQUIRE(f.writer().write("HTTP/1.1 502 Bad Gateway\r\n\r\n", 28) == 0);
  f.writer().flush_before_close();
  CHECK(f.writer().queued() == 0);
  CHECK(f.peer_read_now() == "HTTP/1.1 502 Bad Gateway\r\n\r\n");
  f.turn();
  CHECK(f.write_done_calls() == 0);  // nothing left to report
}

TEST_CASE("stream writer: a writer that goes away with gathered bytes leaves the batch",
          "[stream_writer]") {
  WriterFixture f;
  REQUIRE(f.writer().write("lost", 4) == 0);
  f.drop_writer();
  f.turn();  // the batch must not touch the freed writer (ASan checks this in its build)
  CHECK(f.peer_read_now().empty());
}

}  // namespace
}  // namespace portico
