#include "routing/backend_selector.h"

#include <algorithm>

namespace portico {

namespace {

// FNV-1a, 64 bit: stable across runs, platforms and standard libraries (std::hash is not), so
// that a client keeps its backend across restarts and across workers.
uint64_t fnv1a(std::string_view data) {
  uint64_t h = 14695981039346656037ULL;
  for (char c : data) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

// The sticky cookie is "b" followed by the decimal index, no leading zeros. The prefix keeps
// the value from looking like a number someone might do arithmetic on, and leaves room for
// another format later; anything else is simply not a pin.
std::optional<size_t> parse_sticky_cookie(std::string_view value) {
  if (value.size() < 2 || value.size() > 10 || value.front() != 'b') {
    return std::nullopt;
  }
  value.remove_prefix(1);
  if (value.size() > 1 && value.front() == '0') {
    return std::nullopt;
  }
  size_t index = 0;
  for (char c : value) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    index = index * 10 + static_cast<size_t>(c - '0');
  }
  return index;
}

}  // namespace

BackendSelector::BackendSelector(BalancePolicy policy, size_t backend_count,
                                 std::chrono::milliseconds down_backoff)
    : policy_(policy), down_backoff_(down_backoff), states_(backend_count) {}

std::optional<size_t> BackendSelector::choose(Clock::time_point now, std::string_view client_key,
                                              std::string_view cookie_value,
                                              const std::vector<size_t>& exclude) {
  const size_t n = states_.size();
  if (n == 0) {
    return std::nullopt;
  }
  auto usable = [&](size_t i) {
    return !is_down(i, now) && std::find(exclude.begin(), exclude.end(), i) == exclude.end();
  };
  auto round_robin = [&]() -> std::optional<size_t> {
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (next_ + k) % n;
      if (usable(i)) {
        next_ = (i + 1) % n;
        return i;
      }
    }
    return std::nullopt;
  };

  switch (policy_) {
    case BalancePolicy::kRoundRobin:
      return round_robin();
    case BalancePolicy::kLeastConn: {
      // Scanning from the round-robin cursor makes ties rotate instead of piling onto index 0.
      std::optional<size_t> best;
      for (size_t k = 0; k < n; ++k) {
        const size_t i = (next_ + k) % n;
        if (usable(i) && (!best || states_[i].active < states_[*best].active)) {
          best = i;
        }
      }
      if (best) {
        next_ = (*best + 1) % n;
      }
      return best;
    }
    case BalancePolicy::kIpHash: {
      // When the hashed backend is unusable, walk forward: deterministic, so every worker sends
      // that client to the same substitute.
      const size_t start = static_cast<size_t>(fnv1a(client_key) % n);
      for (size_t k = 0; k < n; ++k) {
        const size_t i = (start + k) % n;
        if (usable(i)) {
          return i;
        }
      }
      return std::nullopt;
    }
    case BalancePolicy::kCookie: {
      const std::optional<size_t> pinned = parse_sticky_cookie(cookie_value);
      if (pinned && *pinned < n && usable(*pinned)) {
        return pinned;
      }
      return round_robin();
    }
  }
  return round_robin();
}

void BackendSelector::mark_down(size_t index, Clock::time_point now) {
  // A route's only backend is never skipped (as in NGINX): there is nothing to fail over to,
  // and skipping it would keep answering 502 for the whole back-off after it came back.
  if (states_.size() < 2) return;
  if (index < states_.size()) {
    states_[index].down_until = now + down_backoff_;
  }
}

void BackendSelector::mark_up(size_t index) {
  if (index < states_.size()) {
    states_[index].down_until = Clock::time_point{};
  }
}

bool BackendSelector::is_down(size_t index, Clock::time_point now) const {
  return index < states_.size() && now < states_[index].down_until;
}

void BackendSelector::connection_opened(size_t index) {
  if (index < states_.size()) {
    ++states_[index].active;
  }
}

void BackendSelector::connection_closed(size_t index) {
  if (index < states_.size() && states_[index].active > 0) {
    --states_[index].active;
  }
}

uint32_t BackendSelector::active(size_t index) const {
  return index < states_.size() ? states_[index].active : 0;
}

std::string BackendSelector::sticky_cookie_value(size_t index) {
  return "b" + std::to_string(index);
}

}  // namespace portico
