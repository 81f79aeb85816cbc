#include "proxy/reloader.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "proxy/log.h"

namespace portico {

struct Reloader::DirWatch {
  uv_fs_event_t handle;
  Reloader* owner = nullptr;
  WatchSpec spec;
  // The directory watched, by identity: inotify follows the directory, not its path, so one
  // removed or renamed away and replaced by another of the same name (a deploy tool's
  // `rm -rf conf; mv conf.new conf`) must get a new watch.
  dev_t device = 0;
  ino_t inode = 0;
};

namespace {

namespace fs = std::filesystem;

// Links followed while resolving one path before giving up (a loop): the kernel's limit.
constexpr int kMaxLinkHops = 40;

std::string directory_of(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) parent = ".";
  std::error_code ec;
  fs::path absolute = fs::absolute(parent, ec);
  return (ec ? parent : absolute).lexically_normal().string();
}

std::string name_of(const std::string& path) { return fs::path(path).filename().string(); }

bool is_symlink(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

// The identity of the directory now at `dir`: false when there is none.
bool directory_identity(const std::string& dir, dev_t* device, ino_t* inode) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return false;
  *device = st.st_dev;
  *inode = st.st_ino;
  return true;
}

// Calls `add(path)` for each directory entry whose change changes what `file` opens: every
// symbolic link met while resolving it, at any component (certbot's live/NAME/fullchain.pem,
// Kubernetes' "..data", a deploy tool's "current" -> releases/N higher up the path), and the
// file the path ends at. Resolves as the kernel does: a link's target replaces it, "..", after
// a link, goes up from where the link led.
template <typename Add>
void add_resolution(const std::string& file, const Add& add) {
  std::error_code ec;
  fs::path absolute = fs::absolute(file, ec);
  if (ec) absolute = file;
  std::vector<std::string> rest;  // the components still to resolve, the next one last
  auto push_front = [&](const fs::path& path) {
    std::vector<std::string> parts;
    for (const fs::path& part : path.relative_path()) parts.push_back(part.string());
    rest.insert(rest.end(), parts.rbegin(), parts.rend());
  };
  push_front(absolute);
  fs::path resolved = absolute.root_path();
  for (int links = 0; !rest.empty();) {
    std::string part = std::move(rest.back());
    rest.pop_back();
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      resolved = resolved.parent_path();
      continue;
    }
    fs::path next = resolved / part;
    if (links < kMaxLinkHops && is_symlink(next.string())) {
      add(next.string());
      char target[PATH_MAX];
      ssize_t n = ::readlink(next.c_str(), target, sizeof target - 1);
      if (n > 0) {
        ++links;
        fs::path to(std::string(target, static_cast<size_t>(n)));
        if (to.is_absolute()) resolved = to.root_path();
        push_front(to);
        continue;
      }
    }
    resolved = std::move(next);
  }
  add(resolved.string());
}

}  // namespace

Reloader::Reloader(uv_loop_t* loop, const Config& config,
                   std::shared_ptr<const ConfigSnapshot> current, ConfigInputs current_inputs,
                   Apply apply)
    : loop_(loop),
      config_(config),
      current_(std::move(current)),
      last_inputs_(std::move(current_inputs)),
      apply_(std::move(apply)) {}

Reloader::~Reloader() { assert(!started_ || closed_); }

void Reloader::start() {
  if (started_) return;
  started_ = true;
  debounce_ = new uv_timer_t;
  uv_timer_init(loop_, debounce_);
  debounce_->data = this;
  update_watches();
}

void Reloader::close() {
  if (!started_ || closed_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(debounce_),
           [](uv_handle_t* handle) { delete reinterpret_cast<uv_timer_t*>(handle); });
  debounce_ = nullptr;
  for (DirWatch* watch : watches_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&watch->handle),
             [](uv_handle_t* handle) { delete static_cast<DirWatch*>(handle->data); });
  }
  watches_.clear();
}

