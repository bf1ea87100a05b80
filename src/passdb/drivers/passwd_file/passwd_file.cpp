#include "passdb/drivers/passwd_file/passwd_file.hpp"

#include <asio/co_spawn.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <system_error>
#include <thread>

#include "core/secure.hpp"
#include "core/strings.hpp"

namespace portier::passdb {

PasswdFileData::Entry::~Entry() { core::secure_zero(password); }

namespace {
constexpr std::string_view kName = "passwd-file";
}

std::shared_ptr<const config::PassdbSettings> parse_passwd_file_settings(config::PassdbSection& section) {
  auto s = std::make_shared<PasswdFileSettings>();
  if (!section.has("path")) {
    section.error("path", "passdb: missing required key 'path'");
    return nullptr;
  }
  auto path = section.string("path");
  if (!path) return nullptr;
  if (path->empty()) {
    section.error("path", "passdb.path: must not be empty");
    return nullptr;
  }
  s->path = section.resolve_path(*path);
  return s;
}

const PasswdFileSettings& passwd_file_settings(const config::Passdb& cfg) {
  return dynamic_cast<const PasswdFileSettings&>(*cfg.settings);
}

config::Passdb passwd_file_config(std::string path) {
  config::Passdb c;
  c.driver = std::string(kName);
  auto s = std::make_shared<PasswdFileSettings>();
  s->path = std::move(path);
  c.settings = std::move(s);
  return c;
}

PasswdFileData parse_passwd_file(std::string_view text) {
  PasswdFileData d;
  int lineno = 0;
  while (!text.empty()) {
    ++lineno;
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (core::trim(line).empty() || line.front() == '#') continue;

    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      d.errors.push_back({lineno, "missing ':' after user name"});
      continue;
    }
    std::string_view user = line.substr(0, colon);
    if (user.empty()) {
      d.errors.push_back({lineno, "empty user name"});
      continue;
    }
    if (line.find('\0') != std::string_view::npos) {
      d.errors.push_back({lineno, "NUL character in line"});
      continue;
    }
    // Fields: [0]=password [1]=uid [2]=gid [3]=gecos [4]=home [5]=shell, then extra.
    std::string_view rest = line.substr(colon + 1);
    std::string_view password;
    std::string_view extra;
    for (int field = 0; field < 6; ++field) {
      size_t c = rest.find(':');
      std::string_view value = rest.substr(0, c);
      if (field == 0) password = value;
      if (c == std::string_view::npos) {
        rest = {};
        break;
      }
      rest = rest.substr(c + 1);
      if (field == 5) extra = rest;
    }
    if (d.users.count(std::string(user))) {
      d.errors.push_back({lineno, "duplicate user '" + std::string(user) + "' (first entry used)"});
      continue;
    }
    PasswdFileData::Entry e;
    e.password.assign(password);
    e.fields = parse_extra_fields(extra);
    d.users.emplace(std::string(user), std::move(e));
  }
  return d;
}

bool PasswdFile::FileId::operator==(const FileId& o) const {
  return dev == o.dev && ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
         mtime.tv_nsec == o.mtime.tv_nsec && ctime.tv_sec == o.ctime.tv_sec && ctime.tv_nsec == o.ctime.tv_nsec;
}

struct PasswdFile::Shared {
  std::string path;
  mutable std::mutex mu;                 // held only to copy/swap the pointer and counters
  mutable std::condition_variable idle;  // a background re-read ended
  std::shared_ptr<const PasswdFileData> data;
  FileId id;                             // the version `data` was read from
  unsigned loads = 0;
  bool reloading = false;                // a background re-read is running
  bool has_failed = false;               // the last re-read of `failed_id` failed
  FileId failed_id;
  std::string failed_error;
  std::atomic<bool> stop{false};         // the PasswdFile is gone: don't bother parsing
};

PasswdFile::PasswdFile(config::Passdb cfg)
    : cfg_(std::move(cfg)),
      default_fields_(parse_extra_fields(cfg_.default_fields)),
      override_fields_(parse_extra_fields(cfg_.override_fields)),
      shared_(std::make_shared<Shared>()) {
  path_ = cfg_.settings ? passwd_file_settings(cfg_).path : std::string();
  shared_->path = path_;
}

