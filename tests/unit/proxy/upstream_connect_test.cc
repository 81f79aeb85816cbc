// UpstreamConnection's walk through a backend name's addresses, on a real loop and real
// loopback sockets: refused addresses are passed over for the next one, the delegate hears
// once, and a connection closed at any point of the walk (even while its handle is being
// made anew for the next address) ends exactly once. ASan's leak check covers "once".

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "proxy/cidr.h"
#include "proxy/stream_writer.h"
#include "proxy/upstream_pool.h"
#include "tests/support/net.h"
#include "tests/unit/proxy/test_loop.h"

namespace portico {
namespace {

// An address where nothing listens, held bound (never listening) for the object's life.
class RefusingAddress {
 public:
  explicit RefusingAddress(const std::string& host) {
    sockaddr_storage ss{};
    socklen_t len = test::fill_sockaddr(host, 0, &ss);
    fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
    address_ = ss;
  }
  ~RefusingAddress() { ::close(fd_); }
  const sockaddr_storage& address() const { return address_; }

 private:
  int fd_ = -1;
  sockaddr_storage address_{};
};

sockaddr_storage listening_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
  return ss;
}

class Fixture : private UpstreamConnection::Delegate {
 public:
  Fixture() : pool_(std::make_unique<UpstreamPool>(loop_.get())) {}
  ~Fixture() {
    pool_.reset();
    loop_.close_all();
  }

