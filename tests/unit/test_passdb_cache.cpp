// The auth cache (issue 10, passdb/cache.hpp) through the chain: positive and
// negative TTL, LRU by bytes, stale entries served while the database fails,
// the re-ask after a mismatch following a good login, flush of one user or
// all, the key built from the query's variables, stats, [auth.cache] config;
// and %variables in the static driver's fields.
#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/thread_pool.hpp>
#include <atomic>
#include <map>
#include <thread>

#include "app/registries.hpp"
#include "passdb/cache.hpp"
#include "passdb/chain.hpp"
#include "passdb/password.hpp"
#include "passdb/registry.hpp"
#include "passdb/sql_common.hpp"

using namespace portier;
using namespace portier::passdb;
using namespace std::chrono_literals;

namespace {

// A database with an SQL-shaped query (so the chain caches it) that honours
// Request::fetch like the SQL drivers: a found user is Ok with `stored`.
class FakeDb final : public Passdb {
 public:
  struct Row {
    std::string password;  // "{PLAIN}..."
    std::string host;
  };
  std::map<std::string, Row> rows;
  bool down = false;
  std::atomic<int> calls{0};

  std::optional<Lookup> lookup_inline(const Request& req) override { return answer(req); }
  net::Task<Lookup> lookup(const Request& req) override { co_return answer(req); }
  Lookup answer(const Request& req) {
    ++calls;
    Lookup l;
    if (down) {
      l.result = Result::TempFail;
      l.error = "fake: database down";
      return l;
    }
    auto it = rows.find(std::string(req.user));
    if (it == rows.end()) {
      l.result = Result::UnknownUser;
      return l;
    }
    l.reply.user = it->first;
    l.reply.set("host", it->second.host);
    if (req.fetch) {
      l.result = Result::Ok;
      l.stored = std::make_shared<const core::Secret>(it->second.password);
      return l;
    }
    l.result = req.lookup_only || verify_password(it->second.password, req.password) == VerifyResult::Match
                   ? Result::Ok
                   : Result::Mismatch;
    return l;
  }
};

config::Passdb sql_cfg(std::string query, std::string connect = "fake.db") {
  auto s = std::make_shared<SqlSettings>();
  s->driver = "sqlite";
  s->connect = std::move(connect);
  auto t = Template::compile(query);
  EXPECT_TRUE(t);
  s->query = std::move(*t);
  config::Passdb c;
  c.driver = "sqlite";
  c.default_pass_scheme = "PLAIN";
  c.settings = s;
  return c;
}

struct Fixture {
  std::shared_ptr<FakeDb> db = std::make_shared<FakeDb>();
  AuthCache cache;
  Chain chain;
  explicit Fixture(CacheSettings s = {1 << 20, 1h, 1h},
                   std::string query = "SELECT password, host FROM users WHERE userid = '%{user}'")
      : cache(s) {
    db->rows["alice"] = {"{PLAIN}secret", "10.0.0.1"};
    db->rows["bob"] = {"{PLAIN}bobpw", "10.0.0.2"};
    chain.add(Chain::entry(db, "sql", sql_cfg(std::move(query))));
    chain.set_cache(&cache);
  }
};

Request req(std::string_view user, std::string_view pass, std::string_view ip = "127.0.0.1") {
  Request r;
  r.user = user;
  r.password = pass;
  r.protocol = "imap";
  r.remote_ip = ip;
  return r;
}

// Three lines of listener before `text`: config line numbers are +3.
config::LoadResult load(const std::string& text) {
  return config::load_string("[[listener]]\nprotocol = \"imap\"\nport = 0\n" + text, "/t/portier.toml",
                             app::registries());
}

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

}  // namespace

TEST(AuthCache, PositiveEntryAnswersWithoutTheDatabaseAndStillChecksThePassword) {
  Fixture f;
  auto l = run(f.chain, req("alice", "secret"));
  EXPECT_EQ(l.result, Result::Ok);
  EXPECT_EQ(l.passdb, "sql");
  EXPECT_EQ(l.reply.get("host"), std::optional<std::string_view>("10.0.0.1"));
  EXPECT_EQ(f.db->calls, 1);
  l = run(f.chain, req("alice", "secret"));
  EXPECT_EQ(l.result, Result::Ok);
  EXPECT_EQ(l.reply.get("host"), std::optional<std::string_view>("10.0.0.1"));
  EXPECT_EQ(f.db->calls, 1);  // a hit
  auto st = f.cache.stats();
  EXPECT_EQ(st.hits, 1u);
  EXPECT_EQ(st.misses, 1u);
  EXPECT_EQ(st.entries, 1u);
  EXPECT_GT(st.bytes, 0u);
  // lookup_only is answered from the cache too.
  Request lo = req("alice", "");
  lo.lookup_only = true;
  EXPECT_EQ(run(f.chain, lo).result, Result::Ok);
  EXPECT_EQ(f.db->calls, 1);
}

