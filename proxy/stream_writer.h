#pragma once

// Writes to a libuv stream. Small writes made while the loop handles an event are gathered per
// stream and sent with one syscall when the event is handled (WriteBatch): the read callbacks
// of the proxied streams end with flush_gathered_writes(), and what timers and write
// completions gather goes out once the loop has handled the poll. So a response head and its
// first body bytes, or a TLS handshake flight, leave in one write. Large writes go to the
// socket at once (uv_try_write); only what the kernel did not take is copied into a queued
// uv_write. queued() counts both and is what backpressure decisions read.

#include <uv.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace portico {

class StreamWriter;

// Backpressure marks for every per-direction buffer: above the high mark the other side's reads
// stop; they resume once the queue drains below the low mark (a quarter of the high one).
// --max-buffer sets the high mark per worker (LoopBuffers::write_high_water).
constexpr size_t kDefaultWriteHighWater = 256 * 1024;

// The writers of one loop that hold gathered bytes, and the handles that flush what no read
// callback flushed: a check handle (right after the loop polled for I/O) and a prepare handle
// (right before the loop blocks, for bytes written from timers and close callbacks). They keep
// the loop alive only while some writer holds gathered bytes.
// Gather blocks come from free lists, so an idle connection holds no write buffer and a busy
// one does not allocate per message. Most gathers are small (a redirect, a WebSocket message,
// a response head), so a writer starts with a small block and moves to a large one only when
// its bytes outgrow it.
class WriteBatch {
 public:
  static constexpr size_t kBlockSize = 16 * 1024;  // the most one writer gathers
  static constexpr size_t kSmallBlockSize = 2 * 1024;

  WriteBatch() = default;
  WriteBatch(const WriteBatch&) = delete;
  WriteBatch& operator=(const WriteBatch&) = delete;

  // Starts the flush handles on `loop`; they are closed with the loop's other handles.
  void start(uv_loop_t* loop);
  void add(StreamWriter* writer);
  void remove(StreamWriter* writer);
  // Sends what every writer gathered; a write made while flushing is sent in the same pass.
  void flush_all();

  // A block of `size` bytes: kSmallBlockSize or kBlockSize.
  char* take_block(size_t size);
  void give_block(char* block, size_t size);

 private:
  std::vector<std::unique_ptr<char[]>>& free_list(size_t size);
  static void on_check(uv_check_t* handle);
  static void on_prepare(uv_prepare_t* handle);

  uv_check_t check_{};
  uv_prepare_t prepare_{};
  StreamWriter* head_ = nullptr;
  std::vector<std::unique_ptr<char[]>> free_small_;
  std::vector<std::unique_ptr<char[]>> free_large_;
};

// One shared receive buffer per loop: every read callback consumes its bytes before returning,
// so a single buffer serves all of the loop's connections (no per-connection read buffer).
struct LoopBuffers {
  static constexpr size_t kReadSize = 64 * 1024;
  char read[kReadSize];
  char plaintext[kReadSize];
  WriteBatch batch;
  size_t write_high_water = kDefaultWriteHighWater;  // set before any stream is written
};
LoopBuffers& loop_buffers(uv_loop_t* loop);  // loop->data must point at a LoopBuffers
// Sends what the event being handled gathered: the last call of a read callback. Not waiting
// for the rest of the poll matters under many connections: a poll that returns fifty
// WebSocket messages would otherwise hold the first one's write until the fiftieth had been
// read and decrypted, and would wake every peer in one burst (docs/performance.md, S5 p99).
inline void flush_gathered_writes(uv_loop_t* loop) { loop_buffers(loop).batch.flush_all(); }
void alloc_from_loop_buffer(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);

class StreamWriter {
 public:
  // Notified when queued or gathered bytes have been handed to the kernel (status 0) or could
  // not be (status < 0: the write failed or was cancelled).
  class Owner {
   public:
    virtual void on_write_done(int status) = 0;

   protected:
    ~Owner() = default;
  };

  StreamWriter() = default;
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;
  ~StreamWriter();

  // The stream's loop must carry LoopBuffers in loop->data (its batch gathers the writes).
  void init(uv_stream_t* stream, Owner* owner);

  // Writes the buffers in order. Returns 0, or a negative uv error when the socket is gone;
  // an error found while flushing gathered bytes is reported through Owner::on_write_done.
  int write(const uv_buf_t* bufs, unsigned count);
  int write(const char* data, size_t len) {
    uv_buf_t buf = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
    return write(&buf, 1);
  }
  // Writes `data`, taking its memory without a copy when it has to be queued. `data` is left
  // empty (with its capacity, when the bytes were copied).
  int write_owned(std::string&& data);

  size_t queued() const { return queued_ + gathered_; }
  // Backpressure: above the high mark the other side's reads stop; below the low mark they
  // may start again.
  bool above_high_water() const { return queued() > high_water_; }
  bool below_low_water() const { return queued() <= high_water_ / 4; }

  // For the owner about to close the stream: offers the gathered bytes to the socket once (as
  // a write made just before the close would have been) and drops what it does not take.
  void flush_before_close();

 private:
  friend class WriteBatch;
  struct QueuedWrite;
  static void on_write(uv_write_t* req, int status);
  int queue(std::string&& data);
  // Tries the socket with the gathered bytes followed by `bufs`, and queues what it left.
  int send_now(const uv_buf_t* bufs, unsigned count, size_t total);
  void gather(const uv_buf_t* bufs, unsigned count, size_t total);
  void flush();
  void drop_gathered();

  uv_stream_t* stream_ = nullptr;
  Owner* owner_ = nullptr;
  WriteBatch* batch_ = nullptr;
  size_t queued_ = 0;
  size_t high_water_ = kDefaultWriteHighWater;
  char* block_ = nullptr;  // gathered bytes, from batch_'s free lists
  size_t block_size_ = 0;
  size_t gathered_ = 0;
  StreamWriter* batch_prev_ = nullptr;
  StreamWriter* batch_next_ = nullptr;
  bool in_batch_ = false;
};

}  // namespace portico
