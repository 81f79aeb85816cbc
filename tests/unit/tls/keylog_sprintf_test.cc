// tls/keylog_sprintf.c: the executable's own __sprintf_chk must format "%02x" exactly as glibc
// does and pass every other format to glibc unchanged. This executable links it, as portico
// does, so the hand-over tests here also take OpenSSL's keylog lines through it.

#include <dlfcn.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <string>

extern "C" int __sprintf_chk(char* s, int flag, size_t slen, const char* format, ...);

namespace {

std::string glibc_format(const char* format, unsigned value) {
  char buf[64];
  const int n = std::snprintf(buf, sizeof buf, format, value);
  REQUIRE(n >= 0);
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace

TEST_CASE("keylog sprintf: %02x as glibc formats it, for bytes and wider values", "[tls][keylog]") {
  const unsigned wide[] = {0x100, 0xabc, 0x1000, 0xffff, 0x12345678, 0x80000000, 0xffffffff};
  auto check = [](unsigned value) {
    char buf[16];
    std::memset(buf, '#', sizeof buf);
    const int n = __sprintf_chk(buf, 1, sizeof buf, "%02x", value);
    const std::string expected = glibc_format("%02x", value);
    REQUIRE(n == static_cast<int>(expected.size()));
    REQUIRE(std::string(buf) == expected);
  };
  for (unsigned value = 0; value < 0x100; ++value) check(value);
  for (unsigned value : wide) check(value);
}

TEST_CASE("keylog sprintf: a byte written where OpenSSL writes it, the terminator last",
          "[tls][keylog]") {
  // nss_keylog_int writes two digits at a time into one line; each NUL is overwritten next.
  const unsigned char secret[] = {0x00, 0x0f, 0xa0, 0xff, 0x5c};
  char line[2 * sizeof secret + 1];
  char* cursor = line;
  for (unsigned char byte : secret) {
    const size_t room = sizeof line - static_cast<size_t>(cursor - line);
    cursor += __sprintf_chk(cursor, 1, room, "%02x", byte);
  }
  REQUIRE(std::string(line) == "000fa0ff5c");
}

TEST_CASE("keylog sprintf: every other format is glibc's own", "[tls][keylog]") {
  const char* formats[] = {"%x", "%2x", "%02X", "%03x", "%02xz", "[%u]", "%%02x", ""};
  for (const char* format : formats) {
    char buf[64];
    const int n = __sprintf_chk(buf, 1, sizeof buf, format, 0xau);
    const std::string expected = glibc_format(format, 0xa);
    CAPTURE(format);
    REQUIRE(n == static_cast<int>(expected.size()));
    REQUIRE(std::string(buf) == expected);
  }
  char buf[64];
  REQUIRE(__sprintf_chk(buf, 1, sizeof buf, "%s=%d", "port", 443) == 8);
  REQUIRE(std::string(buf) == "port=443");
}

TEST_CASE("keylog sprintf: the dynamic linker resolves __sprintf_chk to this definition",
          "[tls][keylog]") {
  // What libssl's calls bind to: the global lookup, executable first. Without
  // tls/keylog_sprintf.c linked in, this finds glibc's and the tests above compare glibc
  // with itself.
  void* resolved = dlsym(RTLD_DEFAULT, "__sprintf_chk");
  REQUIRE(resolved != nullptr);
  REQUIRE(resolved == reinterpret_cast<void*>(&__sprintf_chk));
  Dl_info info{};
  REQUIRE(dladdr(resolved, &info) != 0);
  REQUIRE(info.dli_fname != nullptr);
  CAPTURE(info.dli_fname);
  REQUIRE(std::string(info.dli_fname).find("libc.so") == std::string::npos);
}
