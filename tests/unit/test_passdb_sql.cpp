// SQL passdbs (issue 10): Dovecot's result rules shared by sqlite and pgsql
// (sql_common.hpp), the sqlite driver end to end on a temporary database,
// config errors with file:line for bad queries, the connect string's
// password hidden from messages, and [auth] passdb_timeout in the chain.
#include <gtest/gtest.h>

#include "app/registries.hpp"

#include <sqlite3.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "passdb/blocking.hpp"
#include "passdb/chain.hpp"
#include "passdb/registry.hpp"
#include "passdb/sql_common.hpp"

using namespace portier;
using namespace portier::passdb;
using namespace std::chrono_literals;

namespace {

using Col = std::pair<std::string_view, std::optional<std::string_view>>;

SqlRow row(std::vector<Col> cols, size_t rows = 1) {
  SqlRow r;
  r.rows = rows;
  for (auto& [n, v] : cols) {
    r.names.push_back(n);
    r.values.push_back(v);
  }
  return r;
}

Request req(std::string_view user, std::string_view pass) {
  Request r;
  r.user = user;
  r.password = pass;
  r.protocol = "imap";
  r.remote_ip = "127.0.0.1";
  return r;
}

Lookup answer(const SqlRow& r, std::string_view pass = "secret", config::Passdb cfg = {}) {
  Request q = req("alice@example.org", pass);
  return sql_verify(sql_answer(q, r, cfg), q, cfg);
}

constexpr auto kNull = std::nullopt;

}  // namespace

TEST(PassdbSqlResult, RowsAndPasswordColumn) {
  EXPECT_EQ(answer(row({{"password", "{PLAIN}secret"}}, 0)).result, Result::UnknownUser);
  auto two = answer(row({{"password", "{PLAIN}secret"}}, 2));
  EXPECT_EQ(two.result, Result::TempFail);
  EXPECT_EQ(two.error, "Password query returned multiple matches");
  auto nopw = answer(row({{"host", "10.0.0.1"}, {"proxy", "Y"}}));
  EXPECT_EQ(nopw.result, Result::TempFail);
  EXPECT_EQ(nopw.error, "Password query must return a field named 'password'");
  EXPECT_EQ(nopw.passdb, "sql");
  EXPECT_EQ(answer(row({{"password", "{PLAIN}secret"}})).result, Result::Ok);
  EXPECT_EQ(answer(row({{"password", "{PLAIN}secret"}}), "wrong").result, Result::Mismatch);
  // NULL password: only with nopassword (any value) is any password accepted.
  EXPECT_EQ(answer(row({{"password", kNull}})).result, Result::Mismatch);
  EXPECT_EQ(answer(row({{"password", kNull}, {"nopassword", "N"}}), "anything").result, Result::Ok);
  // password_noscheme: in default_pass_scheme even when it starts with '{'.
  config::Passdb plain;
  plain.default_pass_scheme = "PLAIN";
  EXPECT_EQ(answer(row({{"password_noscheme", "{x}y"}}), "{x}y", plain).result, Result::Ok);
  EXPECT_EQ(answer(row({{"password", "{x}y"}}), "{x}y", plain).result, Result::TempFail);  // unknown scheme
  // A hashed password verifies too.
  std::string h = hash_password("SHA512-CRYPT", "secret");
  EXPECT_EQ(answer(row({{"password", h}})).result, Result::Ok);
}

