// passdb chain, registry and blocking adapter (issue 9): order, protocol
// filter, Dovecot's skip/result_* semantics, the inline fast path, config
// errors, and a slow blocking driver that must not block a worker.
#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <numeric>
#include <thread>

#include "app/registries.hpp"
#include "passdb/blocking.hpp"
#include "passdb/chain.hpp"
#include "passdb/registry.hpp"

using namespace portier;
using namespace portier::passdb;
using namespace std::chrono_literals;
using config::PassdbAction;
using config::PassdbSkip;

namespace {

// Answers from a fixed table; inline or (for `async`) through a hop to a pool.
class FakePassdb final : public Passdb {
 public:
  struct User {
    std::string password;
    std::vector<std::pair<std::string, std::string>> fields;
  };
  FakePassdb(std::vector<std::pair<std::string, User>> users, bool async = false, bool tempfail = false)
      : users_(std::move(users)), async_(async), tempfail_(tempfail) {}

  std::optional<Lookup> lookup_inline(const Request& req) override {
    if (async_) return std::nullopt;
    return answer(req);
  }
  net::Task<Lookup> lookup(const Request& req) override {
    ++async_calls;
    co_return answer(req);
  }
  Lookup answer(const Request& req) {
    ++calls;
    last_lookup_only = req.lookup_only;
    Lookup l;
    if (tempfail_) {
      l.result = Result::TempFail;
      l.error = "fake: down";
      return l;
    }
    for (const auto& [name, u] : users_) {
      if (name != req.user) continue;
      l.reply.user = name;
      for (const auto& [k, v] : u.fields) l.reply.set(k, v);
      l.result = req.lookup_only || u.password == req.password ? Result::Ok : Result::Mismatch;
      return l;
    }
    l.result = Result::UnknownUser;
    return l;
  }
  int calls = 0;
  int async_calls = 0;
  bool last_lookup_only = false;

 private:
  std::vector<std::pair<std::string, User>> users_;
  bool async_;
  bool tempfail_;
};

Chain::Entry entry(std::shared_ptr<Passdb> db, std::string_view name, std::vector<std::string> protocols = {},
                   PassdbAction success = PassdbAction::ReturnOk, PassdbAction failure = PassdbAction::Continue,
                   PassdbSkip skip = PassdbSkip::Never) {
  config::Passdb c;
  c.protocols = std::move(protocols);
  c.result_success = success;
  c.result_failure = failure;
  c.skip = skip;
  return Chain::entry(std::move(db), name, c);
}

Request req(std::string_view user, std::string_view pass, std::string_view protocol = "imap") {
  Request r;
  r.user = user;
  r.password = pass;
  r.protocol = protocol;
  return r;
}

// Runs the chain's lookup to completion on a fresh io_context (this thread).
Lookup run(const Chain& chain, const Request& r, std::thread::id* completed_on = nullptr) {
  asio::io_context io;
  std::optional<Lookup> out;
  asio::co_spawn(io, chain.lookup(r), [&](std::exception_ptr e, Lookup l) {
    if (e) std::rethrow_exception(e);
    if (completed_on) *completed_on = std::this_thread::get_id();
    out = std::move(l);
  });
  io.run();
  EXPECT_TRUE(out.has_value());
  return out.value_or(Lookup{});
}

std::shared_ptr<FakePassdb> fake(std::vector<std::pair<std::string, FakePassdb::User>> users,
                                 bool async = false, bool tempfail = false) {
  return std::make_shared<FakePassdb>(std::move(users), async, tempfail);
}

}  // namespace

