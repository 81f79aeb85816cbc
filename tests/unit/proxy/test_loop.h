#pragma once

// A libuv loop as a worker's: it carries LoopBuffers in loop->data (StreamWriter and the
// upstream connections gather their writes there). On destruction every handle still open is
// closed (close_every_handle, as Worker's shutdown does) before the loop is.

#include <uv.h>

#include <catch2/catch.hpp>
#include <memory>

#include "proxy/stream_writer.h"
#include "proxy/worker.h"

namespace portico::test {

class TestLoop {
 public:
  TestLoop() {
    uv_loop_init(&loop_);
    loop_.data = buffers_.get();
    buffers_->batch.start(&loop_);
  }
  ~TestLoop() {
    close_all();
    CHECK(uv_loop_close(&loop_) == 0);
  }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  uv_loop_t* get() { return &loop_; }
  // Closes every handle still open and runs the close callbacks. An owner whose handles are
  // its own members calls this from its destructor, while they are still alive.
  void close_all() { close_every_handle(&loop_); }

 private:
  uv_loop_t loop_;
  std::unique_ptr<LoopBuffers> buffers_ = std::make_unique<LoopBuffers>();
};

}  // namespace portico::test