TEST(AuthCache, WrongPasswordAgainstACachedEntryAfterAFailedLoginIsNotReasked) {
  Fixture f;
  EXPECT_EQ(run(f.chain, req("alice", "wrong")).result, Result::Mismatch);  // miss: cached, last login failed
  EXPECT_EQ(f.db->calls, 1);
  EXPECT_EQ(run(f.chain, req("alice", "wrong")).result, Result::Mismatch);  // trusted: no re-ask
  EXPECT_EQ(f.db->calls, 1);
  EXPECT_EQ(run(f.chain, req("alice", "secret")).result, Result::Ok);  // verified per login
  EXPECT_EQ(f.db->calls, 1);
}

TEST(AuthCache, MismatchAfterAGoodLoginReasksTheDatabaseOnce) {
  Fixture f;
  EXPECT_EQ(run(f.chain, req("alice", "secret")).result, Result::Ok);
  f.db->rows["alice"].password = "{PLAIN}changed";
  // The old password keeps working until the TTL (Dovecot's semantics).
  EXPECT_EQ(run(f.chain, req("alice", "secret")).result, Result::Ok);
  EXPECT_EQ(f.db->calls, 1);
  // The new one mismatches the cached hash after a good login: re-ask.
  EXPECT_EQ(run(f.chain, req("alice", "changed")).result, Result::Ok);
  EXPECT_EQ(f.db->calls, 2);
  EXPECT_EQ(run(f.chain, req("alice", "changed")).result, Result::Ok);
  EXPECT_EQ(f.db->calls, 2);  // the fresh entry answers
  // Old password now: mismatch after a good login -> one re-ask, then trusted.
  EXPECT_EQ(run(f.chain, req("alice", "secret")).result, Result::Mismatch);
  EXPECT_EQ(f.db->calls, 3);
  EXPECT_EQ(run(f.chain, req("alice", "secret")).result, Result::Mismatch);
  EXPECT_EQ(f.db->calls, 3);
}

TEST(AuthCache, NegativeEntriesUseNegativeTtl) {
  Fixture f({1 << 20, 1h, 1h});
  EXPECT_EQ(run(f.chain, req("nobody", "x")).result, Result::UnknownUser);
  EXPECT_EQ(run(f.chain, req("nobody", "x")).result, Result::UnknownUser);
  EXPECT_EQ(f.db->calls, 1);
  Fixture off({1 << 20, 1h, 0ms});  // negative_ttl 0: unknown users are not cached
  EXPECT_EQ(run(off.chain, req("nobody", "x")).result, Result::UnknownUser);
  EXPECT_EQ(run(off.chain, req("nobody", "x")).result, Result::UnknownUser);
  EXPECT_EQ(off.db->calls, 2);
  EXPECT_EQ(off.cache.stats().entries, 0u);
}

TEST(AuthCache, ExpiredEntriesAreReaskedAndServedWhileTheDatabaseFails) {
  Fixture f({1 << 20, 0ms, 0ms});  // everything expires at once
  EXPECT_EQ(run(f.chain, req("alice", "secret")).result, Result::Ok);
  EXPECT_EQ(run(f.chain, req("alice", "secret")).result, Result::Ok);
  EXPECT_EQ(f.db->calls, 2);  // expired: asked again
  f.db->down = true;
  auto l = run(f.chain, req("alice", "secret"));
  EXPECT_EQ(l.result, Result::Ok);  // stale entry served
  EXPECT_EQ(l.reply.get("host"), std::optional<std::string_view>("10.0.0.1"));
  EXPECT_NE(l.error.find("served from the auth cache"), std::string::npos);
  EXPECT_EQ(run(f.chain, req("alice", "wrong")).result, Result::Mismatch);  // still checked
  EXPECT_EQ(run(f.chain, req("bob", "bobpw")).result, Result::TempFail);   // never cached
  f.db->down = false;
  EXPECT_EQ(run(f.chain, req("bob", "bobpw")).result, Result::Ok);  // recovery
}

