#include "passdb/drivers/sqlite/sqlite.hpp"

#include <sqlite3.h>

#include <mutex>
#include <vector>

#include "core/secure.hpp"
#include "passdb/blocking.hpp"
#include "passdb/sql_common.hpp"

namespace portier::passdb {

namespace {

constexpr unsigned kThreads = 2;

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;

void sqlite_escape(std::string& out, std::string_view v) {
  // %q: the value inside a '...' literal, quotes doubled. Values never hold
  // NUL here (Template::expand refuses them).
  std::string tmp(v);
  char* q = sqlite3_mprintf("%q", tmp.c_str());
  core::secure_zero(tmp);
  if (!q) return;
  std::string_view e(q);
  out.append(e);
  core::secure_zero(q, e.size());
  sqlite3_free(q);
}

class Sqlite final : public SyncPassdb {
 public:
  Sqlite(config::Passdb cfg, const SqlSettings& s) : cfg_(std::move(cfg)), s_(s) {}

  core::Result<void> open(Db& db) {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(s_.connect.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
    db.reset(raw);
    if (rc != SQLITE_OK) {
      auto err = core::fail("sqlite " + s_.connect + ": open failed: " +
                            (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
      db.reset();
      return err;
    }
    sqlite3_busy_timeout(raw, 2000);
    return {};
  }

  // A first open at load time: a missing file is a config error, not a
  // login-time surprise (read-only open does not create it).
  core::Result<void> check() {
    Db db;
    if (auto r = open(db); !r) return r;
    put(std::move(db));  // the first pool thread reuses it
    return {};
  }

  Lookup lookup_blocking(const Request& req) override {
    Db db = take();
    if (!db) {
      if (auto r = open(db); !r) return sql_tempfail(r.error().message);
    }
    std::string sql;
    if (!s_.query.expand(req, sqlite_escape, sql)) {
      put(std::move(db));
      Lookup l;
      l.result = Result::UnknownUser;
      l.passdb = kSqlLogName;
      l.error = "user name contains NUL";
      return l;
    }
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db.get(), sql.c_str(), static_cast<int>(sql.size()), &st, nullptr);
    if (s_.query.uses_password()) core::secure_zero(sql);
    if (rc != SQLITE_OK) {
      Lookup l = sql_tempfail(std::string("sqlite: query failed: ") + sqlite3_errmsg(db.get()));
      sqlite3_finalize(st);
      put(std::move(db));
      return l;
    }
    SqlRow row;
    std::vector<std::string> names, values;
    std::vector<bool> nulls;
    for (;;) {
      rc = sqlite3_step(st);
      if (rc != SQLITE_ROW) break;
      if (++row.rows > 1) break;
      int n = sqlite3_column_count(st);
      for (int i = 0; i < n; ++i) {
        const char* name = sqlite3_column_name(st, i);
        names.emplace_back(name ? name : "");
        nulls.push_back(sqlite3_column_type(st, i) == SQLITE_NULL);
        const unsigned char* t = sqlite3_column_text(st, i);
        values.emplace_back(t ? reinterpret_cast<const char*>(t) : "",
                            static_cast<size_t>(sqlite3_column_bytes(st, i)));
      }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      Lookup l = sql_tempfail(std::string("sqlite: query failed: ") + sqlite3_errmsg(db.get()));
      sqlite3_finalize(st);
      put(std::move(db));
      for (auto& v : values) core::secure_zero(v);
      return l;
    }
    sqlite3_finalize(st);
    put(std::move(db));
    for (size_t i = 0; i < names.size(); ++i) {
      row.names.push_back(names[i]);
      row.values.push_back(nulls[i] ? std::nullopt : std::optional<std::string_view>(values[i]));
    }
    Lookup l = sql_verify(sql_answer(req, row, cfg_), req, cfg_);
    for (auto& v : values) core::secure_zero(v);
    return l;
  }

 private:
  Db take() {
    std::lock_guard lock(mu_);
    if (idle_.empty()) return nullptr;
    Db db = std::move(idle_.back());
    idle_.pop_back();
    return db;
  }
  void put(Db db) {
    std::lock_guard lock(mu_);
    if (idle_.size() < kThreads) idle_.push_back(std::move(db));
  }

  config::Passdb cfg_;
  const SqlSettings& s_;  // owned by cfg_.settings
  std::mutex mu_;
  std::vector<Db> idle_;
};

}  // namespace

core::Result<std::shared_ptr<Passdb>> make_sqlite(const config::Passdb& cfg) {
  const auto* s = dynamic_cast<const SqlSettings*>(cfg.settings.get());
  if (!s) {
    return core::fail("sqlite: settings missing");
  }
  if (!known_scheme(cfg.default_pass_scheme)) {
    return core::fail("sqlite: unknown default_pass_scheme '" + cfg.default_pass_scheme + "'");
  }
  auto drv = std::make_shared<Sqlite>(cfg, *s);
  if (auto r = drv->check(); !r) return r.error();
  return std::make_shared<BlockingPassdb>(std::move(drv), kThreads);
}

}  // namespace portier::passdb
