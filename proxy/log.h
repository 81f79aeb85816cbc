#pragma once

// Logging: one line per event, to stderr (or the access log's file), as
//   LEVEL component: message key=value ...
// Each line is written with a single write(2), so lines from several workers never interleave.

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <type_traits>

namespace portico {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Set once at start-up, before any worker thread runs; read-only afterwards.
void log_set_min_level(LogLevel level);
bool log_enabled(LogLevel level);
bool parse_log_level(std::string_view text, LogLevel* out);

void log_write(LogLevel level, std::string_view component, std::string_view message);

// Appends the decimal or text form of each argument: a small, allocation-light str_cat.
inline void str_append(std::string& out, std::string_view s) { out.append(s); }
inline void str_append(std::string& out, const char* s) { out.append(s); }
inline void str_append(std::string& out, const std::string& s) { out.append(s); }
inline void str_append(std::string& out, char c) { out.push_back(c); }
template <typename T>
requires std::is_integral_v<T>
void str_append(std::string& out, T value) {
  if constexpr (std::is_same_v<T, bool>) {
    out.append(value ? "true" : "false");
  } else {
    out.append(std::to_string(value));
  }
}
inline void str_append(std::string& out, double value) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%.3f", value);
  out.append(buf, static_cast<size_t>(n));
}

// Bytes from the network as log text (NGINX's escaping): '"', '\\' and every byte outside
// printable ASCII written as \xHH, so that they can neither end the field they are in nor
// forge another field or line, and the line stays ASCII.
void append_escaped(std::string& out, std::string_view bytes);
// A value from the network in an event-log line: str_append writes it in double quotes,
// escaped as above (origin="https://a.example").
struct Quoted {
  std::string_view text;
};
inline void str_append(std::string& out, Quoted value) {
  out.push_back('"');
  append_escaped(out, value.text);
  out.push_back('"');
}

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::string out;
  (str_append(out, args), ...);
  return out;
}

template <typename... Args>
void log_at(LogLevel level, std::string_view component, const Args&... args) {
  if (!log_enabled(level)) return;
  log_write(level, component, str_cat(args...));
}
template <typename... Args>
void log_debug(std::string_view component, const Args&... args) {
  log_at(LogLevel::kDebug, component, args...);
}
template <typename... Args>
void log_info(std::string_view component, const Args&... args) {
  log_at(LogLevel::kInfo, component, args...);
}
template <typename... Args>
void log_warn(std::string_view component, const Args&... args) {
  log_at(LogLevel::kWarn, component, args...);
}
template <typename... Args>
void log_error(std::string_view component, const Args&... args) {
  log_at(LogLevel::kError, component, args...);
}

}  // namespace portico
