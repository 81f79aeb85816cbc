#pragma once

// RawWsBackend: a WebSocket backend for integration tests that accepts one upgrade, records every
// byte the proxy sends it, and sends raw bytes of its own (frames a real server would not send).
// Header-only: the integration tests link portico_core, which it uses to read the recorded frames.

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <regex>
#include <string>
#include <thread>

#include "proxy/ws_frames.h"
#include "tests/support/net.h"
#include "tests/support/ws_client.h"

namespace portico::test {

// A WebSocket backend that accepts every upgrade and records what the proxy sends it, so tests
// can see the Close codes portico sends a backend. It can also send raw bytes of its own.
class RawWsBackend {
 public:
  struct Options {
    std::string extra_101_headers;  // whole lines, each ending in \r\n, added to the 101
    // A 4 KiB socket buffer (no autotuning) and a 1 ms pause after each read: slower than a
    // client can send, so the proxy's own queue towards it fills.
    bool slow_reader = false;
    std::string connection_header = "Connection: Upgrade\r\n";  // the 101's (empty: none)
  };
  RawWsBackend() : RawWsBackend(Options{}) {}
  explicit RawWsBackend(Options options) : options_(std::move(options)) {
    listen_fd_ = listen_loopback(16, &port_);
    if (options_.slow_reader) {
      int size = 4096;  // accepted sockets inherit it
      setsockopt(listen_fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    thread_ = std::thread([this] { serve(); });
  }
  ~RawWsBackend() {
    stop_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    close(listen_fd_);
    if (conn_fd_ >= 0) close(conn_fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  bool wait_upgraded(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!upgraded_ && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return upgraded_;
  }
  // Waits for EOF from the proxy; returns the Close code the proxy sent (0: none).
  uint16_t wait_close_code(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!eof_ && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::lock_guard<std::mutex> lock(mutex_);
    portico::WsFrameTracker tracker(portico::WsDirection::kClientToServer, 1 << 30);
    tracker.feed(reinterpret_cast<const uint8_t*>(frames_.data()), frames_.size());
    return tracker.close_code();
  }
  bool saw_eof() const { return eof_; }
  // A backend that stops reading: what the client sends must pile up in the client, not in
  // the proxy.
  void stop_reading() { reading_ = false; }
  // Every byte received after the upgrade request's head.
  std::string received() {
    std::lock_guard<std::mutex> lock(mutex_);
    return frames_;
  }
  // Sends unmasked binary frames of `size` bytes until `total` is out or a send blocks for
  // `timeout`; returns the bytes the proxy took.
  uint64_t flood(uint64_t total, size_t size, std::chrono::milliseconds timeout) {
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    setsockopt(conn_fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string frame = WsClient::encode_frame(2, true, std::string(size, 'f'), /*mask=*/false);
    uint64_t sent = 0;
    while (sent < total) {
      ssize_t n = ::send(conn_fd_, frame.data(), frame.size(), MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<uint64_t>(n);
      if (static_cast<size_t>(n) < frame.size()) break;
    }
    return sent;
  }
  void send_raw(const std::string& bytes) {
    ::send(conn_fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  void reset() {
    linger l{1, 0};
    setsockopt(conn_fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    shutdown(conn_fd_, SHUT_RDWR);
  }

 private:
  void serve() {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    conn_fd_ = fd;
    std::string head;
    char buf[65536];
    while (head.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      head.append(buf, static_cast<size_t>(n));
    }
    std::smatch key;
    std::regex_search(head, key, std::regex("Sec-WebSocket-Key: (\\S+)", std::regex::icase));
    std::string response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
                           options_.connection_header +
                           "Sec-WebSocket-Accept: " + portico::ws_accept_for_key(key[1].str()) +
                           "\r\n" + options_.extra_101_headers + "\r\n";
    ::send(fd, response.data(), response.size(), MSG_NOSIGNAL);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      frames_ = head.substr(head.find("\r\n\r\n") + 4);
    }
    upgraded_ = true;
    while (!stop_) {
      if (!reading_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        frames_.append(buf, static_cast<size_t>(n));
      }
      if (options_.slow_reader) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    eof_ = true;
  }

  Options options_;
  int listen_fd_ = -1;
  int conn_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false}, upgraded_{false}, eof_{false}, reading_{true};
  std::mutex mutex_;
  std::string frames_;
};

}  // namespace portico::test
