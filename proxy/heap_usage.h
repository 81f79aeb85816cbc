#pragma once
// How much memory the process's allocator has handed out and not taken back: the heap portico,
// OpenSSL, libuv and libc hold right now. Unlike the resident size it falls when memory is
// freed (glibc keeps freed pages for reuse, so RSS does not), which is what /metrics reports
// as portico_heap_bytes and what tests check when idle connections give their buffers back.

#include <cstdint>

namespace portico {

// Process-wide, every thread's arena included. Costs a walk over the allocator's free lists:
// meant for a metrics scrape, not for a hot path.
uint64_t heap_bytes_in_use();

// Hands the pages the allocator holds free back to the kernel (glibc's malloc_trim, every
// arena; the sanitizer allocator's purge under ASan; nothing under TSan, whose runtime has no
// purge). Walks the heap: for rare events.
void return_free_heap();

// The process's resident size (/proc/self/statm), or 0 if it cannot be read.
uint64_t resident_bytes();

}  // namespace portico