  UpstreamConnection* start(const std::vector<sockaddr_storage>& addresses) {
    UpstreamConnection* conn = pool_->create("test");
    conn->set_delegate(this);
    conn->connect_in_order(addresses);
    return conn;
  }
  // Runs the loop until the delegate heard, or `turns` turns passed.
  void run_until_heard(int turns = 1000) {
    for (int i = 0; i < turns && calls_ == 0; ++i) uv_run(loop_.get(), UV_RUN_ONCE);
  }
  // Closes `conn` in the check phase of the loop's `turn`th turn (0: the first): after that
  // turn's connect callbacks, before its close callbacks, where a client's read that ends its
  // connection would land too.
  void close_in_turn(UpstreamConnection* conn, int turn) {
    closing_conn_ = conn;
    close_turn_ = turn;
    uv_check_init(loop_.get(), &check_);
    check_.data = this;
    uv_check_start(&check_, [](uv_check_t* check) {
      auto* self = static_cast<Fixture*>(check->data);
      if (self->close_turn_-- != 0) return;
      self->heard_before_close_ = self->calls_;
      self->closing_conn_->close();
      uv_close(reinterpret_cast<uv_handle_t*>(check), nullptr);
    });
    // A turn that had nothing to wait for would block: an idle handle keeps each one short.
    uv_idle_init(loop_.get(), &idle_);
    uv_idle_start(&idle_, [](uv_idle_t*) {});
    for (int i = 0; i <= turn; ++i) uv_run(loop_.get(), UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
  }
  int heard_before_close() const { return heard_before_close_; }
  void turn() { uv_run(loop_.get(), UV_RUN_NOWAIT); }
  // Runs every remaining callback (the connection's close ones among them).
  void drain() { uv_run(loop_.get(), UV_RUN_DEFAULT); }
  int calls() const { return calls_; }
  int status() const { return status_; }

 private:
  void on_upstream_connected(UpstreamConnection&, int status) override {
    ++calls_;
    status_ = status;
  }
  void on_upstream_data(UpstreamConnection&, const char*, size_t) override {}
  void on_upstream_closed(UpstreamConnection&, int) override {}
  void on_upstream_drained(UpstreamConnection&) override {}

  test::TestLoop loop_;
  std::unique_ptr<UpstreamPool> pool_;
  int calls_ = 0;
  int status_ = 1;
  uv_check_t check_;
  uv_idle_t idle_;
  UpstreamConnection* closing_conn_ = nullptr;
  int close_turn_ = 0;
  int heard_before_close_ = -1;
};

TEST_CASE("upstream connect: refused addresses are passed over, IPv4 to IPv6 and back",
          "[upstream_connect]") {
  RefusingAddress v4("127.0.0.1");
  RefusingAddress v6("::1");
  uint16_t port = 0;
  int listener = test::listen_loopback(4, &port);
  REQUIRE(listener >= 0);
  Fixture f;
  UpstreamConnection* conn = f.start({v4.address(), v6.address(), listening_address(listener)});
  f.run_until_heard();
  CHECK(f.calls() == 1);
  CHECK(f.status() == 0);
  CHECK(conn->address() == "127.0.0.1,::1,127.0.0.1");
  int accepted = ::accept(listener, nullptr, nullptr);
  CHECK(accepted >= 0);
  conn->close();
  f.drain();
  if (accepted >= 0) ::close(accepted);
  ::close(listener);
}

TEST_CASE("upstream connect: when every address refuses, the delegate hears once, of the last",
          "[upstream_connect]") {
  RefusingAddress first("127.0.0.1");
  RefusingAddress second("::1");
  RefusingAddress third("127.0.0.1");
  Fixture f;
  UpstreamConnection* conn = f.start({first.address(), second.address(), third.address()});
  f.run_until_heard();
  CHECK(f.calls() == 1);
  CHECK(f.status() == UV_ECONNREFUSED);
  CHECK(conn->address() == "127.0.0.1,::1,127.0.0.1");
  conn->close();
  f.drain();
  CHECK(f.calls() == 1);
}

TEST_CASE("upstream connect: an address given up on after its deadline passes to the next",
          "[upstream_connect]") {
  // A connect that would not finish by itself here: the accept queue of a backlog-0 listener,
  // filled by connects of our own, makes the kernel drop the next SYNs.
  uint16_t port = 0;
  int silent = test::listen_loopback(0, &port);
  REQUIRE(silent >= 0);
  std::vector<int> fillers;
  const sockaddr_storage silent_address = listening_address(silent);
  for (int i = 0; i < 4; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ::connect(fd, reinterpret_cast<const sockaddr*>(&silent_address), sizeof(sockaddr_in));
    fillers.push_back(fd);
  }
  uint16_t live_port = 0;
  int live = test::listen_loopback(4, &live_port);
  REQUIRE(live >= 0);
  Fixture f;
  UpstreamConnection* conn = f.start({silent_address, listening_address(live)});
  for (int i = 0; i < 20; ++i) {  // 100 ms of turns: the first connect is still pending
    f.turn();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(f.calls() == 0);
  CHECK(conn->move_past_unanswered_address());
  f.run_until_heard();
  CHECK(f.calls() == 1);
  CHECK(f.status() == 0);
  CHECK(conn->connect_errors() == "ETIMEDOUT");
  // Nothing left to pass to: the caller ends it.
  CHECK_FALSE(conn->move_past_unanswered_address());
  conn->close();
  f.drain();
  for (int fd : fillers) ::close(fd);
  ::close(silent);
  ::close(live);
}

TEST_CASE("upstream connect: the order is IPv4 then IPv6, each address once",
          "[upstream_connect]") {
  std::vector<sockaddr_storage> storage(5);
  test::fill_sockaddr("::1", 80, &storage[0]);
  test::fill_sockaddr("127.0.0.2", 80, &storage[1]);
  test::fill_sockaddr("::1", 80, &storage[2]);  // listed twice, as /etc/hosts and DNS may
  test::fill_sockaddr("127.0.0.2", 80, &storage[3]);
  test::fill_sockaddr("127.0.0.3", 80, &storage[4]);
  std::vector<addrinfo> list(storage.size());
  for (size_t i = 0; i < list.size(); ++i) {
    list[i].ai_family = storage[i].ss_family;
    list[i].ai_socktype = SOCK_STREAM;
    list[i].ai_addrlen =
        storage[i].ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    list[i].ai_addr = reinterpret_cast<sockaddr*>(&storage[i]);
    list[i].ai_next = i + 1 < list.size() ? &list[i + 1] : nullptr;
  }
  std::string order;
  for (const sockaddr_storage& addr : backend_address_order(list.data())) {
    order += address_text(addr) + " ";
  }
  CHECK(order == "127.0.0.2 127.0.0.3 ::1 ");
}

TEST_CASE("upstream connect: a connection closed at any turn of the walk ends once, unheard",
          "[upstream_connect]") {
  RefusingAddress first("127.0.0.1");
  RefusingAddress second("::1");
  RefusingAddress third("127.0.0.1");
  // Each close lands at another point: before the first connect's answer, while a handle is
  // being made anew for the next address, during a later attempt, after the last failure.
  for (int turn = 0; turn < 8; ++turn) {
    Fixture f;
    UpstreamConnection* conn = f.start({first.address(), second.address(), third.address()});
    f.close_in_turn(conn, turn);
    f.drain();
    INFO("closed in turn " << turn);
    CHECK(f.heard_before_close() >= 0);          // the close happened
    CHECK(f.calls() == f.heard_before_close());  // and nothing reached the delegate after it
  }
}

}  // namespace
}  // namespace portico
