#pragma once
// Gives freed heap back to the kernel once a crowd of connections has left. glibc keeps the
// pages of freed chunks resident for reuse (only the very top of a heap is ever trimmed), so
// after a spike of 10,000 connections a portico would otherwise stay at its peak resident size
// for the rest of its life (about 170 MiB for that spike), although it then needs a few.
//
// The rule: when the open connections have fallen to half of their peak or less (and that peak
// was a crowd, kMinPeakConnections or more), wait kSettleMs; if they are still at half or less,
// return what the allocator holds free (malloc_trim) and log one line. The wait lets a crowd
// that comes straight back find its memory still there, and keeps the heap walk off the path
// of closing connections.

#include <uv.h>

#include <cstddef>
#include <cstdint>

namespace portico {

class HeapTrimmer {
 public:
  static constexpr size_t kMinPeakConnections = 1000;  // about 17 MiB of idle connections
  static constexpr uint64_t kSettleMs = 5000;

  // The timer is closed with the loop's other handles (Worker's destructor walks them).
  explicit HeapTrimmer(uv_loop_t* loop);
  HeapTrimmer(const HeapTrimmer&) = delete;
  HeapTrimmer& operator=(const HeapTrimmer&) = delete;

  // The worker's open connections after one opened or closed.
  void connections_now(size_t open);

 private:
  static void on_settled(uv_timer_t* timer);

  uv_timer_t timer_;
  size_t open_ = 0;
  size_t peak_ = 0;  // the most open at once since the last trim
};

}  // namespace portico