TEST(PassdbChain, OrderAndUnknownUserFallthrough) {
  auto a = fake({{"alice", {"pa", {{"host", "a"}}}}});
  auto b = fake({{"alice", {"pb", {{"host", "b"}}}}, {"bob", {"pb", {{"host", "b"}}}}});
  Chain chain;
  chain.add(entry(a, "first"));
  chain.add(entry(b, "second"));
  auto l = run(chain, req("alice", "pa"));
  EXPECT_EQ(l.result, Result::Ok);
  EXPECT_EQ(l.reply.get("host"), "a");
  EXPECT_EQ(l.passdb, "first");
  EXPECT_EQ(b->calls, 0);  // return-ok: the first success ends the walk
  l = run(chain, req("bob", "pb"));  // unknown in the first: falls through
  EXPECT_EQ(l.result, Result::Ok);
  EXPECT_EQ(l.reply.get("host"), "b");
  EXPECT_EQ(l.passdb, "second");
  l = run(chain, req("carol", "x"));
  EXPECT_EQ(l.result, Result::UnknownUser);
  EXPECT_EQ(l.passdb, "second");  // the last one asked
  // Dovecot's default result_failure = continue: a mismatch in the first
  // passdb lets the second one decide.
  l = run(chain, req("alice", "pb"));
  EXPECT_EQ(l.result, Result::Ok);
  EXPECT_EQ(l.reply.get("host"), "b");
  l = run(chain, req("alice", "nope"));
  EXPECT_EQ(l.result, Result::Mismatch);
}

TEST(PassdbChain, ProtocolFilter) {
  auto a = fake({{"u", {"p", {{"host", "a"}}}}});
  auto b = fake({{"u", {"p", {{"host", "b"}}}}});
  Chain chain;
  chain.add(entry(a, "pop-only", {"pop3"}));
  chain.add(entry(b, "all"));
  EXPECT_EQ(run(chain, req("u", "p", "imap")).reply.get("host"), "b");
  EXPECT_EQ(a->calls, 0);
  EXPECT_EQ(run(chain, req("u", "p", "pop3")).reply.get("host"), "a");
  EXPECT_EQ(chain.log_name("imap"), "all");
  EXPECT_EQ(chain.log_name("pop3"), "pop-only");
  // Nothing serves the protocol: unknown user, named after the first entry.
  Chain only_pop;
  only_pop.add(entry(a, "pop-only", {"pop3"}));
  auto l = run(only_pop, req("u", "p", "imap"));
  EXPECT_EQ(l.result, Result::UnknownUser);
  EXPECT_EQ(l.passdb, "pop-only");
}

TEST(PassdbChain, TempFailContinuesAndIsRemembered) {
  auto down = fake({}, false, true);
  auto b = fake({{"u", {"p", {{"host", "b"}}}}});
  Chain chain;
  chain.add(entry(down, "db"));
  chain.add(entry(b, "file"));
  // Dovecot: internal failure continues; a later success wins ...
  EXPECT_EQ(run(chain, req("u", "p")).result, Result::Ok);
  // ... a later failure becomes the internal failure (temporary, not "wrong password").
  auto l = run(chain, req("u", "bad"));
  EXPECT_EQ(l.result, Result::TempFail);
  EXPECT_EQ(l.error, "fake: down");
  EXPECT_EQ(l.passdb, "db");
  l = run(chain, req("nobody", "x"));
  EXPECT_EQ(l.result, Result::TempFail);
  // Alone, as today: TempFail.
  Chain single;
  single.add(entry(down, "db"));
  EXPECT_EQ(run(single, req("u", "p")).result, Result::TempFail);
}

