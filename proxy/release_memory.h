#pragma once

// Giving memory back from a string or container that stays in use.

#include <utility>

namespace portico {

// Frees what `value` holds, leaving it empty. `value = T()` does not do this for std::string:
// libstdc++'s move assignment from a short (in-place) string copies the characters into the
// buffer it already has and keeps that buffer. Swapping with a fresh value hands the buffer to
// a temporary that frees it.
template <class T>
void release_memory(T& value) {
  T empty{};
  using std::swap;
  swap(value, empty);
}

}  // namespace portico