TEST(AuthCache, KeyIncludesEveryVariableOfTheQuery) {
  Fixture f({1 << 20, 1h, 1h}, "SELECT password, host FROM users WHERE userid = '%u' AND ip = '%{remote_ip}'");
  EXPECT_EQ(run(f.chain, req("alice", "secret", "10.1.1.1")).result, Result::Ok);
  EXPECT_EQ(run(f.chain, req("alice", "secret", "10.1.1.1")).result, Result::Ok);
  EXPECT_EQ(f.db->calls, 1);
  EXPECT_EQ(run(f.chain, req("alice", "secret", "10.2.2.2")).result, Result::Ok);  // other key
  EXPECT_EQ(f.db->calls, 2);
  EXPECT_EQ(f.cache.stats().entries, 2u);
  // Another passdb identity (a changed query or connect after SIGHUP) never
  // shares entries with the old one.
  Chain other;
  other.add(Chain::entry(f.db, "sql", sql_cfg("SELECT password, host FROM users WHERE userid = '%u' AND "
                                              "ip = '%{remote_ip}' AND 1=1")));
  other.set_cache(&f.cache);
  EXPECT_EQ(run(other, req("alice", "secret", "10.1.1.1")).result, Result::Ok);
  EXPECT_EQ(f.db->calls, 3);
}

TEST(AuthCache, QueryUsingThePasswordIsNotCached) {
  Fixture f({1 << 20, 1h, 1h}, "SELECT password FROM users WHERE userid = '%u' AND pw = '%w'");
  EXPECT_EQ(f.chain.entries()[0].cache_template, nullptr);
  run(f.chain, req("alice", "secret"));
  run(f.chain, req("alice", "secret"));
  EXPECT_EQ(f.db->calls, 2);
  EXPECT_EQ(f.cache.stats().entries, 0u);
}

TEST(AuthCache, LruEvictionWithinTheByteBudget) {
  // Size the budget for about 3 entries per shard, then insert many.
  CachedAnswer probe;
  probe.found = true;
  probe.reply.user = "u000";
  probe.reply.set("host", "10.0.0.1");
  probe.stored = std::make_shared<const core::Secret>("{PLAIN}pw000");
  const size_t one = AuthCache::entry_bytes(std::string(40, 'k'), "u000", probe);
  AuthCache cache({one * 3 * 16, 1h, 1h});
  const auto now = AuthCache::Clock::now();
  for (int i = 0; i < 400; ++i) {
    CachedAnswer a;
    a.found = true;
    a.reply.user = "u" + std::to_string(1000 + i);
    a.reply.set("host", "10.0.0.1");
    a.stored = std::make_shared<const core::Secret>("{PLAIN}pw000");
    cache.put(std::string(36, 'k') + std::to_string(1000 + i), a.reply.user, std::move(a), false, now);
    // keep entry 1000 hot: LRU must keep it
    EXPECT_TRUE(cache.get(std::string(36, 'k') + "1000", now)) << i;
  }
  auto st = cache.stats();
  EXPECT_LE(st.bytes, one * 3 * 16);
  EXPECT_GT(st.entries, 16u);
  EXPECT_LT(st.entries, 3u * 16 + 1);
  EXPECT_FALSE(cache.get(std::string(36, 'k') + "1001", now));  // cold: evicted
  // Shrinking the budget evicts at once; 0 empties and disables.
  cache.configure({one * 16, 1h, 1h});
  EXPECT_LE(cache.stats().bytes, one * 16);
  cache.configure({0, 1h, 1h});
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_FALSE(cache.enabled());
}

TEST(AuthCache, FlushOneUserOrAll) {
  Fixture f;
  run(f.chain, req("alice", "secret"));
  run(f.chain, req("bob", "bobpw"));
  run(f.chain, req("nobody", "x"));
  EXPECT_EQ(f.cache.stats().entries, 3u);
  EXPECT_EQ(f.cache.flush({"alice"}), 1u);
  EXPECT_EQ(f.cache.stats().entries, 2u);
  run(f.chain, req("alice", "secret"));
  EXPECT_EQ(f.db->calls, 4);  // alice asked again
  run(f.chain, req("bob", "bobpw"));
  EXPECT_EQ(f.db->calls, 4);  // bob still cached
  EXPECT_EQ(f.cache.flush({}), 3u);
  EXPECT_EQ(f.cache.stats().entries, 0u);
  EXPECT_EQ(f.cache.stats().bytes, 0u);
}

