#include <gtest/gtest.h>

#include "result_helpers.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <thread>

#include "passdb/chain.hpp"
#include "passdb/drivers/passwd_file/passwd_file.hpp"
#include "passdb/registry.hpp"

using namespace portier;
using namespace portier::passdb;
namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "portier_passdb_XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

config::Passdb cfg_for(const std::string& path) { return passwd_file_config(path); }

Request req(std::string_view user, std::string_view pass) {
  Request r;
  r.user = user;
  r.password = pass;
  r.protocol = "imap";
  r.remote_ip = "192.0.2.1";
  r.local_ip = "192.0.2.2";
  return r;
}

TEST(PassdbParse, FieldsAndBadLines) {
  auto d = parse_passwd_file(
      "# comment\n"
      "\n"
      "   \n"
      "a:{PLAIN}pa:1:2:gecos:/home/a:/bin/sh:k1=v1 bare k2=v=2\n"
      "b:{PLAIN}pb\r\n"
      "noseparator\n"
      ":emptyuser\n"
      "c::::::\n"
      "a:{PLAIN}dup\n"
      "d:{PLAIN}x:::::: proxy   host=1.2.3.4\n"
      "e:{PLAIN}x:::\n"
      "f:{PLAIN}x::::::  nologin reason=Moved\\ away\n");
  ASSERT_EQ(d.users.size(), 6u);
  const auto& a = d.users.at("a");
  EXPECT_EQ(a.password, "{PLAIN}pa");
  ASSERT_EQ(a.fields.size(), 3u);
  EXPECT_EQ(a.fields[0], (std::pair<std::string, std::string>{"k1", "v1"}));
  EXPECT_EQ(a.fields[1], (std::pair<std::string, std::string>{"bare", ""}));
  EXPECT_EQ(a.fields[2], (std::pair<std::string, std::string>{"k2", "v=2"}));
  EXPECT_EQ(d.users.at("b").password, "{PLAIN}pb");  // CR stripped
  EXPECT_TRUE(d.users.at("b").fields.empty());
  EXPECT_EQ(d.users.at("c").password, "");
  EXPECT_EQ(d.users.at("d").fields.size(), 2u);
  EXPECT_TRUE(d.users.at("e").fields.empty());
  ASSERT_EQ(d.errors.size(), 3u);
  EXPECT_EQ(d.errors[0].line, 6);
  EXPECT_EQ(d.errors[1].line, 7);
  EXPECT_EQ(d.errors[2].line, 9);
  EXPECT_NE(d.errors[2].message.find("duplicate"), std::string::npos);
  EXPECT_EQ(d.errors[2].message.find("dup\n"), std::string::npos);
  EXPECT_EQ(d.users.at("a").password, "{PLAIN}pa");  // first wins
}

TEST(PassdbParse, ErrorsDoNotLeakLineContent) {
  auto d = parse_passwd_file("topsecretpassword\n");
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_EQ(d.errors[0].message.find("topsecret"), std::string::npos);
}

TEST(PassdbPasswdFile, TestDataFile) {
  std::string err;
  auto pdb = portier::testing_util::made(make_passwd_file(cfg_for(std::string(PORTIER_TEST_DATA) + "/users.passwd")), err);
  ASSERT_TRUE(pdb) << err;
  struct Case { const char* user; const char* pass; Result expect; };
  const Case cases[] = {
      {"plainuser", "secret", Result::Ok},    {"plainuser", "wrong", Result::Mismatch},
      {"cryptuser", "secret", Result::Ok},    {"cryptuser", "", Result::Mismatch},
      {"sshauser", "secret", Result::Ok},     {"sshauser", "secreT", Result::Mismatch},
      {"proxyall", "anything", Result::Ok},   {"proxyall", "", Result::Ok},
      {"nobody", "secret", Result::UnknownUser}, {"PlainUser", "secret", Result::UnknownUser},
      {"this line is bad", "", Result::UnknownUser},
  };
  for (const auto& c : cases) {
    auto r = pdb->verify(req(c.user, c.pass));
    EXPECT_EQ(r.result, c.expect) << c.user << "/" << c.pass << ": " << r.error;
  }
  auto r = pdb->verify(req("sshauser", "secret"));
  EXPECT_EQ(r.reply.user, "sshauser");
  EXPECT_TRUE(r.reply.has("proxy"));
  EXPECT_EQ(r.reply.get("proxy"), "");
  EXPECT_EQ(r.reply.get("host"), "192.0.2.10");
  EXPECT_EQ(r.reply.get("port"), "1143");
  EXPECT_FALSE(r.reply.get("uid"));

  auto w = pdb->warnings();
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NE(w[0].find("users.passwd:6: "), std::string::npos) << w[0];
  EXPECT_NE(w[1].find("users.passwd:7: "), std::string::npos) << w[1];
}

