#include "tests/support/scripted_backend.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "tests/support/net.h"

namespace portico::test {

ScriptedBackend::ScriptedBackend(Script script) : script_(std::move(script)) {
  listen_fd_ = listen_loopback(16, &port_);
  acceptor_ = std::thread([this] { accept_loop(); });
}

ScriptedBackend::~ScriptedBackend() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);  // a script blocked in a read returns
  }
  for (std::thread& t : threads_) t.join();
  ::close(listen_fd_);
}

void ScriptedBackend::accept_loop() {
  while (!stopping_) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    const int number = ++accepted_;
    std::lock_guard<std::mutex> lock(mutex_);
    open_fds_.push_back(fd);
    threads_.emplace_back([this, fd, number] {
      script_(fd, number);
      {
        std::lock_guard<std::mutex> held(mutex_);
        open_fds_.erase(std::find(open_fds_.begin(), open_fds_.end(), fd));
      }
      ::close(fd);
    });
  }
}

namespace {
// One read of what arrives within `timeout`: the bytes read; 0 or less on close, error or
// timeout.
long read_within(int fd, char* buf, size_t len, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return 0;
  return ::read(fd, buf, len);
}
}  // namespace

std::string ScriptedBackend::read_until(int fd, std::string_view marker,
                                        std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string got;
  char buf[16384];
  while (got.find(marker) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    long n = read_within(fd, buf, sizeof buf, left);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

std::string ScriptedBackend::read_for(int fd, std::chrono::milliseconds quiet) {
  std::string got;
  char buf[16384];
  for (;;) {
    long n = read_within(fd, buf, sizeof buf, quiet);
    if (n <= 0) return got;
    got.append(buf, static_cast<size_t>(n));
  }
}

bool ScriptedBackend::send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    long n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace portico::test
