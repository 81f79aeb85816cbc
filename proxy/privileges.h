#pragma once

// --user NAME: portico binds its ports (below 1024 needs root or CAP_NET_BIND_SERVICE) and reads
// its certificates first, then gives up root for good, as NGINX's workers do.

#include <sys/types.h>

#include <optional>
#include <string>

namespace portico {

struct RunAs {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;  // the user's primary group
};

// Looks the user up, before anything is bound. Errors: no such user; switching to another user
// without root.
std::optional<RunAs> resolve_run_as(const std::string& name, std::string* error);

// initgroups + setgid + setuid, then checks that root cannot be regained.
bool drop_privileges(const RunAs& user, std::string* error);

}  // namespace portico
