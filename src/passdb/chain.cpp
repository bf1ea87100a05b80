#include "passdb/chain.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <algorithm>

#include "passdb/cache.hpp"
#include "passdb/registry.hpp"
#include "passdb/sql_common.hpp"

namespace portier::passdb {

using config::PassdbAction;
using config::PassdbSkip;

bool Chain::Entry::serves(std::string_view protocol) const {
  return protocols.empty() || std::find(protocols.begin(), protocols.end(), protocol) != protocols.end();
}

Chain::Entry Chain::entry(std::shared_ptr<Passdb> db, std::string_view name, const config::Passdb& cfg) {
  Entry e;
  e.db = std::move(db);
  e.name = name;
  e.protocols = cfg.protocols;
  e.skip = cfg.skip;
  e.result_success = cfg.result_success;
  e.result_failure = cfg.result_failure;
  e.result_internalfail = cfg.result_internalfail;
  e.default_pass_scheme = cfg.default_pass_scheme;
  if (const auto* sql = dynamic_cast<const SqlSettings*>(cfg.settings.get());
      sql && !sql->query.uses_password()) {
    // The identity: everything that shapes this entry's answer for a key.
    std::string id = sql->driver;
    for (std::string_view part : {std::string_view(sql->connect), std::string_view(sql->query.text()),
                                  std::string_view(cfg.default_fields), std::string_view(cfg.override_fields),
                                  std::string_view(cfg.default_pass_scheme)}) {
      id += '\x1e';
      id += part;
    }
    const size_t h = std::hash<std::string>{}(id);
    e.cache_id = std::string(name) + ':' + std::to_string(h) + '\x1e';
    e.settings = cfg.settings;
    e.cache_template = &sql->query;
  }
  return e;
}

std::optional<Chain> Chain::build(const std::vector<config::Passdb>& cfgs, const Registry& reg,
                                  std::vector<std::string>& errors) {
  Chain chain;
  bool ok = true;
  for (const auto& pc : cfgs) {
    const std::string what = pc.settings ? pc.settings->describe() : pc.driver;
    const Driver* d = reg.find(pc.driver);
    if (!d || !d->make) {
      errors.push_back("passdb " + what + ": unknown passdb driver '" + pc.driver + "'");
      ok = false;
      continue;
    }
    auto db = d->make(pc);
    if (!db) {
      errors.push_back("passdb " + what + ": " + db.error().message);
      ok = false;
      continue;
    }
    chain.add(entry(std::move(*db), d->log_name, pc));
  }
  if (!ok) return std::nullopt;
  chain.set_cache(&auth_cache());
  return chain;
}

namespace {

// The walk's state (Dovecot's passdb_success / internal failure / skip_password_check).
struct Walk {
  bool success = false;
  bool internal_failure = false;
  bool password_verified = false;
  bool consulted = false;
  Lookup last;          // the last answer
  Lookup internal;      // the first internal failure
  Reply merged;         // fields of every successful passdb
  bool have_merged = false;

  // Applies one answer; true = stop here.
  bool step(const Chain::Entry& e, Lookup l) {
    consulted = true;
    PassdbAction action;
    if (l.result == Result::Ok) {
      action = e.result_success;
      if (!have_merged) merged.user = l.reply.user;
      for (const auto& [k, v] : l.reply.fields) merged.set(k, v);
      if (!l.reply.user.empty()) merged.user = l.reply.user;
      have_merged = true;
    } else if (l.result == Result::TempFail) {
      action = e.result_internalfail;
      if (!internal_failure) internal = l;
      internal_failure = true;
    } else {
      action = e.result_failure;
    }
    const bool ok = l.result == Result::Ok;
    last = std::move(l);
    switch (action) {
      case PassdbAction::ReturnOk: success = true; return true;
      case PassdbAction::ReturnFail: success = false; return true;
      case PassdbAction::Return: return true;
      case PassdbAction::Continue:
        if (ok) password_verified = true;
        return false;
      case PassdbAction::ContinueOk:
        success = true;
        password_verified = true;
        return false;
      case PassdbAction::ContinueFail: success = false; return false;
    }
    return false;
  }

