#pragma once

// A private scratch directory for one test: created under /tmp, removed with everything in it when
// the test ends, so tests never see each other's files and never leave any behind.

#include <string>
#include <string_view>

namespace portico::test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes (or overwrites) `name` relative to path(); returns the full path.
  std::string write_file(std::string_view name, std::string_view content) const;
  // Full path of `name` inside the directory, whether or not it exists.
  std::string file(std::string_view name) const;

 private:
  std::string path_;
};

}  // namespace portico::test