TEST(PassdbPasswdFile, NoPasswordRules) {
  TempDir dir;
  std::string path = dir.file("u.passwd");
  write_file(path,
             "empty:\n"
             "emptyscheme:{PLAIN}\n"
             "nopw::::::: nopassword\n"
             "nopwy:{PLAIN}:::::: nopassword=y\n"
             "nopwhash:{PLAIN}real:::::: nopassword\n");
  std::string err;
  auto pdb = portier::testing_util::made(make_passwd_file(cfg_for(path)), err);
  ASSERT_TRUE(pdb) << err;
  EXPECT_EQ(pdb->verify(req("empty", "")).result, Result::Mismatch);
  EXPECT_EQ(pdb->verify(req("empty", "x")).result, Result::Mismatch);
  EXPECT_EQ(pdb->verify(req("emptyscheme", "")).result, Result::Mismatch);
  EXPECT_EQ(pdb->verify(req("nopw", "whatever")).result, Result::Ok);
  EXPECT_EQ(pdb->verify(req("nopwy", "whatever")).result, Result::Ok);
  // Dovecot ignores nopassword when a password is set.
  auto r = pdb->verify(req("nopwhash", "whatever"));
  EXPECT_EQ(r.result, Result::Mismatch);
  EXPECT_FALSE(r.error.empty());
  EXPECT_EQ(pdb->verify(req("nopwhash", "real")).result, Result::Ok);
}

TEST(PassdbPasswdFile, BadStoredPasswordIsTempFail) {
  TempDir dir;
  std::string path = dir.file("u.passwd");
  write_file(path, "u1:{ARGON9}xyz\nu2:{SSHA256}!!!!\n");
  std::string err;
  auto pdb = portier::testing_util::made(make_passwd_file(cfg_for(path)), err);
  ASSERT_TRUE(pdb);
  auto r1 = pdb->verify(req("u1", "xyz"));
  EXPECT_EQ(r1.result, Result::TempFail);
  EXPECT_EQ(r1.error.find("xyz"), std::string::npos);
  EXPECT_EQ(pdb->verify(req("u2", "x")).result, Result::TempFail);
}

TEST(PassdbPasswdFile, DefaultAndOverrideFields) {
  TempDir dir;
  std::string path = dir.file("u.passwd");
  write_file(path, "a:{PLAIN}x:::::: host=10.0.0.1 port=1\nb:{PLAIN}x\n");
  auto c = cfg_for(path);
  c.default_fields = "proxy host=10.9.9.9 port=143";
  c.override_fields = "port=10143 ssl=yes";
  std::string err;
  auto pdb = portier::testing_util::made(make_passwd_file(c), err);
  ASSERT_TRUE(pdb);
  auto a = pdb->verify(req("a", "x"));
  ASSERT_EQ(a.result, Result::Ok);
  using F = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(a.reply.fields, (F{{"proxy", ""}, {"host", "10.0.0.1"}, {"port", "10143"}, {"ssl", "yes"}}));
  auto b = pdb->verify(req("b", "x"));
  EXPECT_EQ(b.reply.fields, (F{{"proxy", ""}, {"host", "10.9.9.9"}, {"port", "10143"}, {"ssl", "yes"}}));
  // Mismatch replies carry the fields too.
  EXPECT_EQ(pdb->verify(req("b", "y")).reply.user, "b");
}

// Re-reads run in the background: a lookup notices the change, the next
// ones see the new table once it is parsed.
void settle(PasswdFile* pdb) {
  (void)pdb->verify(req("nobody-settle", "x"));  // notices the change
  ASSERT_TRUE(pdb->wait_reload_idle(std::chrono::seconds(10)));
}

