#include "proxy/heap_usage.h"

// Under ASan or TSan the sanitizer's allocator replaces glibc's, and mallinfo2 knows nothing
// of it; the sanitizer answers the same question itself.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PORTICO_SANITIZER_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PORTICO_SANITIZER_ALLOCATOR 1
#endif
#endif

#ifdef PORTICO_SANITIZER_ALLOCATOR
#include <cstddef>
// Declared here rather than through <sanitizer/allocator_interface.h>, which clang's runtime
// package ships and gcc's does not; both runtimes define it.
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#else
#include <malloc.h>
#endif

namespace portico {

uint64_t heap_bytes_in_use() {
#ifdef PORTICO_SANITIZER_ALLOCATOR
  return __sanitizer_get_current_allocated_bytes();
#else
  // uordblks: bytes in use in every arena's heap; hblkhd: chunks too large for a heap, which
  // glibc maps on their own.
  const struct mallinfo2 info = mallinfo2();
  return static_cast<uint64_t>(info.uordblks) + static_cast<uint64_t>(info.hblkhd);
#endif
}

}  // namespace portico
