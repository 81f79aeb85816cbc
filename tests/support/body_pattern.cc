#include "tests/support/body_pattern.h"

#include <cstring>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace portico::test {

namespace {

constexpr uint64_t kLine = 64;
constexpr char kHex[] = "0123456789abcdef";

void fill_line(uint64_t line, char* out) {
  for (int i = 0; i < 16; ++i) out[i] = kHex[(line >> (60 - 4 * i)) & 0xf];
  out[16] = ' ';
  for (int i = 17; i < 63; ++i) out[i] = static_cast<char>('a' + (line + i) % 26);
  out[63] = '\n';
}

uint64_t mix(uint64_t state, uint64_t word) {
  state ^= word;
  state *= 0xff51afd7ed558ccdULL;
  state ^= state >> 29;
  return state;
}

}  // namespace

char pattern_byte(uint64_t index) {
  char line[kLine];
  fill_line(index / kLine, line);
  return line[index % kLine];
}

void pattern_fill(uint64_t offset, char* out, size_t size) {
  char line[kLine];
  while (size > 0) {
    uint64_t col = offset % kLine;
    size_t n = static_cast<size_t>(std::min<uint64_t>(kLine - col, size));
    if (col == 0 && n == kLine) {
      fill_line(offset / kLine, out);
    } else {
      fill_line(offset / kLine, line);
      memcpy(out, line + col, n);
    }
    out += n;
    offset += n;
    size -= n;
  }
}

std::string pattern_string(uint64_t offset, size_t size) {
  std::string out(size, '\0');
  pattern_fill(offset, out.data(), size);
  return out;
}

void BodyHash::update(std::string_view data) {
  size_ += data.size();
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  while (n > 0 && partial_len_ != 0) {
    partial_ |= static_cast<uint64_t>(*p++) << (8 * partial_len_);
    --n;
    if (++partial_len_ == 8) {
      state_ = mix(state_, partial_);
      partial_ = 0;
      partial_len_ = 0;
    }
  }
  while (n >= 8) {
    uint64_t word;
    memcpy(&word, p, 8);  // little-endian host (x86-64, arm64), as the partial path assumes
    state_ = mix(state_, word);
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    partial_ |= static_cast<uint64_t>(*p++) << (8 * partial_len_++);
    --n;
  }
}

uint64_t BodyHash::value() const {
  uint64_t s = mix(state_, partial_);
  return mix(s, size_);
}

uint64_t hash_bytes(std::string_view data) {
  BodyHash h;
  h.update(data);
  return h.value();
}

uint64_t pattern_hash(uint64_t size) {
  // Tests ask for the same few sizes repeatedly; a GiB takes a while to hash.
  static std::mutex mutex;
  static std::unordered_map<uint64_t, uint64_t> cache;
  {
    std::lock_guard lock(mutex);
    if (auto it = cache.find(size); it != cache.end()) return it->second;
  }
  BodyHash h;
  std::vector<char> buf(1 << 16);
  for (uint64_t off = 0; off < size; off += buf.size()) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
    pattern_fill(off, buf.data(), n);
    h.update(std::string_view(buf.data(), n));
  }
  std::lock_guard lock(mutex);
  cache[size] = h.value();
  return h.value();
}

uint64_t hash_file(const std::string& path, uint64_t* size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  BodyHash h;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(std::string_view(buf.data(), static_cast<size_t>(in.gcount())));
  }
  if (size) *size = h.size();
  return h.value();
}

}  // namespace portico::test
