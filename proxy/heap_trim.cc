#include "proxy/heap_trim.h"

#include "proxy/heap_usage.h"
#include "proxy/log.h"

namespace portico {

HeapTrimmer::HeapTrimmer(uv_loop_t* loop) {
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));  // never keeps a stopping worker alive
}

void HeapTrimmer::connections_now(size_t open) {
  open_ = open;
  if (open > peak_) peak_ = open;
  auto* handle = reinterpret_cast<uv_handle_t*>(&timer_);
  // Closing: the worker is being torn down and its connections end with it.
  if (peak_ >= kMinPeakConnections && open <= peak_ / 2 && !uv_is_active(handle) &&
      !uv_is_closing(handle)) {
    uv_timer_start(&timer_, &HeapTrimmer::on_settled, kSettleMs, 0);
  }
}

void HeapTrimmer::on_settled(uv_timer_t* timer) {
  auto* self = static_cast<HeapTrimmer*>(timer->data);
  if (self->open_ > self->peak_ / 2) return;  // the crowd came back: its memory is in use
  const uint64_t resident_before = resident_bytes();
  return_free_heap();
  const uint64_t resident_after = resident_bytes();
  const uint64_t returned = resident_before > resident_after ? resident_before - resident_after : 0;
  log_info("memory", "returned free heap to the kernel kib=", returned / 1024,
           " connections=", self->open_, " peak=", self->peak_);
  self->peak_ = self->open_;
}

}  // namespace portico
