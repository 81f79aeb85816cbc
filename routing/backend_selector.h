#pragma once

// Choosing a backend of a route: the balancing policies and passive health, as pure state
// with the clock passed in, so that the rules are unit-tested without sockets. Each worker
// keeps one BackendSelector per route of the table it serves.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "routing/route_table.h"

namespace portico {

class BackendSelector {
 public:
  using Clock = std::chrono::steady_clock;

  BackendSelector(BalancePolicy policy, size_t backend_count,
                  std::chrono::milliseconds down_backoff = std::chrono::seconds(10));

  // Picks a backend index, skipping those marked down (until their back-off ends) and those in
  // `exclude` (already tried for this request). `client_key` is the client address for ip_hash;
  // `cookie_value` the sticky cookie's value for cookie balancing (an index written by
  // sticky_cookie_value(); an invalid or down one falls back to round robin).
  // Returns nullopt when every candidate is down or excluded.
  std::optional<size_t> choose(Clock::time_point now, std::string_view client_key,
                               std::string_view cookie_value,
                               const std::vector<size_t>& exclude = {});

  // Connect refused or timed out: skipped until the back-off ends. A route's only backend is
  // never marked down.
  void mark_down(size_t index, Clock::time_point now);
  void mark_up(size_t index);  // a connect succeeded
  bool is_down(size_t index, Clock::time_point now) const;

  void connection_opened(size_t index);  // least_conn accounting
  void connection_closed(size_t index);
  uint32_t active(size_t index) const;

  // The cookie value that pins a client to backend `index` (stable across reloads as long as
  // the backend keeps its position).
  static std::string sticky_cookie_value(size_t index);

 private:
  struct State {
    Clock::time_point down_until{};
    uint32_t active = 0;
  };
  BalancePolicy policy_;
  std::chrono::milliseconds down_backoff_;
  std::vector<State> states_;
  size_t next_ = 0;
};

}  // namespace portico
