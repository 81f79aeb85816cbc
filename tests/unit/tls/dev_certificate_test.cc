// The development certificate: made once, reused while it covers the names, private files.

#include "tls/dev_certificate.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "tests/support/temp_dir.h"
#include "tls/tls_context.h"

using namespace portico;
using namespace portico::test;

namespace {
std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
mode_t mode_of(const std::string& path) {
  struct stat st {};
  stat(path.c_str(), &st);
  return st.st_mode & 0777;
}
}  // namespace

TEST_CASE("an existing state directory keeps its mode", "[tls]") {
  TempDir dir;
  const std::string shared = dir.file("shared");
  REQUIRE(mkdir(shared.c_str(), 0755) == 0);
  REQUIRE(chmod(shared.c_str(), 01777) == 0);  // as /tmp: world-writable, sticky
  DevCertificate made = ensure_dev_certificate(shared, dev_certificate_names({}));
  REQUIRE(made.error == "");
  struct stat st {};
  REQUIRE(stat(shared.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 01777);
  CHECK(mode_of(made.key_path) == 0600);
}

TEST_CASE("the dev certificate is made once, reused, and remade for new names", "[tls]") {
  TempDir dir;
  const std::string state = dir.file("state/portico");
  DevCertificate first = ensure_dev_certificate(state, dev_certificate_names({}));
  REQUIRE(first.error == "");
  CHECK(first.generated);
  CHECK(mode_of(state) == 0700);
  CHECK(mode_of(first.key_path) == 0600);
  const std::string pem = read_all(first.cert_path);

  DevCertificate again = ensure_dev_certificate(state, dev_certificate_names({}));
  CHECK_FALSE(again.generated);
  CHECK(read_all(again.cert_path) == pem);

  DevCertificate more = ensure_dev_certificate(state, dev_certificate_names({"dev.test"}));
  CHECK(more.generated);
  CHECK(read_all(more.cert_path) != pem);

  TlsContextResult tls = make_server_tls_context({{more.cert_path, more.key_path}});
  REQUIRE(tls.ctx);
  CHECK(tls.certificates[0].key_type == "ECDSA");
  CHECK(tls.certificates[0].names ==
        std::vector<std::string>{"DNS:localhost", "IP:127.0.0.1", "IP:::1", "DNS:dev.test"});
}
