#pragma once

// Writes to a libuv stream: tries the socket first (uv_try_write), and only what the kernel did
// not take is copied into a queued uv_write. queued() is what backpressure decisions read.

#include <uv.h>

#include <cstddef>
#include <string>

namespace portico {

// One shared receive buffer per loop: every read callback consumes its bytes before returning,
// so a single buffer serves all of the loop's connections (no per-connection read buffer).
struct LoopBuffers {
  static constexpr size_t kReadSize = 64 * 1024;
  char read[kReadSize];
  char plaintext[kReadSize];
};
LoopBuffers& loop_buffers(uv_loop_t* loop);  // loop->data must point at a LoopBuffers
void alloc_from_loop_buffer(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);

// Backpressure marks for every per-direction buffer: above the high mark the other side's reads
// stop; they resume once the queue drains below the low mark.
constexpr size_t kWriteHighWater = 256 * 1024;
constexpr size_t kWriteLowWater = 64 * 1024;

class StreamWriter {
 public:
  // Notified when a queued write completes (status < 0: the write failed or was cancelled).
  class Owner {
   public:
    virtual void on_write_done(int status) = 0;

   protected:
    ~Owner() = default;
  };

  void init(uv_stream_t* stream, Owner* owner) {
    stream_ = stream;
    owner_ = owner;
  }

  // Writes the buffers in order. Returns 0, or a negative uv error when the socket is gone.
  int write(const uv_buf_t* bufs, unsigned count);
  int write(const char* data, size_t len) {
    uv_buf_t buf = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
    return write(&buf, 1);
  }
  // Writes `data`, taking its memory without a copy when it has to be queued.
  int write_owned(std::string&& data);

  size_t queued() const { return queued_; }

 private:
  struct QueuedWrite;
  static void on_write(uv_write_t* req, int status);
  int queue(std::string&& data);

  uv_stream_t* stream_ = nullptr;
  Owner* owner_ = nullptr;
  size_t queued_ = 0;
};

}  // namespace portico
