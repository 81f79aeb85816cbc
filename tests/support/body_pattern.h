#pragma once

// A deterministic body pattern and a streaming hash, so that tests can move bodies of any size
// (up to GiBs) through the proxy and check them on the other side without keeping them in memory.
//
// The pattern is 64-byte lines: the line number in 16 hex digits, a space, 46 letters that shift
// with the line number, a newline. A dropped, duplicated or reordered piece is visible in a hex
// dump, and any shift changes the hash.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace portico::test {

char pattern_byte(uint64_t index);
// Writes pattern bytes [offset, offset + size) to out.
void pattern_fill(uint64_t offset, char* out, size_t size);
std::string pattern_string(uint64_t offset, size_t size);

// An order-sensitive 64-bit hash over a byte stream fed in pieces of any size; the result depends
// only on the bytes, not on how they were split.
class BodyHash {
 public:
  void update(std::string_view data);
  uint64_t value() const;
  uint64_t size() const { return size_; }

 private:
  uint64_t state_ = 0x9e3779b97f4a7c15ULL;
  uint64_t partial_ = 0;  // bytes of an incomplete 8-byte word, little-endian
  unsigned partial_len_ = 0;
  uint64_t size_ = 0;
};

uint64_t hash_bytes(std::string_view data);
// hash_bytes(pattern_string(0, size)) without building the string.
uint64_t pattern_hash(uint64_t size);
// Hash of a file's contents (e.g. what curl -o wrote); also returns its size.
uint64_t hash_file(const std::string& path, uint64_t* size = nullptr);

}  // namespace portico::test