TEST(PassdbPasswdFile, ReloadOnChange) {
  TempDir dir;
  std::string path = dir.file("u.passwd");
  write_file(path, "alice:{PLAIN}one\n");
  std::string err;
  auto owned = portier::testing_util::made(make_passwd_file(cfg_for(path)), err);
  ASSERT_TRUE(owned) << err;
  auto* pdb = dynamic_cast<PasswdFile*>(owned.get());
  ASSERT_NE(pdb, nullptr);
  EXPECT_EQ(pdb->load_count(), 1u);
  EXPECT_EQ(pdb->verify(req("alice", "one")).result, Result::Ok);
  EXPECT_EQ(pdb->verify(req("alice", "one")).result, Result::Ok);
  EXPECT_EQ(pdb->load_count(), 1u);  // unchanged file is not re-read

  // Same size, different content: force a different mtime explicitly.
  write_file(path, "alice:{PLAIN}two\n");
  struct timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  settle(pdb);
  EXPECT_EQ(pdb->verify(req("alice", "one")).result, Result::Mismatch);
  EXPECT_EQ(pdb->verify(req("alice", "two")).result, Result::Ok);
  EXPECT_EQ(pdb->load_count(), 2u);

  // Size change alone is detected.
  write_file(path, "alice:{PLAIN}two\nbob:{PLAIN}three\nbad line\n");
  settle(pdb);
  EXPECT_EQ(pdb->verify(req("bob", "three")).result, Result::Ok);
  EXPECT_EQ(pdb->load_count(), 3u);
  ASSERT_EQ(pdb->line_errors().size(), 1u);
  EXPECT_EQ(pdb->line_errors()[0].line, 3);

  // Atomic replace (rename) is detected through the inode.
  std::string tmp = dir.file("u.passwd.tmp");
  write_file(tmp, "carol:{PLAIN}four\n");
  fs::rename(tmp, path);
  settle(pdb);
  EXPECT_EQ(pdb->verify(req("carol", "four")).result, Result::Ok);
  EXPECT_EQ(pdb->verify(req("alice", "two")).result, Result::UnknownUser);
  EXPECT_TRUE(pdb->line_errors().empty());

  // File removed: temporary failure, then recovery.
  fs::remove(path);
  auto r = pdb->verify(req("carol", "four"));
  EXPECT_EQ(r.result, Result::TempFail);
  EXPECT_FALSE(r.error.empty());
  write_file(path, "carol:{PLAIN}five\n");
  settle(pdb);
  EXPECT_EQ(pdb->verify(req("carol", "five")).result, Result::Ok);

  // Unreadable after a change: the re-read fails, lookups get a temporary
  // failure (as a synchronous re-read would), and recover.
  if (::geteuid() != 0) {
    fs::permissions(path, fs::perms::none);
    settle(pdb);
    EXPECT_EQ(pdb->verify(req("carol", "five")).result, Result::TempFail);
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
    settle(pdb);
    EXPECT_EQ(pdb->verify(req("carol", "five")).result, Result::Ok);
  }
}

// Issue 8 item 10: a re-read must not stall lookups. The lookup that notices
// the change is answered from the table it already has (a synchronous
// re-read would answer from the new file), the parse runs elsewhere, and a
// large file's parse does not delay lookups made meanwhile.
TEST(PassdbPasswdFile, ReloadRunsInBackground) {
  TempDir dir;
  std::string path = dir.file("u.passwd");
  auto big = [](const std::string& tag, int n) {
    std::string t;
    t.reserve(static_cast<size_t>(n) * 40);
    for (int i = 0; i < n; ++i) t += "u" + std::to_string(i) + ":{PLAIN}" + tag + std::to_string(i) + "::::::\n";
    return t;
  };
  constexpr int kUsers = 300000;
  write_file(path, "probe:{PLAIN}old\n" + big("a", kUsers));
  std::string err;
  auto owned = portier::testing_util::made(make_passwd_file(cfg_for(path)), err);
  ASSERT_TRUE(owned) << err;
  auto* pdb = dynamic_cast<PasswdFile*>(owned.get());
  ASSERT_NE(pdb, nullptr);

  // How long does one parse of this file take here?
  auto t0 = std::chrono::steady_clock::now();
  auto parsed = parse_passwd_file("probe:{PLAIN}new\n" + big("b", kUsers));
  auto parse_time = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(parsed.users.size(), static_cast<size_t>(kUsers) + 1);

  write_file(path, "probe:{PLAIN}new\n" + big("b", kUsers));
  auto t1 = std::chrono::steady_clock::now();
  auto first = pdb->verify_inline(req("probe", "old"));
  std::chrono::steady_clock::duration worst{};
  for (int i = 0; i < 50; ++i) {
    auto s = std::chrono::steady_clock::now();
    (void)pdb->verify_inline(req("u" + std::to_string(i), "x"));
    worst = std::max(worst, std::chrono::steady_clock::now() - s);
  }
  auto lookups_time = std::chrono::steady_clock::now() - t1;
  ASSERT_TRUE(first);
  EXPECT_EQ(first->result, Result::Ok) << "the lookup that noticed the change waited for the new table";
  // Lookups meanwhile take a fraction of one parse (bounds generous for a loaded machine).
  EXPECT_LT(lookups_time, parse_time / 2)
      << "lookups " << std::chrono::duration<double, std::milli>(lookups_time).count() << " ms, parse "
      << std::chrono::duration<double, std::milli>(parse_time).count() << " ms";
  EXPECT_LT(worst, std::chrono::milliseconds(100));

  ASSERT_TRUE(pdb->wait_reload_idle(std::chrono::seconds(30)));
  EXPECT_EQ(pdb->load_count(), 2u);
  auto after = pdb->verify_inline(req("probe", "new"));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->result, Result::Ok);
  EXPECT_EQ(pdb->verify_inline(req("u7", "b7"))->result, Result::Ok);
}