TEST(PassdbSqlResult, ExtraFieldsNullsBooleansUserdb) {
  auto l = answer(row({{"password", "{PLAIN}secret"},
                       {"proxy", "N"},  // existence test: still on
                       {"host", "10.0.0.5"},
                       {"port", "1143"},
                       {"destuser", kNull},  // NULL: absent
                       {"nologin", kNull},
                       {"starttls", "yes"},
                       {"userdb_home", "/home/a"},  // ignored
                       {"", "x"},                   // empty name: skipped
                       {"proxy_not_trusted", "0"}}));
  ASSERT_EQ(l.result, Result::Ok);
  EXPECT_EQ(l.reply.user, "alice@example.org");
  EXPECT_EQ(l.reply.get("proxy"), std::optional<std::string_view>(""));
  EXPECT_EQ(l.reply.get("host"), std::optional<std::string_view>("10.0.0.5"));
  EXPECT_EQ(l.reply.get("port"), std::optional<std::string_view>("1143"));
  EXPECT_EQ(l.reply.get("starttls"), std::optional<std::string_view>("yes"));
  EXPECT_TRUE(l.reply.has("proxy_not_trusted"));
  EXPECT_FALSE(l.reply.has("destuser"));
  EXPECT_FALSE(l.reply.has("nologin"));
  EXPECT_FALSE(l.reply.has("userdb_home"));
  EXPECT_FALSE(l.reply.has("password"));
  EXPECT_EQ(l.reply.fields.size(), 5u);
  // The same fields through proxy_fields: 'N' AS proxy proxies (Dovecot).
  auto pf = parse_proxy_fields(l.reply, 143, 993);
  ASSERT_TRUE(pf.fields) << pf.error;
  EXPECT_TRUE(pf.fields->proxy);
  EXPECT_TRUE(pf.fields->not_trusted);
  EXPECT_EQ(pf.fields->tls, BackendTls::StartTls);
  // `user` renames; default/override fields wrap the row's.
  config::Passdb cfg;
  cfg.default_fields = "port=24 proxy";
  cfg.override_fields = "host=10.9.9.9";
  auto r = answer(row({{"password", "{PLAIN}secret"}, {"user", "bob"}, {"host", "10.0.0.1"}, {"port", "25"}}),
                  "secret", cfg);
  EXPECT_EQ(r.reply.user, "bob");
  EXPECT_EQ(r.reply.get("port"), std::optional<std::string_view>("25"));
  EXPECT_EQ(r.reply.get("host"), std::optional<std::string_view>("10.9.9.9"));
  // lookup_only: no password check at all.
  Request q = req("alice@example.org", "");
  q.lookup_only = true;
  EXPECT_EQ(sql_answer(q, row({{"password", "{PLAIN}other"}}), cfg).lookup.result, Result::Ok);
}

TEST(PassdbSqlConfig, HidesConnectPassword) {
  EXPECT_EQ(hide_conninfo_password("host=db password=s3cret dbname=mail"), "host=db password=*** dbname=mail");
  EXPECT_EQ(hide_conninfo_password("password = 'a b\\' c' user=x"), "password = *** user=x");
  EXPECT_EQ(hide_conninfo_password("postgresql://u:s3cret@db/mail"), "postgresql://u:***@db/mail");
  EXPECT_EQ(hide_conninfo_password("postgresql://db/mail?password=s3cret&x=1"), "postgresql://db/mail?password=***&x=1");
}

namespace {
config::LoadResult load(const std::string& passdbs) {
  return config::load_string("[[listener]]\nprotocol = \"imap\"\nport = 0\n" + passdbs, "/t/portier.toml",
                             app::registries());
}
}  // namespace

