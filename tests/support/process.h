#pragma once

// Child processes for tests: the portico binary, the example backends, curl, openssl.
// Output is captured continuously by reader threads, so a test can wait for a log line while the
// child runs, and a chatty child never blocks on a full pipe.

#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace portico::test {

using namespace std::chrono_literals;

struct ProcessOptions {
  // Added to (or replacing in) the test's own environment.
  std::vector<std::pair<std::string, std::string>> env;
  // Empty: the test's working directory.
  std::string working_dir;
  // Give the child a pipe as stdin (see write_stdin/close_stdin); otherwise stdin is /dev/null.
  bool stdin_pipe = false;
};

struct ExitStatus {
  bool signaled = false;  // true: killed by signal `code`; false: exited with status `code`
  int code = 0;

  bool exited_ok() const { return !signaled && code == 0; }
  std::string describe() const;  // "exit 0", "signal 9 (Killed)"
};

// One match of wait_for_output: groups[0] is the whole match, then the capture groups;
// `end` is the offset just past the match, to search for a later line from there.
struct OutputMatch {
  std::vector<std::string> groups;
  size_t end = 0;
  const std::string& operator[](size_t i) const { return groups.at(i); }
};

enum class Stream { kStdout, kStderr };

// The resident set size of a process in KiB (VmRSS), or -1 if it cannot be read.
long rss_kib(pid_t pid);

class Process {
 public:
  // Starts argv[0] (looked up in PATH if it has no '/'). Throws std::runtime_error if it cannot be
  // started. Signal dispositions and the mask are reset to defaults in the child (the test runner
  // ignores SIGPIPE; children should not inherit that).
  explicit Process(std::vector<std::string> argv, ProcessOptions options = {});
  ~Process();  // SIGKILLs the child if it still runs, reaps it, joins the readers
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::vector<std::string>& argv() const { return argv_; }
  std::string command_line() const;

  std::string stdout_text() const;
  std::string stderr_text() const;
  std::string output(Stream stream) const;

  // Waits until `pattern` matches the stream's text from byte `from` on. On timeout, or when the
  // stream ends without a match, the current Catch2 test fails with the output so far.
  OutputMatch wait_for_output(const std::regex& pattern, std::chrono::milliseconds timeout = 10s,
                              Stream stream = Stream::kStderr, size_t from = 0);
  OutputMatch wait_for_output(const std::string& substring, std::chrono::milliseconds timeout = 10s,
                              Stream stream = Stream::kStderr, size_t from = 0);
  // The same, but returns nullopt instead of failing (to assert that something does not appear).
  std::optional<OutputMatch> try_wait_for_output(const std::regex& pattern,
                                                 std::chrono::milliseconds timeout,
                                                 Stream stream = Stream::kStderr, size_t from = 0);
  std::optional<OutputMatch> try_wait_for_output(const std::string& substring,
                                                 std::chrono::milliseconds timeout,
                                                 Stream stream = Stream::kStderr, size_t from = 0);

  // Requires ProcessOptions::stdin_pipe. write_stdin blocks until written; false if the child
  // closed its end.
  bool write_stdin(std::string_view data);
  void close_stdin();

  // Waits until the child's stdout and stderr are closed (normally: it exited and the readers took
  // everything); false on timeout.
  bool wait_output_end(std::chrono::milliseconds timeout = 5s);

  bool signal(int signo);  // false if the child is already reaped
  bool running();          // reaps the child if it has exited
  // Waits for the child to exit; nullopt on timeout (the child keeps running).
  std::optional<ExitStatus> wait_exit(std::chrono::milliseconds timeout = 10s);
  // The status once reaped (by running() or wait_exit()).
  std::optional<ExitStatus> exit_status() const { return status_; }

 private:
  struct Capture {
    mutable std::mutex mutex;
    std::condition_variable changed;
    std::string text;
    bool ended = false;
  };
  void read_loop(int fd, Capture* capture);
  bool reap(bool block);
  Capture& capture(Stream stream) { return stream == Stream::kStdout ? out_ : err_; }
  const Capture& capture(Stream stream) const { return stream == Stream::kStdout ? out_ : err_; }
  template <typename Finder>
  std::optional<OutputMatch> wait_impl(Finder find, std::chrono::milliseconds timeout,
                                       Stream stream, size_t from);
  [[noreturn]] void fail_wait(const std::string& what, std::chrono::milliseconds timeout,
                              Stream stream);

  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  std::optional<ExitStatus> status_;
  int stdin_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: tells the readers to give up if a grandchild keeps a pipe open
  Capture out_, err_;
  std::thread out_reader_, err_reader_;
};

struct CommandResult {
  int exit_code = -1;  // the exit status, or 128 + signal number, or -1 if it timed out
  // Named as in a shell. (glibc defines stdout/stderr as macros that expand to themselves, so these
  // member names are safe.)
  std::string stdout;
  std::string stderr;
  bool timed_out = false;

  std::string describe() const;  // for failure messages: code, and both outputs
};

// How many times `needle` occurs in captured output (overlapping ones too): log lines, s_client's
// "New Session Ticket" blocks.
size_t count_of(std::string_view text, std::string_view needle);

// Runs a command to completion, feeding it stdin_data; kills it after `timeout`.
CommandResult run_command(std::vector<std::string> argv, std::string stdin_data = "",
                          std::chrono::milliseconds timeout = 30s);

// curl -sS --max-time 20 ARGS...
CommandResult curl(std::vector<std::string> args);
template <typename... Args>
requires(std::convertible_to<Args, std::string>&&...) CommandResult curl(Args&&... args) {
  return curl(std::vector<std::string>{std::string(std::forward<Args>(args))...});
}

}  // namespace portico::test