TEST(PassdbChain, ResultActionsAndSkip) {
  // Dovecot's "password from one passdb, routing from another":
  // result_success = continue-ok, then skip = unauthenticated (lookup only).
  auto auth = fake({{"u", {"p", {{"nopassword_is_not_here", "1"}}}}});
  auto route = fake({{"u", {"whatever", {{"proxy", ""}, {"host", "10.0.0.5"}}}}});
  Chain chain;
  chain.add(entry(auth, "auth", {}, PassdbAction::ContinueOk));
  chain.add(entry(route, "route", {}, PassdbAction::ReturnOk, PassdbAction::Continue, PassdbSkip::Unauthenticated));
  auto l = run(chain, req("u", "p"));
  EXPECT_EQ(l.result, Result::Ok);
  EXPECT_TRUE(route->last_lookup_only);  // the password was verified already
  EXPECT_EQ(l.reply.get("host"), "10.0.0.5");
  EXPECT_TRUE(l.reply.has("nopassword_is_not_here"));  // fields of both merged
  route->calls = 0;
  l = run(chain, req("u", "wrong"));  // not authenticated: routing passdb skipped
  EXPECT_EQ(l.result, Result::Mismatch);
  EXPECT_EQ(route->calls, 0);

  // return-fail on success; skip = authenticated; continue-fail.
  auto a = fake({{"u", {"p", {}}}});
  Chain deny;
  deny.add(entry(a, "deny", {}, PassdbAction::ReturnFail));
  deny.add(entry(fake({{"u", {"p", {}}}}), "never-asked"));
  EXPECT_EQ(run(deny, req("u", "p")).result, Result::Mismatch);

  auto later = fake({{"u", {"p", {}}}});
  Chain skip_auth;
  skip_auth.add(entry(fake({{"u", {"p", {}}}}), "ok", {}, PassdbAction::ContinueOk));
  skip_auth.add(entry(later, "skipped", {}, PassdbAction::ReturnOk, PassdbAction::Continue,
                      PassdbSkip::Authenticated));
  EXPECT_EQ(run(skip_auth, req("u", "p")).result, Result::Ok);
  EXPECT_EQ(later->calls, 0);

  Chain cf;
  cf.add(entry(fake({{"u", {"p", {}}}}), "ok", {}, PassdbAction::ContinueOk));
  cf.add(entry(fake({{"u", {"p", {}}}}), "veto", {}, PassdbAction::ContinueFail));
  EXPECT_EQ(run(cf, req("u", "p")).result, Result::Mismatch);

  // "return" with nothing succeeded before: failure (Dovecot's doc).
  Chain ret;
  ret.add(entry(fake({{"u", {"p", {}}}}), "ret", {}, PassdbAction::Return));
  EXPECT_EQ(run(ret, req("u", "p")).result, Result::Mismatch);
}

TEST(PassdbChain, InlineFastPathHasNoThreadHop) {
  auto a = fake({{"u", {"p", {}}}});
  Chain chain;
  chain.add(entry(a, "inline"));
  std::thread::id done;
  auto l = run(chain, req("u", "p"), &done);
  EXPECT_EQ(l.result, Result::Ok);
  EXPECT_EQ(done, std::this_thread::get_id());
  EXPECT_EQ(a->async_calls, 0);  // lookup() was never needed
  auto b = fake({{"u", {"p", {}}}}, /*async=*/true);
  Chain async_chain;
  async_chain.add(entry(b, "async"));
  EXPECT_EQ(run(async_chain, req("u", "p")).result, Result::Ok);
  EXPECT_EQ(b->async_calls, 1);
}

// ---- registry and config ------------------------------------------------------

namespace {

// A deliberately slow synchronous driver: 2 s for user "slow", at once for
// everyone else (inline). Records the threads it blocked on.
struct SlowSettings final : config::PassdbSettings {
  std::chrono::milliseconds delay{2000};
  std::string describe() const override { return "slow"; }
};

std::atomic<int> g_slow_running{0};
std::thread::id g_slow_thread;

class SlowDriver final : public SyncPassdb {
 public:
  explicit SlowDriver(std::chrono::milliseconds d) : delay_(d) {}
  std::optional<Lookup> lookup_inline(const Request& req) override {
    if (req.user == "slow") return std::nullopt;
    Lookup l;
    l.result = Result::UnknownUser;
    return l;
  }
  Lookup lookup_blocking(const Request& req) override {
    g_slow_thread = std::this_thread::get_id();
    ++g_slow_running;
    std::this_thread::sleep_for(delay_);  // blocking on purpose
    --g_slow_running;
    Lookup l;
    l.result = Result::Ok;
    l.reply.user = std::string(req.user);
    return l;
  }

