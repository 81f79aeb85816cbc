// BackendSelector: balancing policies and passive health, with synthetic time points.

#include "routing/backend_selector.h"

#include <catch2/catch.hpp>
#include <map>
#include <set>

using namespace std::chrono_literals;

namespace portico {
namespace {

using Clock = BackendSelector::Clock;
const Clock::time_point kT0 = Clock::time_point{} + 1000h;  // any fixed instant

std::map<size_t, int> distribution(BackendSelector& s, int picks, std::string_view key = "",
                                   std::string_view cookie = "") {
  std::map<size_t, int> counts;
  for (int i = 0; i < picks; ++i) {
    auto pick = s.choose(kT0, key, cookie);
    REQUIRE(pick.has_value());
    ++counts[*pick];
  }
  return counts;
}

TEST_CASE("round robin spreads picks exactly evenly", "[routing][selector]") {
  BackendSelector s(BalancePolicy::kRoundRobin, 3);
  CHECK(distribution(s, 300) == std::map<size_t, int>{{0, 100}, {1, 100}, {2, 100}});
  // And in order.
  std::vector<size_t> order;
  for (int i = 0; i < 6; ++i) order.push_back(*s.choose(kT0, "", ""));
  CHECK(order == std::vector<size_t>{0, 1, 2, 0, 1, 2});
}

TEST_CASE("round robin skips a down backend until its back-off ends", "[routing][selector]") {
  BackendSelector s(BalancePolicy::kRoundRobin, 3, 10s);
  s.mark_down(1, kT0);
  CHECK(s.is_down(1, kT0));
  CHECK(s.is_down(1, kT0 + 9999ms));
  CHECK_FALSE(s.is_down(1, kT0 + 10s));
  CHECK_FALSE(s.is_down(0, kT0));
  CHECK(distribution(s, 100) == std::map<size_t, int>{{0, 50}, {2, 50}});
  // After the back-off the backend is tried again.
  std::set<size_t> seen;
  for (int i = 0; i < 3; ++i) seen.insert(*s.choose(kT0 + 10s, "", ""));
  CHECK(seen == std::set<size_t>{0, 1, 2});
  // mark_up clears the back-off at once.
  s.mark_down(2, kT0);
  CHECK(s.is_down(2, kT0 + 1s));
  s.mark_up(2);
  CHECK_FALSE(s.is_down(2, kT0 + 1s));
}

TEST_CASE("all backends down or excluded gives nullopt", "[routing][selector]") {
  for (auto policy : {BalancePolicy::kRoundRobin, BalancePolicy::kLeastConn, BalancePolicy::kIpHash,
                      BalancePolicy::kCookie}) {
    INFO(static_cast<int>(policy));
    BackendSelector s(policy, 2, 5s);
    s.mark_down(0, kT0);
    s.mark_down(1, kT0);
    CHECK_FALSE(s.choose(kT0 + 1s, "10.0.0.1", "b0").has_value());
    CHECK(s.choose(kT0 + 5s, "10.0.0.1", "b0").has_value());
    s.mark_up(0);
    CHECK(s.choose(kT0 + 1s, "10.0.0.1", "b1") == std::optional<size_t>(0));
    CHECK_FALSE(s.choose(kT0 + 1s, "10.0.0.1", "b0", {0}).has_value());

    BackendSelector none(policy, 0);
    CHECK_FALSE(none.choose(kT0, "10.0.0.1", "b0").has_value());
  }
}

TEST_CASE("the exclude list skips backends already tried", "[routing][selector]") {
  BackendSelector s(BalancePolicy::kRoundRobin, 3);
  for (int i = 0; i < 30; ++i) {
    auto pick = s.choose(kT0, "", "", {0, 2});
    REQUIRE(pick.has_value());
    CHECK(*pick == 1);
  }
  CHECK_FALSE(s.choose(kT0, "", "", {0, 1, 2}).has_value());
}

TEST_CASE("least_conn picks the fewest active connections", "[routing][selector]") {
  BackendSelector s(BalancePolicy::kLeastConn, 3);
  s.connection_opened(0);
  s.connection_opened(0);
  s.connection_opened(1);
  CHECK(s.active(0) == 2);
  CHECK(s.active(1) == 1);
  CHECK(s.active(2) == 0);
  CHECK(s.choose(kT0, "", "") == std::optional<size_t>(2));
  s.connection_opened(2);
  s.connection_opened(2);
  CHECK(s.choose(kT0, "", "") == std::optional<size_t>(1));
  s.connection_closed(0);
  s.connection_closed(0);
  CHECK(s.active(0) == 0);
  s.connection_closed(0);  // never below zero
  CHECK(s.active(0) == 0);
  CHECK(s.choose(kT0, "", "") == std::optional<size_t>(0));
  // A down backend is skipped even when it has the fewest.
  s.mark_down(0, kT0);
  CHECK(s.choose(kT0, "", "") == std::optional<size_t>(1));
}

TEST_CASE("least_conn breaks ties in round-robin order", "[routing][selector]") {
  BackendSelector s(BalancePolicy::kLeastConn, 3);
  CHECK(distribution(s, 300) == std::map<size_t, int>{{0, 100}, {1, 100}, {2, 100}});
  // Simulate the proxy: each pick opens a connection that stays open.
  BackendSelector busy(BalancePolicy::kLeastConn, 3);
  std::vector<size_t> order;
  for (int i = 0; i < 6; ++i) {
    const size_t pick = *busy.choose(kT0, "", "");
    busy.connection_opened(pick);
    order.push_back(pick);
  }
  CHECK(order == std::vector<size_t>{0, 1, 2, 0, 1, 2});
}

TEST_CASE("ip_hash keeps a client on one backend", "[routing][selector]") {
  BackendSelector s(BalancePolicy::kIpHash, 3);
  const size_t first = *s.choose(kT0, "192.0.2.7", "");
  for (int i = 0; i < 100; ++i) {
    CHECK(s.choose(kT0, "192.0.2.7", "") == std::optional<size_t>(first));
  }
  // Another selector (another worker, a reload) agrees: the hash is stable.
  BackendSelector other(BalancePolicy::kIpHash, 3);
  CHECK(other.choose(kT0, "192.0.2.7", "") == std::optional<size_t>(first));

  // Different clients spread over all backends.
  std::map<size_t, int> counts;
  for (int i = 0; i < 300; ++i) {
    const std::string key = "10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    ++counts[*s.choose(kT0, key, "")];
  }
  REQUIRE(counts.size() == 3);
  for (const auto& [index, n] : counts) {
    INFO(index);
    CHECK(n > 50);
  }
}

TEST_CASE("ip_hash walks forward past a down backend, deterministically", "[routing][selector]") {
  BackendSelector s(BalancePolicy::kIpHash, 4, 10s);
  const size_t home = *s.choose(kT0, "198.51.100.1", "");
  s.mark_down(home, kT0);
  const size_t next = (home + 1) % 4;
  for (int i = 0; i < 10; ++i) {
    CHECK(s.choose(kT0 + 1s, "198.51.100.1", "") == std::optional<size_t>(next));
  }
  CHECK(s.choose(kT0 + 1s, "198.51.100.1", "", {next}) == std::optional<size_t>((home + 2) % 4));
  // Back home when the back-off ends.
  CHECK(s.choose(kT0 + 10s, "198.51.100.1", "") == std::optional<size_t>(home));
}

TEST_CASE("cookie balancing sticks to the cookie's backend", "[routing][selector]") {
  CHECK(BackendSelector::sticky_cookie_value(0) == "b0");
  CHECK(BackendSelector::sticky_cookie_value(12) == "b12");

  BackendSelector s(BalancePolicy::kCookie, 3, 10s);
  for (size_t i = 0; i < 3; ++i) {
    const std::string cookie = BackendSelector::sticky_cookie_value(i);
    for (int k = 0; k < 20; ++k) {
      CHECK(s.choose(kT0, "", cookie) == std::optional<size_t>(i));
    }
  }
  // No cookie, or an invalid one: round robin.
  for (std::string_view bad : {"", "b", "b3", "b01", "1", "x1", "b-1", "b1 ", "b99999999999"}) {
    INFO(bad);
    std::set<size_t> seen;
    for (int k = 0; k < 3; ++k) seen.insert(*s.choose(kT0, "", bad));
    CHECK(seen == std::set<size_t>{0, 1, 2});
  }
  // The pinned backend is down or excluded: round robin over the others.
  s.mark_down(1, kT0);
  std::set<size_t> seen;
  for (int k = 0; k < 10; ++k) seen.insert(*s.choose(kT0 + 1s, "", "b1"));
  CHECK(seen == std::set<size_t>{0, 2});
  s.mark_up(1);
  CHECK(s.choose(kT0 + 1s, "", "b1") == std::optional<size_t>(1));
  auto pick = s.choose(kT0, "", "b1", {1});
  REQUIRE(pick.has_value());
  CHECK(*pick != 1);
}

TEST_CASE("out-of-range indices are ignored, not crashes", "[routing][selector]") {
  BackendSelector s(BalancePolicy::kRoundRobin, 2);
  s.mark_down(5, kT0);
  s.mark_up(5);
  s.connection_opened(5);
  s.connection_closed(5);
  CHECK_FALSE(s.is_down(5, kT0));
  CHECK(s.active(5) == 0);
  CHECK(distribution(s, 4) == std::map<size_t, int>{{0, 2}, {1, 2}});
}

TEST_CASE("a route's only backend is never marked down", "[selector]") {
  BackendSelector s(BalancePolicy::kRoundRobin, 1);
  s.mark_down(0, kT0);
  CHECK_FALSE(s.is_down(0, kT0));
  CHECK(s.choose(kT0, "", "") == std::optional<size_t>(0));
}

}  // namespace
}  // namespace portico
