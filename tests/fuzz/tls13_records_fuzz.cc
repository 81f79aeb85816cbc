// libFuzzer target for Tls13Records::open, portico's TLS 1.3 record layer after the hand-over
// from OpenSSL. Two ends share fixed traffic secrets: a "client" seals the input's chunks as
// records, the stream may be damaged in one byte, and the "server" opens it in pieces of
// fuzzer-chosen sizes. A second run feeds the raw input itself as ciphertext.
//
// Invariants checked: an undamaged stream opens to exactly the chunks sealed, in order, ending
// in kClosed when a close_notify was sealed last and kNeedMore otherwise, whatever the split;
// a damaged stream never yields bytes that were not sealed (the AEAD tag), and once open()
// says kError nothing more comes out; raw input never crashes nor yields more than 2^14 bytes
// per record; open() never consumes more input than it was given.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "tls/tls13_records.h"

namespace {

using portico::Tls13Records;

void check(bool ok) {
  if (!ok) std::abort();
}

Tls13Records::TrafficSecret secret(uint8_t fill, uint8_t len) {
  Tls13Records::TrafficSecret s;
  std::memset(s.bytes, fill, sizeof s.bytes);
  s.len = len;
  return s;
}

uint16_t suite_of(uint8_t knob) {
  static const uint16_t kSuites[] = {0x1301, 0x1302, 0x1303};
  return kSuites[knob % 3];
}

struct Opened {
  std::string data;
  Tls13Records::Status last = Tls13Records::Status::kNeedMore;
};

// Opens `stream` in pieces whose sizes come from `rng_seed`, as a socket's reads would.
Opened open_all(Tls13Records& server, const std::string& stream, uint32_t rng_seed) {
  Opened result;
  std::vector<char> out(Tls13Records::kMaxCiphertext);
  uint32_t rng = rng_seed;
  size_t pos = 0;
  while (pos < stream.size()) {
    rng = rng * 1664525u + 1013904223u;
    size_t n = std::min<size_t>(stream.size() - pos, 1 + (rng >> 12) % 20000);
    std::string_view input(stream.data() + pos, n);
    pos += n;
    for (;;) {
      const size_t before = input.size();
      size_t got = 0;
      Tls13Records::Status status = server.open(&input, out.data(), &got);
      check(input.size() <= before);
      result.last = status;
      if (status == Tls13Records::Status::kData) {
        check(got > 0 && got <= Tls13Records::kMaxPlaintext);
        result.data.append(out.data(), got);
        continue;
      }
      if (status == Tls13Records::Status::kNeedMore) {
        check(input.empty());
        break;
      }
      return result;  // kClosed or kError: nothing more is read
    }
  }
  return result;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint8_t knobs = data[0];
  const uint16_t suite = suite_of(data[1]);
  const uint8_t secret_len = suite == 0x1302 ? 48 : 32;
  const uint32_t seed = static_cast<uint32_t>(data[2]) * 2654435761u + static_cast<uint32_t>(size);
  const uint8_t damage_at = data[3];
  data += 4;
  size -= 4;

  // The client's secret is what the server reads with, and the other way round.
  const auto client_secret = secret(0xC1, secret_len);
  const auto server_secret = secret(0x5E, secret_len);
  auto server = Tls13Records::make(suite, client_secret, server_secret);
  auto client = Tls13Records::make(suite, server_secret, client_secret);
  check(server && client);

  // The input in chunks: each chunk's first byte is its length (0..255) times a factor from
  // the knobs, so that records from empty to the 16 KiB maximum occur.
  std::string sealed_stream;
  std::string sealed_data;
  const size_t factor = 1 + (knobs & 0x3F);
  size_t pos = 0;
  int empty_in_a_row = 0;  // more than 32 in a row are refused (OpenSSL's limit), as intended
  while (pos < size) {
    size_t len =
        std::min<size_t>(static_cast<size_t>(data[pos]) * factor, Tls13Records::kMaxPlaintext);
    ++pos;
    std::string chunk;
    while (chunk.size() < len && pos < size) chunk.push_back(static_cast<char>(data[pos++]));
    if (chunk.empty() && ((knobs & 0x40) == 0 || empty_in_a_row == 32)) continue;
    empty_in_a_row = chunk.empty() ? empty_in_a_row + 1 : 0;
    check(client->seal(chunk.data(), chunk.size(), &sealed_stream));
    sealed_data += chunk;
  }
  const bool closes = (knobs & 0x80) != 0;
  if (closes) check(client->seal_close_notify(&sealed_stream));

  const bool damaged = damage_at != 0 && !sealed_stream.empty();
  if (damaged) {
    sealed_stream[(damage_at * 131u + size) % sealed_stream.size()] ^=
        static_cast<char>(1u << (damage_at % 8));
  }
  Opened opened = open_all(*server, sealed_stream, seed);
  if (!damaged) {
    check(opened.data == sealed_data);
    check(opened.last ==
          (closes ? Tls13Records::Status::kClosed : Tls13Records::Status::kNeedMore));
  } else {
    // What came out is a prefix of what was sealed: damage is detected, never delivered.
    check(sealed_data.compare(0, opened.data.size(), opened.data) == 0);
  }

  // The raw input as ciphertext: it must be refused or wait for more, and never crash.
  auto raw_server = Tls13Records::make(suite, client_secret, server_secret);
  Opened raw = open_all(*raw_server, std::string(reinterpret_cast<const char*>(data), size), seed);
  (void)raw;
  raw_server->release();
  return 0;
}