TEST(AuthCache, ProcessWideCacheFlushAndStats) {
  auto& c = auth_cache();
  c.configure({1 << 20, 1h, 1h});
  CachedAnswer a;
  a.found = true;
  a.reply.user = "zed";
  c.put("k1", "zed", std::move(a), true, AuthCache::Clock::now());
  EXPECT_EQ(auth_cache_stats().entries, 1u);
  EXPECT_EQ(auth_cache_flush({"nobody"}), 0u);
  EXPECT_EQ(auth_cache_flush({}), 1u);
  c.configure({0, 1h, 1h});
}

TEST(AuthCache, ConcurrentLookupsFromManyThreads) {
  Fixture f;
  for (int i = 0; i < 64; ++i) f.db->rows["u" + std::to_string(i)] = {"{PLAIN}pw", "h"};
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        std::string u = "u" + std::to_string((i * 7 + t) % 64);
        if (run(f.chain, req(u, "pw")).result != Result::Ok) ++bad;
        if (i % 100 == 0) f.cache.flush({u});
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad, 0);
  auto st = f.cache.stats();
  EXPECT_EQ(st.hits + st.misses, 2000u);
}

TEST(AuthCache, HashedPasswordsAreVerifiedOnTheHashingPool) {
  Fixture f;
  const std::string h = hash_password("SHA512-CRYPT", "hashed-pw");
  ASSERT_FALSE(h.empty());
  f.db->rows["carol"] = {h, "10.0.0.3"};
  asio::thread_pool pool(1);
  Request r = req("carol", "hashed-pw");
  r.hashing = &pool;
  EXPECT_EQ(run(f.chain, r).result, Result::Ok);
  EXPECT_EQ(run(f.chain, r).result, Result::Ok);
  r.password = "nope";
  EXPECT_EQ(run(f.chain, r).result, Result::Mismatch);
  EXPECT_EQ(f.db->calls, 2);  // the mismatch after a good login re-asked once
}

TEST(AuthCacheConfig, Keys) {
  const std::string passdb = "[[passdb]]\ndriver = \"static\"\nfields = \"nopassword\"\n";
  auto r = load("[auth.cache]\nsize = \"16M\"\nttl = \"30m\"\nnegative_ttl = 60\n" + passdb);
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  EXPECT_EQ(r.config->auth.cache.size, 16u << 20);
  EXPECT_EQ(r.config->auth.cache.ttl, std::chrono::milliseconds(30 * 60 * 1000));
  EXPECT_EQ(r.config->auth.cache.negative_ttl, std::chrono::milliseconds(60 * 1000));
  auto def = load(passdb);
  ASSERT_TRUE(def.config);
  EXPECT_EQ(def.config->auth.cache.size, 0u);
  for (const char* bad : {"size = \"16X\"", "size = \"M\"", "size = -1", "tll = \"1h\""}) {
    auto b = load(std::string("[auth.cache]\n") + bad + "\n" + passdb);
    EXPECT_FALSE(b.config) << bad;
    ASSERT_FALSE(b.errors.empty());
    EXPECT_EQ(b.errors[0].line, 5) << bad;
  }
}

// ---------------------------------------------------------------- static
TEST(PassdbStaticVars, FieldsExpandPerLogin) {
  auto r = load("[[passdb]]\ndriver = \"static\"\n"
                "fields = \"proxy host=%{user | domain}.backend port=143 destuser=%n nopassword\"\n");
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  std::vector<std::string> errors;
  auto chain = Chain::build(r.config->passdbs, registry(), errors);
  ASSERT_TRUE(chain) << errors[0];
  auto l = run(*chain, req("alice@example.org", "x"));
  EXPECT_EQ(l.result, Result::Ok);
  EXPECT_EQ(l.reply.get("host"), std::optional<std::string_view>("example.org.backend"));
  EXPECT_EQ(l.reply.get("destuser"), std::optional<std::string_view>("alice"));
  EXPECT_EQ(l.reply.get("port"), std::optional<std::string_view>("143"));
  l = run(*chain, req("bob@other.test", "x"));
  EXPECT_EQ(l.reply.get("host"), std::optional<std::string_view>("other.test.backend"));
  EXPECT_EQ(l.reply.get("destuser"), std::optional<std::string_view>("bob"));
}

TEST(PassdbStaticVars, UnknownVariableIsAConfigErrorWithLine) {
  auto r = load("[[passdb]]\ndriver = \"static\"\n\nfields = \"proxy host=%{nosuchvar}.backend\"\n");
  EXPECT_FALSE(r.config);
  ASSERT_FALSE(r.errors.empty());
  EXPECT_EQ(r.errors[0].line, 7);
  EXPECT_NE(r.errors[0].message.find("nosuchvar"), std::string::npos) << r.errors[0].message;
}