  Lookup finish() {
    if (!consulted) {
      Lookup l;
      l.result = Result::UnknownUser;
      return l;
    }
    if (success) {
      Lookup l = std::move(last);
      l.result = Result::Ok;
      if (have_merged) l.reply = std::move(merged);
      return l;
    }
    if (internal_failure) return std::move(internal);
    Lookup l = std::move(last);
    if (l.result == Result::Ok) l.result = Result::Mismatch;
    return l;
  }
};

// One lookup raced against the chain's timeout. Touched only on the
// worker's thread (the lookup completes on the executor it started on).
struct Race {
  std::optional<Lookup> answer;
  asio::steady_timer timer;
  explicit Race(const asio::any_io_executor& ex) : timer(ex) {}
};

// Runs a lookup that may outlive the login waiting for it: it owns its copy
// of the request and holds the passdb.
net::Task<void> race_lookup(std::shared_ptr<Passdb> db, RequestCopy req, std::shared_ptr<Race> race) {
  Request r = req.view();
  Lookup l;
  try {
    l = co_await db->lookup(r);
  } catch (const std::exception& e) {
    l.result = Result::TempFail;
    l.error = std::string("passdb lookup failed: ") + e.what();
  }
  race->answer = std::move(l);
  race->timer.cancel();
}

net::Task<Lookup> lookup_with_timeout(const std::shared_ptr<Passdb>& db, const Request& r,
                                      std::chrono::milliseconds timeout) {
  auto ex = co_await asio::this_coro::executor;
  auto race = std::make_shared<Race>(ex);
  race->timer.expires_after(timeout);
  RequestCopy copy(r);
  net::Task<void> task = race_lookup(db, std::move(copy), race);
  asio::co_spawn(ex, std::move(task), asio::detached);
  // co_spawn may run the lookup inline up to its first suspension: an answer
  // that is already there must not wait for the timer.
  if (!race->answer) co_await race->timer.async_wait(net::use_nothrow);
  if (race->answer) co_return std::move(*race->answer);
  Lookup l;
  l.result = Result::TempFail;
  l.error = "passdb lookup timed out after " + std::to_string(timeout.count()) + " ms";
  co_return l;
}

bool skipped(const Chain::Entry& e, const Walk& w) {
  switch (e.skip) {
    case PassdbSkip::Never: return false;
    case PassdbSkip::Authenticated: return w.success;
    case PassdbSkip::Unauthenticated: return !w.success;
  }
  return false;
}

}  // namespace

net::Task<Lookup> Chain::ask(const Entry& e, const Request& req) const {
  Request r = req;
  std::optional<Lookup> l = e.db->lookup_inline(r);
  if (!l && timeout_.count() > 0) {
    r.deadline = std::chrono::steady_clock::now() + timeout_;
    l = co_await lookup_with_timeout(e.db, r, timeout_);
  } else if (!l) {
    l = co_await e.db->lookup(r);
  }
  co_return std::move(*l);
}

net::Task<Lookup> Chain::ask_cached(const Entry& e, const Request& r) const {
  AuthCache& cache = *cache_;
  const std::string key = e.cache_id + e.cache_template->key(r);
  std::optional<AuthCache::Hit> hit = cache.get(key, std::chrono::steady_clock::now());
  if (hit && !hit->expired) {
    cache.count_hit();
    const bool last_ok = hit->last_ok;
    Lookup v = co_await cached_verdict(hit->answer, r, e.default_pass_scheme, e.name);
    // A wrong password after a good login: the password may have changed
    // in the database, so ask it (once: the fresh answer replaces the entry).
    if (!(v.result == Result::Mismatch && last_ok)) {
      if (hit->answer.found && !r.lookup_only) cache.set_last_ok(key, v.result == Result::Ok);
      co_return v;
    }
  }
  cache.count_miss();
  Request fr = r;
  fr.fetch = true;
  Lookup f = co_await ask(e, fr);
  const bool answered = (f.result == Result::Ok && f.stored) || f.result == Result::UnknownUser;
  if (!answered) {
    if (f.result == Result::TempFail && hit) {  // the database is down: the expired entry serves
      Lookup v = co_await cached_verdict(std::move(hit->answer), r, e.default_pass_scheme, e.name);
      v.error = "served from the auth cache: " + f.error;
      co_return v;
    }
    co_return f;  // TempFail (or a driver that answered without fetching): not cached
  }
  CachedAnswer a;
  a.found = f.result == Result::Ok;
  a.reply = f.reply;
  a.stored = f.stored;
  Lookup v = co_await cached_verdict(a, r, e.default_pass_scheme, e.name);
  if (v.error.empty()) v.error = f.error;
  cache.put(key, r.user, std::move(a), v.result == Result::Ok && !r.lookup_only,
            std::chrono::steady_clock::now());
  co_return v;
}

net::Task<Lookup> Chain::lookup(const Request& req) const {
  Walk w;
  Request r = req;
  for (const auto& e : entries_) {
    if (!e.serves(r.protocol) || skipped(e, w)) continue;
    r.lookup_only = req.lookup_only || w.password_verified;
    Lookup l;
    if (e.cache_template && cache_ && cache_->enabled()) l = co_await ask_cached(e, r);
    else l = co_await ask(e, r);
    l.passdb = e.name;
    if (w.step(e, std::move(l))) break;
  }
  Lookup out = w.finish();
  if (out.passdb.empty()) out.passdb = log_name(req.protocol);
  co_return out;
}

std::string_view Chain::log_name(std::string_view protocol) const {
  for (const auto& e : entries_)
    if (e.serves(protocol)) return e.name;
  return entries_.empty() ? std::string_view("passdb") : entries_.front().name;
}

std::vector<std::string> Chain::warnings() const {
  std::vector<std::string> out;
  for (const auto& e : entries_)
    for (auto& w : e.db->warnings()) out.push_back(std::move(w));
  return out;
}

}  // namespace portier::passdb