// Issue 8 item 7: entries without "{SCHEME}" are CRYPT (Dovecot's default).
TEST(PassdbPasswdFile, UnprefixedPasswordsAreCrypt) {
  TempDir dir;
  std::string path = dir.file("u.passwd");
  const std::string des = "abNANd1rDfiNc";  // crypt("secret", "ab")
  const std::string sha512 = hash_password("SHA512-CRYPT", "secret").substr(14);
  ASSERT_EQ(sha512.substr(0, 3), "$6$");
  write_file(path, "des:" + des + "\nsha:" + sha512 + "\n");
  std::string err;
  auto pdb = portier::testing_util::made(make_passwd_file(cfg_for(path)), err);
  ASSERT_TRUE(pdb) << err;
  EXPECT_EQ(pdb->verify(req("des", "secret")).result, Result::Ok);
  EXPECT_EQ(pdb->verify(req("des", des)).result, Result::Mismatch);
  EXPECT_EQ(pdb->verify(req("sha", "secret")).result, Result::Ok);
  EXPECT_EQ(pdb->verify(req("sha", sha512)).result, Result::Mismatch);
  // Hashing: never answered on the event loop.
  EXPECT_FALSE(pdb->verify_inline(req("des", "secret")));
  EXPECT_FALSE(pdb->verify_inline(req("des", des)));
}

TEST(PassdbPasswdFile, DefaultPassSchemePlain) {
  TempDir dir;
  std::string path = dir.file("u.passwd");
  const std::string sha512 = hash_password("SHA512-CRYPT", "secret").substr(14);
  write_file(path, "p:secret\nsha:" + sha512 + "\nc:{CRYPT}abNANd1rDfiNc\n");
  auto cfg = cfg_for(path);
  cfg.default_pass_scheme = "PLAIN";
  std::string err;
  auto pdb = portier::testing_util::made(make_passwd_file(cfg), err);
  ASSERT_TRUE(pdb) << err;
  auto a = pdb->verify_inline(req("p", "secret"));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->result, Result::Ok);
  EXPECT_EQ(pdb->verify(req("p", "secre")).result, Result::Mismatch);
  EXPECT_EQ(pdb->verify(req("sha", "secret")).result, Result::Ok);  // '$': still CRYPT
  EXPECT_EQ(pdb->verify(req("sha", sha512)).result, Result::Mismatch);
  EXPECT_EQ(pdb->verify(req("c", "secret")).result, Result::Ok);  // explicit prefix wins

  cfg.default_pass_scheme = "ARGON9";
  err.clear();
  EXPECT_EQ(portier::testing_util::made(make_passwd_file(cfg), err), nullptr);
  EXPECT_NE(err.find("default_pass_scheme"), std::string::npos) << err;
}