PasswdFile::~PasswdFile() { shared_->stop = true; }

namespace {

using FileId = PasswdFile::FileId;

FileId file_id(const struct stat& st) { return FileId{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim}; }

// Reads the whole file through `fd`. Returns false with errno set on failure.
bool read_all(int fd, std::string& out) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) return true;
    out.append(buf, static_cast<size_t>(n));
  }
}

// Reads and parses the file; no lock held. `id` identifies the version
// actually read (the file may be replaced between a stat() and the open()).
std::shared_ptr<const PasswdFileData> read_file(const std::string& path, FileId& id, std::string& error,
                                                const std::atomic<bool>* stop) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "passwd-file " + path + ": open() failed: " + std::strerror(errno);
    return nullptr;
  }
  struct stat fst {};
  std::string text;
  bool ok = ::fstat(fd, &fst) == 0 && read_all(fd, text);
  int err = errno;
  ::close(fd);
  if (!ok) {
    core::secure_zero(text);
    error = "passwd-file " + path + ": read() failed: " + std::strerror(err);
    return nullptr;
  }
  if (stop && stop->load()) {
    core::secure_zero(text);
    error = "passwd-file " + path + ": re-read abandoned";
    return nullptr;
  }
  auto data = std::make_shared<PasswdFileData>(parse_passwd_file(text));
  core::secure_zero(text);
  id = file_id(fst);
  return data;
}

// The background re-read: parse without any lock, swap the pointer under the
// short lock, then free the replaced table here rather than on whichever
// lookup thread happens to drop the last reference.
void reload_in_background(std::shared_ptr<PasswdFile::Shared> sh, FileId wanted) {
  FileId id;
  std::string err;
  auto data = read_file(sh->path, id, err, &sh->stop);
  std::shared_ptr<const PasswdFileData> old;
  {
    std::lock_guard lock(sh->mu);
    if (data) {
      old = std::move(sh->data);
      sh->data = std::move(data);
      sh->id = id;
      ++sh->loads;
      sh->has_failed = false;
      core::secure_zero(sh->failed_error);
    } else {
      sh->has_failed = true;
      sh->failed_id = wanted;
      sh->failed_error = std::move(err);
    }
    sh->reloading = false;
  }
  sh->idle.notify_all();
  // Lookups hold a table only for one check (microseconds); bounded wait.
  for (int i = 0; old && old.use_count() > 1 && i < 5000; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  old.reset();
}

}  // namespace

core::Result<std::shared_ptr<const PasswdFileData>> PasswdFile::snapshot() {
  Shared& sh = *shared_;
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    return core::fail("passwd-file " + path_ + ": stat() failed: " + std::strerror(errno));
  }
  const FileId cur = file_id(st);
  std::shared_ptr<const PasswdFileData> current;
  {
    std::lock_guard lock(sh.mu);
    current = sh.data;
    if (current) {
      if (cur == sh.id) return current;
      if (sh.has_failed && cur == sh.failed_id) {
        return core::fail(sh.failed_error);
      }
      if (sh.reloading) return current;  // the new table is on its way
      sh.reloading = true;
    }
  }
  if (current) {
    // Changed: parse on a background thread, answer from the current table.
    try {
      std::thread(reload_in_background, shared_, cur).detach();
    } catch (const std::system_error&) {
      std::lock_guard lock(sh.mu);
      sh.reloading = false;  // no thread: try again on a later lookup
    }
    return current;
  }

  // The first load (make_passwd_file at startup or on SIGHUP) is synchronous.
  FileId id;
  std::string error;
  auto data = read_file(path_, id, error, nullptr);
  if (!data) return core::fail(std::move(error));
  std::lock_guard lock(sh.mu);
  if (!sh.data) {
    sh.data = data;
    sh.id = id;
    ++sh.loads;
  }
  return sh.data;
}

core::Result<void> PasswdFile::load() {
  if (auto r = snapshot(); !r) return r.error();
  return {};
}

bool PasswdFile::wait_reload_idle(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(shared_->mu);
  return shared_->idle.wait_for(lock, timeout, [&] { return !shared_->reloading; });
}

Lookup PasswdFile::verify(const Request& req) {
  bool needs_hash = false;
  return check(req, true, needs_hash);
}

