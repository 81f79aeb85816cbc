#pragma once

// Live reload: watches the route file and the certificate/key files, and on a change (or SIGHUP)
// reads and validates them again; a valid result is handed to `apply`, an invalid one changes
// nothing and is logged with every error.
//
// The split is deliberate, for several workers: this class (watching, debouncing, reading,
// validating) runs on one loop, and `apply` receives an immutable ConfigSnapshot. With one worker
// `apply` is Worker::apply_configuration on the same loop; with several, `apply` stores the
// snapshot in each worker's mailbox and wakes it with uv_async_send, and each worker swaps it in
// on its own loop. Nothing in the snapshot is mutable, so sharing it across threads is safe.
//
// Files are watched through their DIRECTORIES (uv_fs_event_t on the directory, filtered by name),
// because editors save by writing a temporary file and renaming it over the old one, and certbot
// swaps symlinks (live/NAME/fullchain.pem -> ../../archive/NAME/fullchainN.pem): a watch on the
// file itself would stay on the old inode and see neither. Every symbolic link met while
// resolving a path is watched by name in its directory, at any component: a swap may replace the
// file's own link (certbot), an intermediate one (Kubernetes' "..data") or a directory link
// higher up (a deploy tool's "current" -> releases/N). File events are coalesced for kDebounce
// (at most kMaxDelay) before one reload, and a reload whose files are byte-for-byte those of the
// previous attempt, if that attempt succeeded, is skipped.
//
// Reading is synchronous on the loop: the files are a few kilobytes, read from the page cache.
// Building a new SSL_CTX (only when the certificate files changed) takes about a millisecond.

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config.h"
#include "proxy/config_loader.h"

namespace portico {

class Reloader {
 public:
  using Apply = std::function<void(std::shared_ptr<const ConfigSnapshot>)>;
  static constexpr std::chrono::milliseconds kDebounce{200};
  static constexpr std::chrono::milliseconds kMaxDelay{1000};  // from a burst's first event

  // `current` and `current_inputs` are what the process started with.
  Reloader(uv_loop_t* loop, const Config& config, std::shared_ptr<const ConfigSnapshot> current,
           ConfigInputs current_inputs, Apply apply);
  ~Reloader();  // close() must have been called (the handles end asynchronously)
  Reloader(const Reloader&) = delete;
  Reloader& operator=(const Reloader&) = delete;

  // Starts watching the files' directories.
  void start();
  // Reloads now, even if no file changed (SIGHUP: the operator asked).
  void reload_now(std::string_view trigger);
  // Stops watching; each handle is freed in its close callback, so this object may be destroyed
  // right after, even before the loop has run those callbacks.
  void close();

 private:
  struct DirWatch;
  struct WatchSpec {
    std::string dir;
    std::set<std::string> names;
    bool any_name = false;  // --cert-dir: any new entry may be a certificate
  };

  static void on_fs_event(uv_fs_event_t* handle, const char* filename, int events, int status);
  static void on_debounce(uv_timer_t* timer);
  // `named`: the event names one of the watched files (not just any entry of --cert-dir).
  void schedule(std::string_view why, bool named = true);
  void reload(std::string_view trigger, bool force, bool named);
  std::vector<WatchSpec> watch_specs() const;
  void update_watches();

  uv_loop_t* loop_;
  const Config& config_;
  std::shared_ptr<const ConfigSnapshot> current_;
  ConfigInputs last_inputs_;  // of the last attempt, valid or not
  Apply apply_;
  uv_timer_t* debounce_ = nullptr;  // heap: freed in its close callback
  std::vector<DirWatch*> watches_;  // each freed in its close callback
  std::string pending_trigger_;     // the first event of the pending burst
  uint64_t burst_started_ms_ = 0;   // uv_now() at that event
  bool pending_named_ = false;      // an event of the burst named a watched file
  bool last_attempt_failed_ = false;
  bool started_ = false;
  bool closed_ = false;
};

}  // namespace portico
