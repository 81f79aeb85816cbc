/* A fast path for the one sprintf format OpenSSL 3.0 formats key log lines with.
 *
 * Portico takes the TLS 1.3 application traffic secrets from OpenSSL's keylog callback (the only
 * way OpenSSL 3.0 gives them; see tls_stream.cc), and OpenSSL writes each keylog line one byte
 * at a time, `sprintf(cursor, "%02x", byte)` (ssl/ssl_lib.c, nss_keylog_int): 128 calls a line,
 * three lines a handshake, each call through glibc's whole printf machinery. Callgrind put that
 * at 138,000 of the 2.55 million instructions of a resumed handshake, the whole of what portico
 * ran above NGINX per handshake (docs/performance.md).
 *
 * Debian builds OpenSSL with _FORTIFY_SOURCE, so its calls go to glibc's __sprintf_chk. The
 * executable's own definition of a symbol comes first in the dynamic linker's search order, so
 * this one receives them. It formats exactly "%02x" itself and hands every other format, with
 * the same arguments and the same overflow check, to glibc's __vsprintf_chk: any other caller
 * sees glibc's behaviour unchanged. C, not C++, because it is a libc function's definition.
 *
 * Linked into the portico executable (and the TLS unit tests, which check it against snprintf),
 * not into the libraries, so that no other program picks it up by linking portico's code. */

#include <stdarg.h>
#include <stddef.h>

int __vsprintf_chk(char* s, int flag, size_t slen, const char* format, va_list ap);
void __chk_fail(void) __attribute__((noreturn));
int __sprintf_chk(char* s, int flag, size_t slen, const char* format, ...);

/* printf's "%02x": lower-case hex, at least two digits. */
static int format_hex_two(char* s, size_t slen, unsigned value) {
  static const char kDigits[] = "0123456789abcdef";
  char digits[2 * sizeof value];
  int count = 0;
  do {
    digits[count++] = kDigits[value & 0xf];
    value >>= 4;
  } while (value != 0);
  if (count < 2) digits[count++] = '0';
  /* The object-size check __sprintf_chk exists for: the digits and the terminating NUL. */
  if ((size_t)count + 1 > slen) __chk_fail();
  for (int i = 0; i < count; ++i) s[i] = digits[count - 1 - i];
  s[count] = '\0';
  return count;
}

int __sprintf_chk(char* s, int flag, size_t slen, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  int written;
  if (format[0] == '%' && format[1] == '0' && format[2] == '2' && format[3] == 'x' &&
      format[4] == '\0') {
    written = format_hex_two(s, slen, va_arg(ap, unsigned));
  } else {
    written = __vsprintf_chk(s, flag, slen, format, ap);
  }
  va_end(ap);
  return written;
}