TEST(PassdbSqlConfig, ErrorsWithLine) {
  auto r = load("[[passdb]]\ndriver = \"pgsql\"\nconnect = \"host=x\"\nquery = \"SELECT '%{nosuch}'\"\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 7);
  EXPECT_NE(r.errors[0].message.find("passdb.query: unknown variable '%{nosuch}'"), std::string::npos);
  r = load("[[passdb]]\ndriver = \"sqlite\"\nquery = \"SELECT 1\"\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message.find("missing required key 'connect'"), std::string::npos);
  r = load("[[passdb]]\ndriver = \"sqlite\"\nconnect = \"users.db\"\nquery = \"SELECT '%u'\"\n");
  ASSERT_TRUE(r.config);
  const auto& s = dynamic_cast<const SqlSettings&>(*r.config->passdbs[0].settings);
  EXPECT_EQ(s.connect, "/t/users.db");
  EXPECT_EQ(r.config->auth.passdb_timeout, 10s);  // the default
  // A bad conninfo fails at build time, without echoing the password.
  r = load("[[passdb]]\ndriver = \"pgsql\"\nconnect = \"nosuchkey=1 password=s3cret\"\nquery = \"SELECT '%u'\"\n");
  ASSERT_TRUE(r.config);
  std::vector<std::string> errors;
  EXPECT_FALSE(Chain::build(r.config->passdbs, registry(), errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].find("s3cret"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("invalid connect string"), std::string::npos) << errors[0];
}

namespace {

Lookup run(const Chain& chain, const Request& r) {
  asio::io_context io;
  std::optional<Lookup> out;
  asio::co_spawn(io, chain.lookup(r), [&](std::exception_ptr e, Lookup l) {
    if (e) std::rethrow_exception(e);
    out = std::move(l);
  });
  io.run();
  EXPECT_TRUE(out.has_value());
  return out.value_or(Lookup{});
}

struct TempDb {
  std::string path;
  explicit TempDb(const char* sql) {
    char tmpl[] = "/tmp/portier-sqlite-XXXXXX";
    int fd = mkstemp(tmpl);
    ::close(fd);
    path = tmpl;
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }
  ~TempDb() { ::unlink(path.c_str()); }
};

}  // namespace

TEST(PassdbSqlite, EndToEnd) {
  TempDb db(
      "CREATE TABLE users (userid TEXT, password TEXT, host TEXT, proxy TEXT, nologin TEXT, reason TEXT);"
      "INSERT INTO users VALUES ('alice@example.org', '{PLAIN}secret', '10.0.0.1', 'Y', NULL, NULL);"
      "INSERT INTO users VALUES ('o''brien@example.org', '{PLAIN}pw', '10.0.0.2', 'N', NULL, NULL);"
      "INSERT INTO users VALUES ('dup', '{PLAIN}x', NULL, NULL, NULL, NULL);"
      "INSERT INTO users VALUES ('dup', '{PLAIN}x', NULL, NULL, NULL, NULL);"
      "INSERT INTO users VALUES ('off', NULL, NULL, NULL, 'Y', 'gone fishing');");
  auto r = load("[[passdb]]\ndriver = \"sqlite\"\nconnect = \"" + db.path +
                "\"\nquery = \"SELECT password, host, proxy, nologin, reason, 'Y' AS nopassword_if_null "
                "FROM users WHERE userid = '%{user}'\"\n");
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  std::vector<std::string> errors;
  auto chain = Chain::build(r.config->passdbs, registry(), errors);
  ASSERT_TRUE(chain) << errors[0];
  EXPECT_EQ(chain->entries()[0].name, "sql");

  auto ok = run(*chain, req("alice@example.org", "secret"));
  EXPECT_EQ(ok.result, Result::Ok);
  EXPECT_EQ(ok.passdb, "sql");
  EXPECT_EQ(ok.reply.get("host"), std::optional<std::string_view>("10.0.0.1"));
  EXPECT_EQ(run(*chain, req("alice@example.org", "nope")).result, Result::Mismatch);
  EXPECT_EQ(run(*chain, req("o'brien@example.org", "pw")).result, Result::Ok);  // quote escaped
  EXPECT_EQ(run(*chain, req("x' OR '1'='1", "secret")).result, Result::UnknownUser);
  EXPECT_EQ(run(*chain, req(std::string_view("alice@example.org\0x", 19), "secret")).result, Result::UnknownUser);
  EXPECT_EQ(run(*chain, req("dup", "x")).result, Result::TempFail);
  auto off = run(*chain, req("off", "x"));
  EXPECT_EQ(off.result, Result::Mismatch);  // NULL password, no nopassword
  EXPECT_EQ(off.reply.get("reason"), std::optional<std::string_view>("gone fishing"));

  // A missing database file is an error at load, not at login.
  auto bad = load("[[passdb]]\ndriver = \"sqlite\"\nconnect = \"/nonexistent/x.db\"\nquery = \"SELECT 1\"\n");
  ASSERT_TRUE(bad.config);
  errors.clear();
  EXPECT_FALSE(Chain::build(bad.config->passdbs, registry(), errors));
}

namespace {
class Hanging final : public SyncPassdb {
 public:
  Lookup lookup_blocking(const Request&) override {
    std::this_thread::sleep_for(1500ms);
    Lookup l;
    l.result = Result::Ok;
    return l;
  }
};
}  // namespace

// [auth] passdb_timeout: a hanging passdb is a TempFail after the timeout
// (then result_internalfail: the next passdb answers), never a stuck login.
TEST(PassdbChainTimeout, HangingPassdbTimesOut) {
  Chain chain;
  config::Passdb cfg;
  chain.add(Chain::entry(std::make_shared<BlockingPassdb>(std::make_shared<Hanging>(), 1), "hang", cfg));
  chain.set_timeout(200ms);
  auto t0 = std::chrono::steady_clock::now();
  asio::io_context io;
  std::optional<Lookup> out;
  std::chrono::steady_clock::duration took{};
  const Request r = req("u", "p");  // must outlive the lookup
  asio::co_spawn(io, chain.lookup(r), [&](std::exception_ptr, Lookup l) {
    out = std::move(l);
    took = std::chrono::steady_clock::now() - t0;
  });
  io.run();  // returns once the abandoned lookup finished too (~1.5 s)
  ASSERT_TRUE(out);
  EXPECT_EQ(out->result, Result::TempFail);
  EXPECT_NE(out->error.find("timed out after 200 ms"), std::string::npos) << out->error;
  EXPECT_EQ(out->passdb, "hang");
  EXPECT_LT(took, 800ms);
  EXPECT_GE(took, 190ms);
  // Fast answers are unchanged by the timeout.
  chain.set_timeout(5s);
  Chain quick;
  quick.set_timeout(5s);
  EXPECT_EQ(quick.timeout(), 5s);
}

// pgsql without a server: the failed connect is a TempFail naming the
// driver, the worker's pool then fails fast during its backoff, and the
// connect string's password is in no message.
TEST(PassdbPgsql, ConnectRefusedThenBackoff) {
  auto r = load("[[passdb]]\ndriver = \"pgsql\"\nconnect = \"host=127.0.0.1 port=1 dbname=x user=y "
                "password=s3cret-pw connect_timeout=2\"\nquery = \"SELECT password FROM u WHERE e = '%u'\"\n");
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  std::vector<std::string> errors;
  auto chain = Chain::build(r.config->passdbs, registry(), errors);
  ASSERT_TRUE(chain) << errors[0];
  chain->set_timeout(3s);
  auto first = run(*chain, req("alice", "pw"));
  EXPECT_EQ(first.result, Result::TempFail);
  EXPECT_EQ(first.passdb, "sql");
  EXPECT_NE(first.error.find("pgsql: connect failed"), std::string::npos) << first.error;
  auto t0 = std::chrono::steady_clock::now();
  auto second = run(*chain, req("alice", "pw"));  // another io_context: its own pool, own backoff
  EXPECT_EQ(second.result, Result::TempFail);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  for (const auto& e : {first.error, second.error}) EXPECT_EQ(e.find("s3cret"), std::string::npos) << e;
}

namespace {
// Answers through lookup() without ever suspending.
class Immediate final : public Passdb {
 public:
  net::Task<Lookup> lookup(const Request&) override {
    Lookup l;
    l.result = Result::UnknownUser;
    co_return l;
  }
};
}  // namespace

// An answer produced before the chain starts waiting (co_spawn ran the
// lookup inline) is taken at once, not after the timeout.
TEST(PassdbChainTimeout, ImmediateAnswerDoesNotWaitForTheTimer) {
  Chain chain;
  config::Passdb cfg;
  chain.add(Chain::entry(std::make_shared<Immediate>(), "now", cfg));
  chain.set_timeout(2s);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(run(chain, req("u", "p")).result, Result::UnknownUser);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
}

// Checklist S4: an empty `host` column is present (not NULL) and fails the
// login as a configuration error; a NULL proxy column means "not proxied".
TEST(PassdbSqlResult, EmptyHostAndNullProxy) {
  auto l = answer(row({{"password", "{PLAIN}secret"}, {"proxy", "Y"}, {"host", ""}}));
  ASSERT_EQ(l.result, Result::Ok);
  auto pf = parse_proxy_fields(l.reply, 143, 993);
  EXPECT_FALSE(pf.fields);
  EXPECT_NE(pf.error.find("host"), std::string::npos) << pf.error;
  auto off = answer(row({{"password", "{PLAIN}secret"}, {"proxy", kNull}, {"host", "10.0.0.1"}}));
  auto pf2 = parse_proxy_fields(off.reply, 143, 993);
  ASSERT_TRUE(pf2.fields);
  EXPECT_FALSE(pf2.fields->proxy);
}