std::vector<Reloader::WatchSpec> Reloader::watch_specs() const {
  std::map<std::string, WatchSpec> by_dir;
  auto add = [&](const std::string& path, bool any_name) {
    WatchSpec& spec = by_dir[directory_of(path)];
    spec.dir = directory_of(path);
    spec.names.insert(name_of(path));
    spec.any_name = spec.any_name || any_name;
  };
  std::vector<std::string> files = {config_.routes_path};
  // Any change in --cert-dir counts: a new NAME.crt or live/NAME/ is a new certificate.
  if (!config_.cert_dir.empty()) {
    add(config_.cert_dir + "/.", true);
    // And in each NAME/ folder, also one without its files yet: a tool that makes the folder
    // and writes fullchain.pem and privkey.pem into it later must still be noticed.
    std::error_code ec;
    for (const fs::directory_entry& entry : fs::directory_iterator(config_.cert_dir, ec)) {
      std::error_code type_ec;
      if (entry.is_directory(type_ec)) add(entry.path().string() + "/.", true);
    }
  }
  std::vector<std::string> ignored;  // reported by the reload itself
  // (Not the development certificate: a reload keeps it, config.h.)
  for (const CertKeyFiles& pair : config_.dev_certificate ? std::vector<CertKeyFiles>{}
                                                          : certificate_files(config_, &ignored)) {
    files.push_back(pair.cert);
    files.push_back(pair.key);
  }
  for (const std::string& file : files) {
    add_resolution(file, [&](const std::string& path) { add(path, false); });
  }
  // A directory that is not there (removed for a while by a deploy that then renames another
  // into its place, or a certificate's folder not made yet) cannot be watched; its nearest
  // existing ancestor is, for the name on the way down, so that its arrival brings a reload,
  // and that reload a watch of the directory itself.
  std::map<std::string, WatchSpec> ancestors;
  for (auto it = by_dir.begin(); it != by_dir.end();) {
    struct stat st;
    if (::stat(it->first.c_str(), &st) == 0) {
      ++it;
      continue;
    }
    fs::path missing(it->first);
    fs::path parent = missing.parent_path();
    while (parent != missing && ::stat(parent.c_str(), &st) != 0) {
      missing = parent;
      parent = parent.parent_path();
    }
    if (parent != missing) {
      WatchSpec& up = ancestors[parent.string()];
      up.dir = parent.string();
      up.names.insert(missing.filename().string());
    }
    it = by_dir.erase(it);
  }
  for (auto& [dir, spec] : ancestors) {
    WatchSpec& merged = by_dir[dir];
    merged.dir = dir;
    merged.names.insert(spec.names.begin(), spec.names.end());
  }
  std::vector<WatchSpec> specs;
  for (auto& [dir, spec] : by_dir) specs.push_back(std::move(spec));
  return specs;
}

void Reloader::update_watches() {
  if (closed_) return;
  std::vector<WatchSpec> specs = watch_specs();
  // Close the watches of directories no longer needed, or no longer at their path; keep (and
  // update) the others.
  for (auto it = watches_.begin(); it != watches_.end();) {
    DirWatch* watch = *it;
    auto spec = std::find_if(specs.begin(), specs.end(),
                             [&](const WatchSpec& s) { return s.dir == watch->spec.dir; });
    dev_t device = 0;
    ino_t inode = 0;
    const bool replaced = !directory_identity(watch->spec.dir, &device, &inode) ||
                          device != watch->device || inode != watch->inode;
    if (spec == specs.end() || replaced) {
      log_debug("reload", "unwatching dir=", watch->spec.dir);
      uv_close(reinterpret_cast<uv_handle_t*>(&watch->handle),
               [](uv_handle_t* handle) { delete static_cast<DirWatch*>(handle->data); });
      it = watches_.erase(it);
      continue;
    }
    watch->spec = std::move(*spec);
    specs.erase(spec);
    ++it;
  }
  for (WatchSpec& spec : specs) {
    auto* watch = new DirWatch;
    watch->owner = this;
    watch->spec = std::move(spec);
    // Taken before the watch starts: a directory replaced in between is seen at the next look.
    directory_identity(watch->spec.dir, &watch->device, &watch->inode);
    uv_fs_event_init(loop_, &watch->handle);
    watch->handle.data = watch;
    int rc = uv_fs_event_start(&watch->handle, &Reloader::on_fs_event, watch->spec.dir.c_str(), 0);
    if (rc != 0) {
      // A directory that does not exist yet (a certificate not issued): SIGHUP still works, and
      // the next reload tries to watch it again.
      log_warn("reload", "cannot watch dir=", watch->spec.dir, " error=", uv_err_name(rc));
      uv_close(reinterpret_cast<uv_handle_t*>(&watch->handle),
               [](uv_handle_t* handle) { delete static_cast<DirWatch*>(handle->data); });
      continue;
    }
    log_debug("reload", "watching dir=", watch->spec.dir);
    watches_.push_back(watch);
  }
}

