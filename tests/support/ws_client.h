#pragma once

// A blocking WebSocket test client on wslay, over TLS (OpenSSL) or plain TCP.
//
// One WsClient is used from one thread at a time. Every call that waits is bounded by the
// options' timeout (or the timeout it is given). Incoming bytes are read whenever the client
// waits, also while it writes, so that a test that sends a large message to an echo server
// cannot deadlock with it.
//
// The handshake code (key, Sec-WebSocket-Accept check) is independent of portico's own
// proxy/ws_frames.cc on purpose: the client must not share the bugs of the proxy it tests.

#include <openssl/ssl.h>
#include <wslay/wslay.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portico::test {

struct WsClientOptions {
  std::string host = "localhost";  // a name or an IP literal; also the SNI and verified name
  uint16_t port = 0;
  bool tls = true;
  std::string ca_file;      // the CA to trust over TLS; empty: the system's default paths
  int max_tls_version = 0;  // e.g. TLS1_2_VERSION; 0: the newest both sides have
  std::string path = "/ws";
  std::vector<std::pair<std::string, std::string>> extra_headers;
  std::string origin;  // sent as Origin unless empty
  std::chrono::milliseconds timeout{10000};
  // receive() also returns Ping and Pong frames (Close frames are always returned).
  bool surface_control_frames = false;
};

struct WsMessage {
  uint8_t opcode;    // 1 text, 2 binary, 8 close (data = 2-byte code + reason), 9 ping, 10 pong
  std::string data;  // unmasked, reassembled payload
};

class WsClient {
 public:
  // Connects and performs the opening handshake. Never returns null: on failure ok() is false,
  // and status(), response_head() and error() say why (status() is 0 when no response came).
  static std::unique_ptr<WsClient> connect(const WsClientOptions& options);
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  bool ok() const { return ok_; }
  int status() const { return status_; }
  const std::string& response_head() const { return response_head_; }
  const std::string& error() const { return error_; }
  // The ALPN protocol the TLS server selected ("" over plain TCP or when none was selected).
  const std::string& alpn() const { return alpn_; }

  // Each sends one message in one frame; false when the connection is no longer writable.
  bool send_text(std::string_view text);
  bool send_binary(std::string_view data);
  // The first fragment with `opcode`, the others as continuations (FIN on the last); with
  // ping_between, a Ping ("frag") is sent between each two fragments (RFC 6455 5.4 allows it).
  bool send_fragmented(uint8_t opcode, const std::vector<std::string>& fragments,
                       bool ping_between = false);
  bool send_ping(std::string_view payload);
  // Writes bytes as they are, e.g. an unmasked frame built with encode_frame(), for
  // protocol-violation tests.
  bool send_raw(std::string_view bytes);

  // The next data message, or a Close (always), or a Ping/Pong (with surface_control_frames).
  // nullopt on timeout or when the connection ended without a further message.
  std::optional<WsMessage> receive(std::chrono::milliseconds timeout);

  // The next `n` bytes as they arrive, not parsed as frames (fewer on timeout or EOF): for frames
  // wslay would refuse, such as RSV1 ones of an extension it does not implement. Bytes read this
  // way never reach receive().
  std::string receive_raw(size_t n, std::chrono::milliseconds timeout);

  // Sends a Close, then waits (up to the options' timeout) for the peer's Close. True when the
  // close handshake completed: the peer answered with a Close.
  bool close(uint16_t code = 1000, std::string_view reason = "");
  // 0 until a Close arrived; 1005 if it carried no code.
  uint16_t peer_close_code() const { return peer_close_code_; }
  std::string peer_close_reason() const { return peer_close_reason_; }
  // Waits until the peer's Close arrived or the connection reached EOF; data messages that arrive
  // meanwhile stay queued for receive().
  bool wait_peer_closed(std::chrono::milliseconds timeout);
  bool peer_sent_eof() const { return eof_; }
  // Drops the connection with a TCP reset (SO_LINGER 0): no Close, no close_notify, no FIN.
  void reset();

  // One frame: FIN per `fin`, masked with a random key when `mask` (clients must mask).
  static std::string encode_frame(uint8_t opcode, bool fin, std::string_view payload,
                                  bool mask = true);

 private:
  using Clock = std::chrono::steady_clock;
  WsClient() = default;

  bool open(const WsClientOptions& options);
  bool handshake(const WsClientOptions& options, Clock::time_point deadline);
  // Raw I/O on the (non-blocking) socket, through TLS when enabled.
  bool write_all(std::string_view data, Clock::time_point deadline);
  // Reads what is available (waiting until the deadline for the first byte) into rx_. False on
  // timeout, EOF or error.
  bool read_some(Clock::time_point deadline);
  // Non-blocking read of whatever is available now into rx_ (used while writing).
  void drain_readable();
  // Feeds rx_ to wslay and sends what wslay queued in reply (Pong, Close).
  void process_input();
  bool queue_and_send(uint8_t opcode, std::string_view data);
  bool flush_wslay();
  bool wait_for(Clock::time_point deadline, const std::function<bool()>& done);

  static ssize_t on_recv(wslay_event_context_ptr, uint8_t* buf, size_t len, int, void* user);
  static ssize_t on_send(wslay_event_context_ptr, const uint8_t* data, size_t len, int, void* user);
  static int on_genmask(wslay_event_context_ptr, uint8_t* buf, size_t len, void* user);
  static void on_msg(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* arg, void* user);

  int fd_ = -1;
  SSL_CTX* ssl_ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  wslay_event_context_ptr ws_ = nullptr;
  std::chrono::milliseconds timeout_{10000};
  bool surface_control_ = false;

  bool ok_ = false;
  int status_ = 0;
  std::string response_head_;
  std::string error_;
  std::string alpn_;

  std::string rx_;  // received bytes not yet given to wslay
  size_t rx_pos_ = 0;
  std::deque<WsMessage> inbox_;
  bool eof_ = false;
  bool io_error_ = false;
  uint16_t peer_close_code_ = 0;
  std::string peer_close_reason_;
  Clock::time_point send_deadline_;
};

}  // namespace portico::test
