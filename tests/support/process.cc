#include "tests/support/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <fstream>
#include <map>
#include <stdexcept>

extern char** environ;

namespace portico::test {

namespace {

std::string errno_text(const char* what, int err) {
  return std::string(what) + ": " + strerror(err);
}

// Builds the child's environment: ours, with `overrides` replacing or adding variables.
std::vector<std::string> child_environment(
    const std::vector<std::pair<std::string, std::string>>& overrides) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    vars[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
  }
  for (const auto& [name, value] : overrides) vars[name] = value;
  std::vector<std::string> out;
  for (const auto& [name, value] : vars) out.push_back(name + "=" + value);
  return out;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

std::string ExitStatus::describe() const {
  if (!signaled) return "exit " + std::to_string(code);
  return "signal " + std::to_string(code) + " (" + strsignal(code) + ")";
}

Process::Process(std::vector<std::string> argv, ProcessOptions options) : argv_(std::move(argv)) {
  if (argv_.empty()) throw std::invalid_argument("Process: empty argv");
  // O_CLOEXEC everywhere: a child must not inherit another child's pipes, or a reader would never
  // see EOF while that other child lives.
  int out_pipe[2], err_pipe[2], in_pipe[2] = {-1, -1};
  if (pipe2(out_pipe, O_CLOEXEC) != 0) throw std::runtime_error(errno_text("pipe2", errno));
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    throw std::runtime_error(errno_text("pipe2", errno));
  }
  if (options.stdin_pipe && pipe2(in_pipe, O_CLOEXEC) != 0) {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) ::close(fd);
    throw std::runtime_error(errno_text("pipe2", errno));
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (options.stdin_pipe) {
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  } else {
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  // dup2 clears FD_CLOEXEC on the new descriptor, so only 0, 1 and 2 survive the exec.
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  if (!options.working_dir.empty()) {
    posix_spawn_file_actions_addchdir_np(&actions, options.working_dir.c_str());
  }

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<std::string> args = argv_;
  std::vector<std::string> env = child_environment(options.env);
  std::vector<char*> c_args = c_strings(args), c_env = c_strings(env);
  int rc = posix_spawnp(&pid_, c_args[0], &actions, &attr, c_args.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);

  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (in_pipe[0] >= 0) ::close(in_pipe[0]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    if (in_pipe[1] >= 0) ::close(in_pipe[1]);
    pid_ = -1;
    throw std::runtime_error(errno_text(("cannot start " + argv_[0]).c_str(), rc));
  }
  stdin_fd_ = in_pipe[1];
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  out_reader_ = std::thread([this, fd = out_pipe[0]] { read_loop(fd, &out_); });
  err_reader_ = std::thread([this, fd = err_pipe[0]] { read_loop(fd, &err_); });
}

Process::~Process() {
  close_fd(stdin_fd_);
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    reap(/*block=*/true);
  }
  // The child is gone; its pipes reach EOF unless a grandchild inherited them. Give the readers a
  // moment to drain, then make them stop regardless.
  wait_output_end(1s);
  uint64_t one = 1;
  if (stop_fd_ >= 0 && ::write(stop_fd_, &one, sizeof one) < 0) {
    // Nothing else to do: the readers' poll also times out.
  }
  if (out_reader_.joinable()) out_reader_.join();
  if (err_reader_.joinable()) err_reader_.join();
  close_fd(stop_fd_);
}

void Process::read_loop(int fd, Capture* capture) {
  char buf[16384];
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int n = ::poll(fds, 2, 1000);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (fds[1].revents & POLLIN)) break;
    if (n == 0) continue;
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    std::lock_guard lock(capture->mutex);
    capture->text.append(buf, static_cast<size_t>(got));
    capture->changed.notify_all();
  }
  ::close(fd);
  std::lock_guard lock(capture->mutex);
  capture->ended = true;
  capture->changed.notify_all();
}

std::string Process::command_line() const {
  std::string out;
  for (const auto& a : argv_) {
    if (!out.empty()) out += ' ';
    out += a;
  }
  return out;
}

std::string Process::output(Stream stream) const {
  const Capture& c = capture(stream);
  std::lock_guard lock(c.mutex);
  return c.text;
}
std::string Process::stdout_text() const { return output(Stream::kStdout); }
std::string Process::stderr_text() const { return output(Stream::kStderr); }

template <typename Finder>
std::optional<OutputMatch> Process::wait_impl(Finder find, std::chrono::milliseconds timeout,
                                              Stream stream, size_t from) {
  Capture& c = capture(stream);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(c.mutex);
  size_t searched_size = std::string::npos;
  for (;;) {
    if (c.text.size() != searched_size) {
      searched_size = c.text.size();
      if (from <= c.text.size()) {
        if (auto m = find(c.text, from)) return m;
      }
    }
    if (c.ended) return std::nullopt;
    if (c.changed.wait_until(lock, deadline) == std::cv_status::timeout &&
        c.text.size() == searched_size) {
      return std::nullopt;
    }
  }
}