void Reloader::on_fs_event(uv_fs_event_t* handle, const char* filename, int, int status) {
  auto* watch = static_cast<DirWatch*>(handle->data);
  Reloader* self = watch->owner;
  if (status < 0) {
    log_warn("reload", "watch failed dir=", watch->spec.dir, " error=", uv_err_name(status));
    return;
  }
  if (filename == nullptr) {  // the kernel did not say which entry: assume ours
    self->schedule(watch->spec.dir);
    return;
  }
  const bool named = watch->spec.names.count(filename) != 0;
  if (watch->spec.any_name || named) {
    self->schedule((fs::path(watch->spec.dir) / filename).string(), named);
    return;
  }
  // The directory's own name: it was removed or renamed away (and perhaps replaced), and then
  // a reload looks at the files there now and watches whatever directory has the path. (Or a
  // file in it has the directory's name: nothing happened to the directory, nothing to do.)
  dev_t device = 0;
  ino_t inode = 0;
  if (fs::path(watch->spec.dir).filename() == filename &&
      (!directory_identity(watch->spec.dir, &device, &inode) || device != watch->device ||
       inode != watch->inode)) {
    self->schedule(watch->spec.dir);
  }
}

void Reloader::schedule(std::string_view why, bool named) {
  if (closed_) return;
  // The first event names the reload: later ones of a burst may be a neighbour's (a log file
  // written in a watched --cert-dir).
  const uint64_t now = uv_now(loop_);
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(debounce_))) {
    pending_trigger_ = str_cat("file path=", why);
    pending_named_ = false;
    burst_started_ms_ = now;
  }
  pending_named_ = pending_named_ || named;
  // Restarting the timer on every event makes a burst (an editor's save, certbot's four symlink
  // swaps) one reload, kDebounce after the last event; but no later than kMaxDelay after the
  // first, so that a directory whose files never stop changing cannot hold a reload back.
  const uint64_t deadline = burst_started_ms_ + static_cast<uint64_t>(kMaxDelay.count());
  const uint64_t wait = std::min<uint64_t>(static_cast<uint64_t>(kDebounce.count()),
                                           deadline > now ? deadline - now : 0);
  uv_timer_start(debounce_, &Reloader::on_debounce, wait, 0);
}

void Reloader::on_debounce(uv_timer_t* timer) {
  auto* self = static_cast<Reloader*>(timer->data);
  self->reload(self->pending_trigger_, /*force=*/false, self->pending_named_);
}

void Reloader::reload_now(std::string_view trigger) {
  // This reload reads the newest files, so a pending file-triggered one has nothing left to do.
  if (debounce_) uv_timer_stop(debounce_);
  reload(trigger, /*force=*/true, /*named=*/true);
}

void Reloader::reload(std::string_view trigger, bool force, bool named) {
  if (closed_) return;
  ConfigInputs inputs = read_config_inputs(config_);
  // Unchanged files skip the work, unless the last attempt failed and one of the files was saved
  // again: what it read may be fine while something it did not compare (a route's ca= bundle)
  // has been fixed since. (Not for a neighbour's event in --cert-dir, a log written there: a
  // broken configuration would be rebuilt, and its errors logged, once a second.)
  if (!force && !(last_attempt_failed_ && named) && inputs.errors.empty() &&
      last_inputs_.errors.empty() && inputs.same_files(last_inputs_)) {
    log_debug("reload", "files unchanged: nothing to do trigger=", trigger);
    update_watches();
    return;
  }
  log_info("reload", "reloading trigger=", trigger);
  ConfigLoadResult result = build_config_snapshot(config_, inputs, current_.get());
  last_inputs_ = std::move(inputs);
  last_attempt_failed_ = !result.snapshot;
  if (!result.snapshot) {
    for (const std::string& error : result.errors) log_error("reload", error);
    log_error("reload", "configuration has errors: keeping the current configuration errors=",
              result.errors.size());
  } else {
    current_ = result.snapshot;
    apply_(current_);
    log_info("reload", "configuration reloaded routes=", current_->routes->routes().size(),
             " certificate=", result.certificate_changed ? "changed" : "unchanged");
    if (result.certificate_changed) {
      for (const std::string& warning : current_->warnings) log_warn("tls", warning);
    }
  }
  // A certbot renewal re-points the links: watch the new targets' directories.
  update_watches();
}

}  // namespace portico
