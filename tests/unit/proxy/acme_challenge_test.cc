// Which targets the ACME webroot may answer: only token names, never a path.

#include <catch2/catch.hpp>

#include "proxy/redirect_server.h"

using namespace portico;

TEST_CASE("ACME challenge targets: token names only", "[acme]") {
  std::string token;
  CHECK(acme_challenge_token("/.well-known/acme-challenge/abc-DEF_123", &token) ==
        AcmeTarget::kToken);
  CHECK(token == "abc-DEF_123");
  CHECK(acme_challenge_token("/.well-known/acme-challenge/tok?x=1", &token) == AcmeTarget::kToken);
  CHECK(token == "tok");
  for (const char* bad :
       {"/.well-known/acme-challenge/", "/.well-known/acme-challenge/..",
        "/.well-known/acme-challenge/../../etc/passwd", "/.well-known/acme-challenge/%2e%2e",
        "/.well-known/acme-challenge/a/b", "/.well-known/acme-challenge/a%2fb",
        "/.well-known/acme-challenge/a.txt", "/.well-known/acme-challenge/a\\b"}) {
    INFO(bad);
    CHECK(acme_challenge_token(bad, &token) == AcmeTarget::kInvalid);
  }
  CHECK(acme_challenge_token("/", &token) == AcmeTarget::kNotAcme);
  CHECK(acme_challenge_token("/.well-known/acme-challenge", &token) == AcmeTarget::kNotAcme);
  CHECK(acme_challenge_token(std::string(300, 'a'), &token) == AcmeTarget::kNotAcme);
  CHECK(acme_challenge_token("/.well-known/acme-challenge/" + std::string(300, 'a'), &token) ==
        AcmeTarget::kInvalid);
}
