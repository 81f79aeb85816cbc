// api_server: the example API backend behind portico, and the fast origin for the benchmarks.
// A single-threaded libuv HTTP/1.1 server; see README's demo and http_connection.h.
//
//   api_server [--listen ADDR] --port N [--static DIR] [--quiet]

#include <uv.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "examples/api_server/http_connection.h"

namespace {

using portico::examples::HttpConnection;
using portico::examples::ServerContext;

struct Server {
  ServerContext context;
  uv_tcp_t listener;
  uv_signal_t sigint, sigterm;
  bool stopping = false;
};

const char kUsage[] =
    "usage: api_server [--listen ADDR] --port N [--static DIR] [--quiet]\n"
    "  --listen ADDR  address to listen on (default 127.0.0.1; e.g. ::1, 0.0.0.0)\n"
    "  --port N       port (0 picks a free one; the real port is printed)\n"
    "  --static DIR   serve other GET paths from DIR (index.html for /)\n"
    "  --quiet        no per-request log lines on stderr\n";

void on_connection(uv_stream_t* listener, int status) {
  if (status < 0) return;  // e.g. EMFILE: the next accept may work
  auto* server = static_cast<Server*>(listener->data);
  HttpConnection::accept_from(listener, &server->context);
}

void on_signal(uv_signal_t* handle, int) {
  auto* server = static_cast<Server*>(handle->data);
  if (server->stopping) return;
  server->stopping = true;
  // Closing every handle lets uv_run return, so main exits 0 through the normal path.
  uv_close(reinterpret_cast<uv_handle_t*>(&server->listener), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&server->sigint), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&server->sigterm), nullptr);
  for (HttpConnection* c = server->context.first; c != nullptr; c = c->next()) c->close();
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen_addr = "127.0.0.1";
  long port = -1;
  auto server = std::make_unique<Server>();
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--listen" && has_value) {
      listen_addr = argv[++i];
    } else if (arg == "--port" && has_value) {
      char* end;
      port = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || port < 0 || port > 65535) port = -2;
    } else if (arg == "--static" && has_value) {
      server->context.static_dir = argv[++i];
      while (server->context.static_dir.size() > 1 && server->context.static_dir.back() == '/') {
        server->context.static_dir.pop_back();
      }
    } else if (arg == "--quiet") {
      server->context.quiet = true;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "api_server: unknown or incomplete option %s\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (port < 0) {
    std::fprintf(stderr, "api_server: --port N (0-65535) is required\n%s", kUsage);
    return 2;
  }
  // A client that closes early must cost us a write error, not the process.
  std::signal(SIGPIPE, SIG_IGN);

  uv_loop_t* loop = uv_default_loop();
  sockaddr_storage addr;
  bool v6 = listen_addr.find(':') != std::string::npos;
  int rc = v6 ? uv_ip6_addr(listen_addr.c_str(), static_cast<int>(port),
                            reinterpret_cast<sockaddr_in6*>(&addr))
              : uv_ip4_addr(listen_addr.c_str(), static_cast<int>(port),
                            reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) {
    std::fprintf(stderr, "api_server: bad --listen address %s\n", listen_addr.c_str());
    return 2;
  }
  uv_tcp_init(loop, &server->listener);
  server->listener.data = server.get();
  rc = uv_tcp_bind(&server->listener, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server->listener), 1024, on_connection);
  }
  if (rc != 0) {
    std::fprintf(stderr, "api_server: cannot listen on %s:%ld: %s\n", listen_addr.c_str(), port,
                 uv_strerror(rc));
    return 1;
  }
  sockaddr_storage bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&server->listener, reinterpret_cast<sockaddr*>(&bound), &len);
  int real_port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  std::pair<uv_signal_t*, int> signals[] = {{&server->sigint, SIGINT}, {&server->sigterm, SIGTERM}};
  for (auto [handle, signo] : signals) {
    uv_signal_init(loop, handle);
    handle->data = server.get();
    uv_signal_start(handle, on_signal, signo);
  }

  std::printf("api_server listening on %s%s%s:%d\n", v6 ? "[" : "", listen_addr.c_str(),
              v6 ? "]" : "", real_port);
  std::fflush(stdout);

  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return 0;
}