 private:
  std::chrono::milliseconds delay_;
};

std::shared_ptr<const config::PassdbSettings> parse_slow(config::PassdbSection& s) {
  auto out = std::make_shared<SlowSettings>();
  if (auto d = s.duration("delay")) out->delay = *d;
  else if (s.has("delay")) return nullptr;
  return out;
}

core::Result<std::shared_ptr<Passdb>> make_slow(const config::Passdb& cfg) {
  const auto& s = dynamic_cast<const SlowSettings&>(*cfg.settings);
  return std::shared_ptr<Passdb>(std::make_shared<BlockingPassdb>(std::make_shared<SlowDriver>(s.delay), 2));
}

const Registry& test_registry() {
  static const Registry r = registry().with({"slow", "slow", parse_slow, make_slow});
  return r;
}

std::string users_file() { return std::string(PORTIER_TEST_DATA) + "/users.passwd"; }

config::LoadResult load(const std::string& passdbs) {
  static const app::Registries names(test_registry());
  return config::load_string("[[listener]]\nprotocol = \"imap\"\nport = 0\n" + passdbs, "/t/portier.toml",
                             names);
}

}  // namespace

TEST(PassdbRegistry, LookupAndNames) {
  EXPECT_NE(registry().find("passwd-file"), nullptr);
  EXPECT_EQ(registry().find("passwd-file")->log_name, "passwd-file");
  EXPECT_EQ(registry().find("sql"), nullptr);
  EXPECT_EQ(registry().parser("nope"), nullptr);
  EXPECT_EQ(registry().names(), "passwd-file, sqlite, pgsql, auth_http, static, ldap, oauth2");
  EXPECT_EQ(test_registry().names(), "passwd-file, sqlite, pgsql, auth_http, static, ldap, oauth2, slow");
  EXPECT_EQ(registry().find("slow"), nullptr);  // with() copies
}

TEST(PassdbRegistry, ConfigErrorsWithPosition) {
  auto r = load("[[passdb]]\ndriver = \"sqlx\"\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(),
            "/t/portier.toml:5:10: passdb.driver: unknown driver 'sqlx' (supported: passwd-file, sqlite, pgsql, auth_http, static, ldap, oauth2, slow)");
  r = load("[[passdb]]\ndriver = \"slow\"\ndelay = \"1s\"\npath = \"x\"\n");
  ASSERT_EQ(r.errors.size(), 1u);  // `path` is passwd-file's key, not slow's
  EXPECT_EQ(r.errors[0].to_string(), "/t/portier.toml:7:1: unknown key 'path' in [[passdb]]");
  r = load("[[passdb]]\ndriver = \"slow\"\ndelay = \"soon\"\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 6);
  EXPECT_NE(r.errors[0].message.find("passdb.delay: invalid duration"), std::string::npos);
  r = load("[[passdb]]\ndriver = \"passwd-file\"\npath = \"u\"\nresult_failure = \"carry-on\"\nskip = \"sometimes\"\n");
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[0].line, 7);
  EXPECT_NE(r.errors[0].message.find("passdb.result_failure: unknown value 'carry-on'"), std::string::npos);
  EXPECT_EQ(r.errors[1].line, 8);
  r = load("[[passdb]]\ndriver = \"passwd-file\"\npath = \"u\"\nskip = \"unauthenticated\"\n"
           "result_success = \"continue-ok\"\nresult_failure = \"return-fail\"\n"
           "result_internalfail = \"return\"\n");
  ASSERT_TRUE(r.config);
  const auto& p = r.config->passdbs[0];
  EXPECT_EQ(p.skip, PassdbSkip::Unauthenticated);
  EXPECT_EQ(p.result_success, PassdbAction::ContinueOk);
  EXPECT_EQ(p.result_failure, PassdbAction::ReturnFail);
  EXPECT_EQ(p.result_internalfail, PassdbAction::Return);
  r = load("[[passdb]]\ndriver = \"passwd-file\"\npath = \"u\"\n");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->passdbs[0].result_success, PassdbAction::ReturnOk);  // Dovecot's defaults
  EXPECT_EQ(r.config->passdbs[0].result_failure, PassdbAction::Continue);
  EXPECT_EQ(r.config->passdbs[0].result_internalfail, PassdbAction::Continue);
}

