#include "proxy/release_memory.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "proxy/http_head.h"

using portico::release_memory;

// What an idle connection keeps is what these leave behind, so they are checked by capacity:
// assigning an empty string (`s = std::string()`) keeps the heap buffer in libstdc++.
TEST_CASE("release_memory: a string gives its heap buffer back", "[release_memory]") {
  std::string s(500, 'x');
  s.clear();
  REQUIRE(s.capacity() >= 500);
  release_memory(s);
  CHECK(s.empty());
  CHECK(s.capacity() < 32);  // only the in-place buffer is left
}

TEST_CASE("release_memory: a vector and a parsed head give everything back", "[release_memory]") {
  std::vector<size_t> v(100, 1);
  release_memory(v);
  CHECK(v.capacity() == 0);

  portico::HttpHead head;
  const std::string target(200, 't');
  REQUIRE(head.append_target(target.data(), target.size(), 1024));
  REQUIRE(head.append_name("Sec-WebSocket-Accept", 20, 1024, 10));
  REQUIRE(head.append_value(target.data(), 64, 1024));
  head.status = 101;
  REQUIRE(head.capacity() >= 284);
  release_memory(head);
  CHECK(head.capacity() == 0);
  CHECK(head.headers.capacity() == 0);
  CHECK(head.target.empty());
  CHECK(head.status == 0);
}
