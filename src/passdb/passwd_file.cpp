#include "passdb/passwd_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/secure.hpp"
#include "core/strings.hpp"

namespace portier::passdb {

PasswdFileData::Entry::~Entry() { core::secure_zero(password); }

Passdb::~Passdb() = default;
std::vector<std::string> Passdb::warnings() const { return {}; }

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

PasswdFile::PasswdFile(config::Passdb cfg)
    : cfg_(std::move(cfg)),
      default_fields_(parse_extra_fields(cfg_.default_fields)),
      override_fields_(parse_extra_fields(cfg_.override_fields)) {}

namespace {

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

}  // namespace

std::shared_ptr<const PasswdFileData> PasswdFile::snapshot(std::string& error) {
  std::lock_guard lock(mu_);
  struct stat st {};
  if (::stat(cfg_.path.c_str(), &st) != 0) {
    error = "passwd-file " + cfg_.path + ": stat() failed: " + std::strerror(errno);
    return nullptr;
  }
  FileId id{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
  if (data_ && id == id_) return data_;

  int fd = ::open(cfg_.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "passwd-file " + cfg_.path + ": open() failed: " + std::strerror(errno);
    return nullptr;
  }
  struct stat fst {};
  std::string text;
  bool ok = ::fstat(fd, &fst) == 0 && read_all(fd, text);
  int err = errno;
  ::close(fd);
  if (!ok) {
    core::secure_zero(text);
    error = "passwd-file " + cfg_.path + ": read() failed: " + std::strerror(err);
    return nullptr;
  }
  auto data = std::make_shared<PasswdFileData>(parse_passwd_file(text));
  core::secure_zero(text);
  // Identify the version we actually read (the file may have been replaced
  // between stat() and open()).
  id_ = FileId{fst.st_dev, fst.st_ino, fst.st_size, fst.st_mtim, fst.st_ctim};
  data_ = std::move(data);
  ++loads_;
  return data_;
}

bool PasswdFile::load(std::string& error) { return snapshot(error) != nullptr; }

Lookup PasswdFile::verify(std::string_view user, std::string_view password, const RequestInfo&) {
  bool needs_hash = false;
  return check(user, password, true, needs_hash);
}

std::optional<Lookup> PasswdFile::verify_inline(std::string_view user, std::string_view password,
                                                const RequestInfo&) {
  bool needs_hash = false;
  Lookup res = check(user, password, false, needs_hash);
  if (needs_hash) return std::nullopt;
  return res;
}

namespace {
/// Schemes whose check is a plain comparison (no deliberate hashing cost).
bool cheap_scheme(std::string_view stored) {
  if (stored.empty() || stored.front() != '{') return stored.empty() || stored.front() != '$';
  auto close = stored.find('}');
  if (close == std::string_view::npos) return false;
  std::string_view scheme = stored.substr(1, close - 1);
  return core::iequals(scheme, "PLAIN") || core::iequals(scheme, "CLEAR") ||
         core::iequals(scheme, "CLEARTEXT");
}
}  // namespace

Lookup PasswdFile::check(std::string_view user, std::string_view password, bool may_hash,
                         bool& needs_hash) {
  Lookup res;
  std::string err;
  auto data = snapshot(err);
  if (!data) {
    res.result = Result::TempFail;
    res.error = std::move(err);
    return res;
  }
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
  if (!may_hash && !cheap_scheme(entry.password)) {
    needs_hash = true;
    return res;
  }
  switch (verify_password(entry.password, password)) {
    case VerifyResult::Match:
      res.result = Result::Ok;
      break;
    case VerifyResult::Mismatch:
      res.result = Result::Mismatch;
      break;
    case VerifyResult::UnknownScheme:
      res.result = Result::TempFail;
      res.error = "passwd-file: user " + res.reply.user + ": unknown password scheme";
      break;
    case VerifyResult::Malformed:
      res.result = Result::TempFail;
      res.error = "passwd-file: user " + res.reply.user + ": malformed stored password";
      break;
  }
  return res;
}

bool PasswdFile::serves(std::string_view protocol) const {
  if (cfg_.protocols.empty()) return true;
  return std::find(cfg_.protocols.begin(), cfg_.protocols.end(), protocol) != cfg_.protocols.end();
}

std::vector<LineError> PasswdFile::line_errors() const {
  std::lock_guard lock(mu_);
  return data_ ? data_->errors : std::vector<LineError>{};
}

std::vector<std::string> PasswdFile::warnings() const {
  std::vector<std::string> out;
  for (const auto& e : line_errors()) out.push_back(cfg_.path + ":" + std::to_string(e.line) + ": " + e.message);
  return out;
}

unsigned PasswdFile::load_count() const {
  std::lock_guard lock(mu_);
  return loads_;
}

std::unique_ptr<Passdb> make_passdb(const config::Passdb& cfg, std::string& error) {
  if (cfg.driver != "passwd-file") {
    error = "unknown passdb driver '" + cfg.driver + "'";
    return nullptr;
  }
  if (cfg.path.empty()) {
    error = "passwd-file: path not set";
    return nullptr;
  }
  auto p = std::make_unique<PasswdFile>(cfg);
  if (!p->load(error)) return nullptr;
  return p;
}

}  // namespace portier::passdb