std::optional<Lookup> PasswdFile::lookup_inline(const Request& req) {
  bool needs_hash = false;
  Lookup res = check(req, false, needs_hash);
  if (needs_hash) return std::nullopt;
  return res;
}

namespace {
// Runs on the hashing pool. A plain coroutine function with by-value
// parameters (GCC 12 mis-handles lambda captures in coroutine frames); it
// holds the passdb, so a reload cannot free it under the check.
net::Task<Lookup> verify_on_pool(std::shared_ptr<PasswdFile> db, RequestCopy req) {
  co_return db->verify(req.view());
}
}  // namespace

net::Task<Lookup> PasswdFile::lookup(const Request& req) {
  // Password hashing is slow by design: never on the worker's event loop.
  if (!req.hashing) co_return verify(req);
  co_return co_await asio::co_spawn(req.hashing->get_executor(),
                                    verify_on_pool(shared_from_this(), RequestCopy(req)),
                                    asio::use_awaitable);
}

Lookup PasswdFile::check(const Request& req, bool may_hash, bool& needs_hash) {
  const std::string_view user = req.user, password = req.password;
  Lookup res;
  res.passdb = kName;
  auto snap = snapshot();
  if (!snap) {
    res.result = Result::TempFail;
    res.error = snap.error().message;
    return res;
  }
  const std::shared_ptr<const PasswdFileData>& data = *snap;
  auto it = data->users.find(std::string(user));
  if (it == data->users.end()) {
    res.result = Result::UnknownUser;
    return res;
  }
  const auto& entry = it->second;
  res.reply.user = it->first;
  for (const auto& [k, v] : default_fields_) res.reply.set(k, v);
  for (const auto& [k, v] : entry.fields) res.reply.set(k, v);
  for (const auto& [k, v] : override_fields_) res.reply.set(k, v);
  if (req.lookup_only) {
    res.result = Result::Ok;
    return res;
  }

  // The stored password without its "{SCHEME}" prefix: empty means "no
  // password" (Dovecot: "Empty password"), whatever the scheme.
  std::string_view stored = entry.password;
  if (!stored.empty() && stored.front() == '{') {
    auto close = stored.find('}');
    if (close != std::string_view::npos) stored.remove_prefix(close + 1);
  }
  if (res.reply.has("nopassword")) {
    // Dovecot: nopassword is only honoured when the stored password is empty.
    if (stored.empty()) {
      res.result = Result::Ok;
      return res;
    }
    res.error = "passwd-file: user " + res.reply.user + ": nopassword set but password is non-empty (ignored)";
  }
  if (stored.empty()) {
    res.result = Result::Mismatch;
    res.error = "passwd-file: user " + res.reply.user + " has no password";
    return res;
  }
  if (!may_hash && !cleartext_scheme(entry.password, cfg_.default_pass_scheme)) {
    needs_hash = true;
    return res;
  }
  apply_verify(res, verify_password(entry.password, password, cfg_.default_pass_scheme),
               "passwd-file: user " + res.reply.user);
  return res;
}

std::vector<LineError> PasswdFile::line_errors() const {
  std::shared_ptr<const PasswdFileData> d;
  {
    std::lock_guard lock(shared_->mu);
    d = shared_->data;
  }
  return d ? d->errors : std::vector<LineError>{};
}

std::vector<std::string> PasswdFile::warnings() const {
  std::vector<std::string> out;
  for (const auto& e : line_errors()) out.push_back(path_ + ":" + std::to_string(e.line) + ": " + e.message);
  return out;
}

unsigned PasswdFile::load_count() const {
  std::lock_guard lock(shared_->mu);
  return shared_->loads;
}

core::Result<std::shared_ptr<PasswdFile>> make_passwd_file(const config::Passdb& cfg) {
  const auto* settings = dynamic_cast<const PasswdFileSettings*>(cfg.settings.get());
  if (!settings || settings->path.empty()) {
    return core::fail("passwd-file: path not set");
  }
  if (!known_scheme(cfg.default_pass_scheme)) {
    return core::fail("passwd-file " + settings->path + ": unknown default_pass_scheme '" + cfg.default_pass_scheme + "'");
  }
  auto p = std::make_shared<PasswdFile>(cfg);
  if (auto r = p->load(); !r) return r.error();
  return p;
}

}  // namespace portier::passdb