TEST(PassdbPasswdFile, ConcurrentVerify) {
  TempDir dir;
  std::string path = dir.file("u.passwd");
  std::string hash = hash_password("SHA256-CRYPT", "pw");
  write_file(path, "u:" + hash + "\n");
  std::string err;
  auto pdb = portier::testing_util::made(make_passwd_file(cfg_for(path)), err);
  ASSERT_TRUE(pdb);
  std::atomic<int> ok{0}, bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        auto r = pdb->verify(req("u", (i + t) % 2 ? "pw" : "no"));
        ((i + t) % 2 ? (r.result == Result::Ok ? ok : bad) : (r.result == Result::Mismatch ? ok : bad))++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 40);
  EXPECT_EQ(bad.load(), 0);
}

TEST(PassdbPasswdFile, ServesAndFactoryErrors) {
  TempDir dir;
  std::string path = dir.file("u.passwd");
  write_file(path, "");
  auto c = cfg_for(path);
  std::string err;
  auto all_db = portier::testing_util::made(make_passwd_file(c), err);
  ASSERT_TRUE(all_db);
  auto all = Chain::entry(all_db, "passwd-file", c);  // the protocol filter is the chain's
  EXPECT_TRUE(all.serves("imap"));
  EXPECT_TRUE(all.serves("pop3"));
  c.protocols = {"imap", "submission"};
  auto some_db = portier::testing_util::made(make_passwd_file(c), err);
  ASSERT_TRUE(some_db);
  auto some = Chain::entry(some_db, "passwd-file", c);
  EXPECT_TRUE(some.serves("imap"));
  EXPECT_TRUE(some.serves("submission"));
  EXPECT_FALSE(some.serves("pop3"));
  EXPECT_EQ(some_db->verify(req("x", "y")).result, Result::UnknownUser);

  err.clear();
  EXPECT_EQ(portier::testing_util::made(make_passwd_file(cfg_for(dir.file("missing"))), err), nullptr);
  EXPECT_FALSE(err.empty());
  auto bad = cfg_for(path);
  bad.driver = "ldap";
  std::vector<std::string> errors;  // the driver name is the registry's business
  EXPECT_FALSE(Chain::build({bad}, registry(), errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("ldap"), std::string::npos);
  bad = cfg_for("");
  err.clear();
  EXPECT_EQ(portier::testing_util::made(make_passwd_file(bad), err), nullptr);
  EXPECT_FALSE(err.empty());
}

TEST(PassdbReply, Accessors) {
  Reply r;
  r.fields = {{"a", "1"}, {"bare", ""}};
  EXPECT_TRUE(r.has("a"));
  EXPECT_TRUE(r.has("bare"));
  EXPECT_FALSE(r.has("b"));
  EXPECT_EQ(r.get("a"), "1");
  EXPECT_EQ(r.get("bare"), "");
  EXPECT_EQ(r.get("nope"), std::nullopt);
  r.set("a", "2");
  r.set("c", "3");
  EXPECT_EQ(r.fields.size(), 3u);
  EXPECT_EQ(r.get("a"), "2");
  EXPECT_EQ(parse_extra_fields("  x=1   y  =z  w=a=b "),
            (std::vector<std::pair<std::string, std::string>>{{"x", "1"}, {"y", ""}, {"w", "a=b"}}));
}

}  // namespace

// The engine answers on the event loop only when no hashing is needed.
TEST(PassdbPasswdFile, VerifyInlineOnlyWithoutHashing) {
  TempDir dir;
  std::string path = dir.file("u.passwd");
  write_file(path, "nopw::::::: nopassword\n"
                   "plain:{PLAIN}secret\n"
                   "hashed:" + hash_password("SHA512-CRYPT", "secret") + "\n");
  std::string err;
  auto pdb = portier::testing_util::made(make_passwd_file(cfg_for(path)), err);
  ASSERT_TRUE(pdb) << err;
  auto a = pdb->verify_inline(req("nopw", "x"));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->result, Result::Ok);
  auto b = pdb->verify_inline(req("plain", "secret"));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->result, Result::Ok);
  auto c = pdb->verify_inline(req("plain", "wrong"));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->result, Result::Mismatch);
  auto d = pdb->verify_inline(req("nobody", "x"));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->result, Result::UnknownUser);
  EXPECT_FALSE(pdb->verify_inline(req("hashed", "secret")));  // needs the thread pool
  EXPECT_EQ(pdb->verify(req("hashed", "secret")).result, Result::Ok);
}
