#include "proxy/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace portico {

std::optional<RunAs> resolve_run_as(const std::string& name, std::string* error) {
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(16 * 1024);
  const int rc = getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (rc != 0 || !found) {
    *error = "--user: no such user \"" + name + "\"" +
             (rc != 0 ? std::string(" (") + std::strerror(rc) + ")" : "");
    return std::nullopt;
  }
  RunAs user{name, found->pw_uid, found->pw_gid};
  if (geteuid() != 0 && user.uid != geteuid()) {
    *error = "--user " + name + ": switching users needs root (portico runs as uid " +
             std::to_string(geteuid()) + ")";
    return std::nullopt;
  }
  return user;
}

bool drop_privileges(const RunAs& user, std::string* error) {
  if (geteuid() != 0) return true;  // already that user (resolve_run_as checked)
  auto fail = [&](const char* step) {
    *error = "--user " + user.name + ": " + step + ": " + std::strerror(errno);
    return false;
  };
  // Supplementary groups first (they need root), then the group, then the user.
  if (initgroups(user.name.c_str(), user.gid) != 0) return fail("initgroups");
  if (setgid(user.gid) != 0) return fail("setgid");
  if (setuid(user.uid) != 0) return fail("setuid");
  if (user.uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
    *error = "--user " + user.name + ": root could be regained after dropping it";
    return false;
  }
  return true;
}

}  // namespace portico
