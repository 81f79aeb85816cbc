// first_byte: how long a client on a slow link waits for the first byte of a response body (S9
// of the benchmark suite, tests/bench/run.sh).
//
//   first_byte --host H --port N [--sni NAME] [--path P] [--rate BYTES_PER_S] [--trials K]
//   -> result mode=first_byte trials=K rate=R p50_ms=A max_ms=B p50_bytes=C max_bytes=D
//
// Each trial opens a new TLS connection (handshake at full speed), sends "GET PATH", and then
// takes the ciphertext off the socket no faster than RATE bytes per second, as a link of that
// speed would deliver it, until the first byte of the body can be decrypted. A TLS record opens
// only once all of it has arrived, so the wait is set by where the record holding the first body
// byte ends: *_bytes is the ciphertext that had to arrive (after the request was sent), *_ms the
// time it took. The connection is then dropped (RST).

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  std::string port;
  std::string sni = "localhost";
  std::string path = "/bytes/1048576";
  double rate = 1.25e6;  // 10 Mbit/s
  int trials = 20;
};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "first_byte: %s\n", what.c_str());
  ERR_print_errors_fp(stderr);
  std::exit(1);
}

int connect_to(const Options& o) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(o.host.c_str(), o.port.c_str(), &hints, &res) != 0) fail("cannot resolve");
  int fd = socket(res->ai_family, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) fail("cannot connect");
  freeaddrinfo(res);
  return fd;
}

void send_all(int fd, BIO* out) {
  char buf[16384];
  int n;
  while ((n = BIO_read(out, buf, sizeof buf)) > 0) {
    for (int off = 0; off < n;) {
      ssize_t w = send(fd, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
      if (w <= 0) fail("send failed");
      off += static_cast<int>(w);
    }
  }
}

// Reads at most `cap` bytes that are already there or arrive within 100 ms into `in`.
size_t receive(int fd, BIO* in, size_t cap) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 100) <= 0) return 0;
  char buf[65536];
  ssize_t n = recv(fd, buf, std::min(cap, sizeof buf), 0);
  if (n <= 0) fail("the proxy closed the connection");
  BIO_write(in, buf, static_cast<int>(n));
  return static_cast<size_t>(n);
}

struct Trial {
  double ms;
  size_t bytes;
};

Trial one_trial(SSL_CTX* ctx, const Options& o) {
  int fd = connect_to(o);
  SSL* ssl = SSL_new(ctx);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, in, out);
  SSL_set_tlsext_host_name(ssl, o.sni.c_str());
  SSL_set_connect_state(ssl);
  for (;;) {
    int rc = SSL_do_handshake(ssl);
    send_all(fd, out);
    if (rc == 1) break;
    if (SSL_get_error(ssl, rc) != SSL_ERROR_WANT_READ) fail("handshake failed");
    receive(fd, in, 65536);
  }
  std::string request = "GET " + o.path + " HTTP/1.1\r\nHost: " + o.sni + "\r\n\r\n";
  SSL_write(ssl, request.data(), static_cast<int>(request.size()));
  send_all(fd, out);

  const Clock::time_point start = Clock::now();
  const Clock::time_point give_up = start + std::chrono::seconds(10);
  size_t received = 0;
  std::string plain;
  char buf[65536];
  for (;;) {
    if (Clock::now() > give_up) fail("no body within 10 s");
    // The link's budget so far; wait for it to grow by at least one segment.
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    size_t budget = static_cast<size_t>(elapsed * o.rate);
    if (budget < received + 1448) {
      double wait_s = static_cast<double>(received + 1448 - budget) / o.rate;
      timespec ts{0, static_cast<long>(wait_s * 1e9)};
      nanosleep(&ts, nullptr);
      continue;
    }
    received += receive(fd, in, budget - received);
    int n;
    while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) plain.append(buf, static_cast<size_t>(n));
    size_t head_end = plain.find("\r\n\r\n");
    if (head_end != std::string::npos && plain.size() > head_end + 4) {
      if (plain.compare(0, 12, "HTTP/1.1 200") != 0)
        fail("unexpected answer: " + plain.substr(0, 40));
      break;
    }
  }
  Trial t{std::chrono::duration<double, std::milli>(Clock::now() - start).count(), received};
  linger reset{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  close(fd);
  SSL_free(ssl);
  return t;
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: first_byte --host H --port N [--sni NAME] [--path P] [--rate BYTES_PER_S]"
               " [--trials K]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) usage();
    std::string value = argv[++i];
    if (arg == "--host") {
      o.host = value;
    } else if (arg == "--port") {
      o.port = value;
    } else if (arg == "--sni") {
      o.sni = value;
    } else if (arg == "--path") {
      o.path = value;
    } else if (arg == "--rate") {
      o.rate = std::atof(value.c_str());
    } else if (arg == "--trials") {
      o.trials = std::atoi(value.c_str());
    } else {
      usage();
    }
  }
  if (o.port.empty() || o.rate <= 0 || o.trials <= 0) usage();

  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  std::vector<Trial> trials;
  for (int i = 0; i < o.trials; ++i) trials.push_back(one_trial(ctx, o));
  auto median = [&](auto key) {
    std::vector<double> v;
    for (const Trial& t : trials) v.push_back(key(t));
    std::sort(v.begin(), v.end());
    return std::make_pair(v[v.size() / 2], v.back());
  };
  auto [ms50, ms_max] = median([](const Trial& t) { return t.ms; });
  auto [bytes50, bytes_max] = median([](const Trial& t) { return static_cast<double>(t.bytes); });
  std::printf(
      "result mode=first_byte trials=%d rate=%.0f p50_ms=%.2f max_ms=%.2f p50_bytes=%.0f"
      " max_bytes=%.0f\n",
      o.trials, o.rate, ms50, ms_max, bytes50, bytes_max);
  SSL_CTX_free(ctx);
  return 0;
}
