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
// ASan has it, TSan (clang 14) does not: weak, and called only where it exists.
extern "C" void __sanitizer_purge_allocator() __attribute__((weak));
#else
#include <malloc.h>
#endif

#include <unistd.h>

#include <cstdio>

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

void return_free_heap() {
#ifdef PORTICO_SANITIZER_ALLOCATOR
  if (__sanitizer_purge_allocator) __sanitizer_purge_allocator();
#else
  malloc_trim(0);
#endif
}

uint64_t resident_bytes() {
  std::FILE* statm = std::fopen("/proc/self/statm", "r");
  if (!statm) return 0;
  unsigned long long size_pages = 0;
  unsigned long long resident_pages = 0;
  const int fields = std::fscanf(statm, "%llu %llu", &size_pages, &resident_pages);
  std::fclose(statm);
  if (fields != 2) return 0;
  return resident_pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace portico