TEST(PassdbRegistry, BuildsChainFromConfig) {
  auto r = load("[[passdb]]\ndriver = \"slow\"\n[[passdb]]\ndriver = \"passwd-file\"\npath = \"" +
                users_file() + "\"\nprotocols = [\"imap\"]\n");
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  std::vector<std::string> errors;
  auto chain = Chain::build(r.config->passdbs, test_registry(), errors);
  ASSERT_TRUE(chain) << errors[0];
  ASSERT_EQ(chain->entries().size(), 2u);
  EXPECT_EQ(chain->entries()[0].name, "slow");
  EXPECT_EQ(chain->entries()[1].name, "passwd-file");
  // Failing first load: "passdb <path>: <error>", as before.
  auto bad = load("[[passdb]]\ndriver = \"passwd-file\"\npath = \"/nonexistent/users\"\n");
  ASSERT_TRUE(bad.config);
  errors.clear();
  EXPECT_FALSE(Chain::build(bad.config->passdbs, test_registry(), errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].rfind("passdb /nonexistent/users: passwd-file /nonexistent/users: ", 0), 0u) << errors[0];
}

// The test: a deliberately slow (blocking) driver first in the chain
// cannot block a worker. One single-threaded io_context plays the worker;
// while "slow" waits 2 s, other users' logins on the same worker complete
// in well under 100 ms each.
TEST(PassdbBlocking, SlowDriverCannotBlockTheWorker) {
  auto r = load("[[passdb]]\ndriver = \"slow\"\ndelay = \"2s\"\n[[passdb]]\ndriver = \"passwd-file\"\npath = \"" +
                users_file() + "\"\n");
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  std::vector<std::string> errors;
  auto chain = Chain::build(r.config->passdbs, test_registry(), errors);
  ASSERT_TRUE(chain) << errors[0];
  asio::thread_pool hashing(2);

  asio::io_context worker(1);
  const auto worker_thread = std::this_thread::get_id();
  g_slow_thread = worker_thread;
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  std::optional<Lookup> slow;
  Clock::duration slow_took{};
  std::vector<Clock::duration> fast;
  int fast_ok = 0;

  Request sr = req("slow", "x");
  sr.hashing = &hashing;
  asio::co_spawn(worker, chain->lookup(sr), [&](std::exception_ptr, Lookup l) {
    slow = std::move(l);
    slow_took = Clock::now() - t0;
  });
  // Other users' logins, one after the other, while "slow" is pending.
  // plainuser answers inline; sshauser needs the hashing pool.
  struct Fast {
    const char* user;
    const char* pass;
  };
  static const Fast kFast[] = {{"plainuser", "secret"}, {"sshauser", "secret"}, {"nobody", "x"}};
  std::function<void(int)> next = [&](int i) {
    if (i >= 30) return;
    const Fast& f = kFast[i % 3];
    auto start = Clock::now();
    Request fr = req(f.user, f.pass);
    fr.hashing = &hashing;
    auto owned = std::make_shared<Request>(fr);
    asio::co_spawn(worker, chain->lookup(*owned), [&, i, start, owned](std::exception_ptr, Lookup l) {
      fast.push_back(Clock::now() - start);
      if (l.result == (i % 3 == 2 ? Result::UnknownUser : Result::Ok)) ++fast_ok;
      next(i + 1);
    });
  };
  asio::steady_timer kick(worker);
  kick.expires_after(50ms);  // the slow lookup is running by then
  kick.async_wait([&](std::error_code) {
    EXPECT_EQ(g_slow_running.load(), 1);
    next(0);
  });
  worker.run();

  ASSERT_TRUE(slow);
  EXPECT_EQ(slow->result, Result::Ok);
  EXPECT_EQ(slow->passdb, "slow");
  EXPECT_GE(slow_took, 2s);
  EXPECT_NE(g_slow_thread, worker_thread) << "the slow driver ran on the worker thread";
  ASSERT_EQ(fast.size(), 30u);
  EXPECT_EQ(fast_ok, 30);
  for (auto d : fast) EXPECT_LT(d, 100ms);
  // All the fast logins finished while the slow one was still pending.
  auto fast_total = std::accumulate(fast.begin(), fast.end(), Clock::duration{});
  EXPECT_LT(fast_total, 1500ms);
}