std::optional<OutputMatch> Process::try_wait_for_output(const std::regex& pattern,
                                                        std::chrono::milliseconds timeout,
                                                        Stream stream, size_t from) {
  return wait_impl(
      [&](const std::string& text, size_t start) -> std::optional<OutputMatch> {
        std::smatch m;
        if (!std::regex_search(text.begin() + static_cast<ptrdiff_t>(start), text.end(), m,
                               pattern)) {
          return std::nullopt;
        }
        OutputMatch out;
        for (const auto& g : m) out.groups.push_back(g.str());
        out.end = start + static_cast<size_t>(m.position(0) + m.length(0));
        return out;
      },
      timeout, stream, from);
}

std::optional<OutputMatch> Process::try_wait_for_output(const std::string& substring,
                                                        std::chrono::milliseconds timeout,
                                                        Stream stream, size_t from) {
  return wait_impl(
      [&](const std::string& text, size_t start) -> std::optional<OutputMatch> {
        size_t pos = text.find(substring, start);
        if (pos == std::string::npos) return std::nullopt;
        return OutputMatch{{substring}, pos + substring.size()};
      },
      timeout, stream, from);
}

void Process::fail_wait(const std::string& what, std::chrono::milliseconds timeout, Stream stream) {
  bool ended;
  {
    std::lock_guard lock(capture(stream).mutex);
    ended = capture(stream).ended;
  }
  std::string why = ended ? "the stream ended (process exited?)"
                          : "timed out after " + std::to_string(timeout.count()) + " ms";
  FAIL("waiting for " << what << " on " << (stream == Stream::kStderr ? "stderr" : "stdout")
                      << " of `" << command_line() << "`: " << why << "\n--- stdout ---\n"
                      << stdout_text() << "\n--- stderr ---\n"
                      << stderr_text());
  throw std::logic_error("unreachable");  // FAIL throws; this keeps [[noreturn]] honest
}

OutputMatch Process::wait_for_output(const std::regex& pattern, std::chrono::milliseconds timeout,
                                     Stream stream, size_t from) {
  auto m = try_wait_for_output(pattern, timeout, stream, from);
  if (!m) fail_wait("a regex match", timeout, stream);
  return *m;
}

OutputMatch Process::wait_for_output(const std::string& substring,
                                     std::chrono::milliseconds timeout, Stream stream,
                                     size_t from) {
  auto m = try_wait_for_output(substring, timeout, stream, from);
  if (!m) fail_wait("\"" + substring + "\"", timeout, stream);
  return *m;
}

bool Process::wait_output_end(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (Capture* c : {&out_, &err_}) {
    std::unique_lock lock(c->mutex);
    if (!c->changed.wait_until(lock, deadline, [c] { return c->ended; })) return false;
  }
  return true;
}

bool Process::write_stdin(std::string_view data) {
  while (!data.empty() && stdin_fd_ >= 0) {
    ssize_t n = ::write(stdin_fd_, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // EPIPE: the test runner ignores SIGPIPE
    data.remove_prefix(static_cast<size_t>(n));
  }
  return data.empty();
}

void Process::close_stdin() { close_fd(stdin_fd_); }

bool Process::reap(bool block) {
  if (status_) return true;
  if (pid_ <= 0) return false;
  int wstatus = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &wstatus, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r != pid_) return false;
  if (WIFSIGNALED(wstatus)) {
    status_ = ExitStatus{true, WTERMSIG(wstatus)};
  } else {
    status_ = ExitStatus{false, WEXITSTATUS(wstatus)};
  }
  return true;
}

bool Process::signal(int signo) {
  if (pid_ <= 0 || reap(false)) return false;
  return ::kill(pid_, signo) == 0;
}

bool Process::running() { return pid_ > 0 && !reap(false); }

std::optional<ExitStatus> Process::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = 1ms;
  while (!reap(false)) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::milliseconds>(pause * 2, 20ms);
  }
  return status_;
}

size_t count_of(std::string_view text, std::string_view needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos;
       at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

std::string CommandResult::describe() const {
  std::string out = timed_out ? "timed out" : "exit code " + std::to_string(exit_code);
  return out + "\n--- stdout ---\n" + stdout + "\n--- stderr ---\n" + stderr;
}

CommandResult run_command(std::vector<std::string> argv, std::string stdin_data,
                          std::chrono::milliseconds timeout) {
  ProcessOptions options;
  options.stdin_pipe = true;
  Process process(std::move(argv), options);
  // A separate writer: a child that writes a lot before reading must not deadlock against us.
  std::thread writer([&process, data = std::move(stdin_data)] {
    process.write_stdin(data);
    process.close_stdin();
  });
  CommandResult result;
  auto status = process.wait_exit(timeout);
  if (!status) {
    result.timed_out = true;
    process.signal(SIGKILL);
    process.wait_exit(10s);
  } else {
    result.exit_code = status->signaled ? 128 + status->code : status->code;
  }
  writer.join();
  // Wait for the readers to reach EOF so that the captured output is complete.
  process.wait_output_end(2s);
  result.stdout = process.stdout_text();
  result.stderr = process.stderr_text();
  return result;
}

CommandResult curl(std::vector<std::string> args) {
  std::vector<std::string> argv = {"curl", "-sS", "--max-time", "20"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(std::move(argv));
}

long rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

}  // namespace portico::test
