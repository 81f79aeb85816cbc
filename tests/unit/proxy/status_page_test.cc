#include "proxy/status_page.h"

#include <catch2/catch.hpp>

using namespace portico;

TEST_CASE("status JSON carries routes, backend states and counters", "[status]") {
  StatusSnapshot s;
  s.version = "0.1.0";
  s.uptime_seconds = 12.7;
  s.open_connections = 3;
  s.open_tunnels = 1;
  s.requests = 10;
  s.server_errors = 2;
  s.routes.push_back({"api.example.com/api/",
                      {{"http://127.0.0.1:3000", false, 2}, {"http://127.0.0.1:3001", true, 0}},
                      7,
                      1});
  s.routes.push_back({"/\"odd\"\n", {}, 0, 0});
  std::string json = render_status_json(s);
  CHECK(json.find("\"uptime_seconds\":12,") != std::string::npos);
  CHECK(json.find("\"open_connections\":3,\"open_tunnels\":1,\"requests\":10") !=
        std::string::npos);
  CHECK(json.find("{\"pattern\":\"api.example.com/api/\",\"requests\":7,\"server_errors\":1,"
                  "\"backends\":[{\"address\":\"http://127.0.0.1:3000\",\"state\":\"up\","
                  "\"active\":2},{\"address\":\"http://127.0.0.1:3001\",\"state\":\"down\","
                  "\"active\":0}]}") != std::string::npos);
  CHECK(json.find("\"pattern\":\"/\\\"odd\\\"\\n\"") != std::string::npos);
}

TEST_CASE("the status page is self-contained", "[status]") {
  const std::string& html = status_page_html();
  CHECK(html.find("fetch('status.json'") != std::string::npos);
  CHECK(html.find("http://") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  CHECK(html.find("<script src") == std::string::npos);
}
