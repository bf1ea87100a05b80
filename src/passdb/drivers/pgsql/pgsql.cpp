#include "passdb/drivers/pgsql/pgsql.hpp"

#include <libpq-fe.h>

#include <asio/co_spawn.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/secure.hpp"
#include "passdb/sql_common.hpp"

namespace portier::passdb {

namespace {

using Clock = std::chrono::steady_clock;
constexpr unsigned kMaxConnections = 4;
constexpr std::chrono::seconds kDefaultTimeout{10};
constexpr std::chrono::milliseconds kBackoffMin{250};
constexpr std::chrono::milliseconds kBackoffMax{5000};

// libpq's message without the trailing newline, on one line.
std::string pg_message(const char* m) {
  std::string s = m ? m : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  return s;
}

struct Conn {
  PGconn* pg = nullptr;
  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    if (pg) PQfinish(pg);
  }
};
using ConnPtr = std::unique_ptr<Conn>;

// A lookup waiting for a free connection slot.
struct Waiter {
  asio::steady_timer* timer = nullptr;
  bool queued = true;
};

// One worker's connections; used only on that worker's thread. Holds no
// Asio objects (it may outlive the worker's io_context).
struct Pool {
  std::vector<ConnPtr> idle;
  unsigned open = 0;  // idle + in use + connecting
  std::list<Waiter*> waiters;
  Clock::time_point down_until{};
  std::chrono::milliseconds backoff{0};
  std::string last_error;

  // Gives a slot back (with its connection, or without when it was dropped)
  // and wakes the first waiter.
  void release(ConnPtr c) {
    if (c) idle.push_back(std::move(c));
    else --open;
    if (!waiters.empty()) {
      Waiter* w = waiters.front();
      waiters.pop_front();
      w->queued = false;
      w->timer->cancel();
    }
  }
};

enum class Ready { Yes, Timeout, Error };

// The fd watch of one wait. Shared with the deadline timer's handler, which
// may run after the wait ended.
struct FdWatch {
  asio::posix::stream_descriptor d;
  asio::steady_timer t;
  bool timed_out = false;
  explicit FdWatch(const asio::any_io_executor& ex) : d(ex), t(ex) {}
  ~FdWatch() {
    if (d.is_open()) d.release();  // libpq owns the socket: never close it
  }
};

// Waits until libpq's socket is readable (or writable), or the deadline.
// The descriptor is registered for this wait only and released before
// returning: libpq may close or replace the socket (connect to the next host)
// as soon as it is called again.
net::Task<Ready> wait_fd(int fd, bool write, Clock::time_point deadline) {
  if (fd < 0) co_return Ready::Error;
  auto ex = co_await asio::this_coro::executor;
  auto w = std::make_shared<FdWatch>(ex);
  std::error_code assigned;
  w->d.assign(fd, assigned);
  if (assigned) co_return Ready::Error;
  w->t.expires_at(deadline);
  w->t.async_wait([w](std::error_code ec) {
    if (ec || !w->d.is_open()) return;
    w->timed_out = true;
    std::error_code ignored;
    w->d.cancel(ignored);
  });
  const auto what = write ? asio::posix::descriptor_base::wait_write : asio::posix::descriptor_base::wait_read;
  auto [ec] = co_await w->d.async_wait(what, net::use_nothrow);
  w->d.release();
  w->t.cancel();
  if (w->timed_out) co_return Ready::Timeout;
  co_return ec ? Ready::Error : Ready::Yes;
}

struct Connected {
  ConnPtr conn;
  std::string error;
};

net::Task<Connected> connect_async(const std::string& conninfo, Clock::time_point deadline) {
  Connected out;
  auto c = std::make_unique<Conn>();
  c->pg = PQconnectStart(conninfo.c_str());
  if (!c->pg) {
    out.error = "out of memory";
    co_return out;
  }
  if (PQstatus(c->pg) == CONNECTION_BAD) {
    out.error = pg_message(PQerrorMessage(c->pg));
    co_return out;
  }
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;  // libpq's initial state
  while (st != PGRES_POLLING_OK) {
    if (st == PGRES_POLLING_FAILED) {
      out.error = pg_message(PQerrorMessage(c->pg));
      co_return out;
    }
    const int fd = PQsocket(c->pg);
    if (fd < 0) {
      out.error = "no socket";
      co_return out;
    }
    Ready r = co_await wait_fd(fd, st == PGRES_POLLING_WRITING, deadline);
    if (r == Ready::Timeout) {
      out.error = "connect timed out";
      co_return out;
    }
    // Ready::Error (the socket failed): PQconnectPoll reports why.
    st = PQconnectPoll(c->pg);
  }
  PQsetnonblocking(c->pg, 1);
  out.conn = std::move(c);
  co_return out;
}

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

struct QueryOut {
  ResultPtr res;       // the first result
  bool broken = false; // the connection is unusable (dropped)
  bool timeout = false;
  std::string error;
};

net::Task<QueryOut> run_query(Conn& c, const std::string& sql, Clock::time_point deadline) {
  QueryOut q;
  auto fail = [&](std::string what) {
    q.error = what + ": " + pg_message(PQerrorMessage(c.pg));
    q.broken = true;
    q.res.reset();
  };
  if (!PQsendQuery(c.pg, sql.c_str())) {
    fail("send failed");
    co_return q;
  }
  for (;;) {  // flush the query (small: one wait at most, normally none)
    int f = PQflush(c.pg);
    if (f == 0) break;
    if (f < 0) {
      fail("send failed");
      co_return q;
    }
    const int fd = PQsocket(c.pg);
    Ready r = co_await wait_fd(fd, true, deadline);
    if (r != Ready::Yes) {
      q.timeout = r == Ready::Timeout;
      fail(q.timeout ? "query timed out" : "send failed");
      co_return q;
    }
  }
  for (;;) {
    while (!PQisBusy(c.pg)) {
      PGresult* r = PQgetResult(c.pg);
      if (!r) co_return q;
      if (!q.res) q.res.reset(r);
      else PQclear(r);
    }
    const int fd = PQsocket(c.pg);
    Ready r = co_await wait_fd(fd, false, deadline);
    if (r != Ready::Yes) {
      q.timeout = r == Ready::Timeout;
      fail(q.timeout ? "query timed out" : "receive failed");
      co_return q;
    }
    if (!PQconsumeInput(c.pg)) {
      fail("receive failed");
      co_return q;
    }
  }
}

class Pgsql;
net::Task<Lookup> verify_on_pool(std::shared_ptr<Pgsql> db, SqlAnswer a, RequestCopy req);

class Pgsql final : public Passdb, public std::enable_shared_from_this<Pgsql> {
 public:
  Pgsql(config::Passdb cfg, const SqlSettings& s) : cfg_(std::move(cfg)), s_(s) {}

  net::Task<Lookup> lookup(const Request& req) override;

  Lookup verify(SqlAnswer a, const Request& req) const { return sql_verify(std::move(a), req, cfg_); }

 private:
  std::shared_ptr<Pool> pool_for(const void* context) {
    std::lock_guard lock(mu_);
    auto& p = pools_[context];
    if (!p) p = std::make_shared<Pool>();
    return p;
  }

  config::Passdb cfg_;
  const SqlSettings& s_;  // owned by cfg_.settings
  std::mutex mu_;
  std::unordered_map<const void*, std::shared_ptr<Pool>> pools_;
};

net::Task<Lookup> verify_on_pool(std::shared_ptr<Pgsql> db, SqlAnswer a, RequestCopy req) {
  co_return db->verify(std::move(a), req.view());
}

// Removes a waiter from its pool's queue if it is still there (timeout, or
// the frame destroyed with the io_context).
struct WaiterGuard {
  Pool& pool;
  Waiter& w;
  ~WaiterGuard() {
    if (w.queued) pool.waiters.remove(&w);
  }
};

Lookup unknown_user(std::string why) {
  Lookup l;
  l.result = Result::UnknownUser;
  l.passdb = kSqlLogName;
  l.error = std::move(why);
  return l;
}

net::Task<Lookup> Pgsql::lookup(const Request& req) {
  auto self = shared_from_this();
  auto ex = co_await asio::this_coro::executor;
  const void* context = &asio::query(ex, asio::execution::context);
  std::shared_ptr<Pool> pool = pool_for(context);
  const Clock::time_point deadline = req.deadline != Clock::time_point{} ? req.deadline : Clock::now() + kDefaultTimeout;

  for (int attempt = 0;; ++attempt) {
    // A slot: an idle connection, or room for a new one.
    while (pool->idle.empty() && pool->open >= kMaxConnections) {
      asio::steady_timer t(ex);
      t.expires_at(deadline);
      Waiter w{&t};
      pool->waiters.push_back(&w);
      WaiterGuard guard{*pool, w};
      auto [ec] = co_await t.async_wait(net::use_nothrow);
      if (!ec) co_return sql_tempfail("pgsql: timed out waiting for a free connection");
    }
    ConnPtr c;
    const bool reused = !pool->idle.empty();
    if (reused) {
      c = std::move(pool->idle.back());
      pool->idle.pop_back();
    } else {
      if (Clock::now() < pool->down_until) {
        std::string msg = "pgsql: database unavailable (retrying later): " + pool->last_error;
        co_return sql_tempfail(std::move(msg));
      }
      ++pool->open;
      Connected conn = co_await connect_async(s_.connect, deadline);
      if (!conn.conn) {
        pool->backoff = std::min(kBackoffMax, std::max(kBackoffMin, pool->backoff * 2));
        pool->down_until = Clock::now() + pool->backoff;
        pool->last_error = conn.error;
        pool->release(nullptr);
        std::string msg = "pgsql: connect failed: " + conn.error;
        co_return sql_tempfail(std::move(msg));
      }
      pool->backoff = std::chrono::milliseconds{0};
      pool->down_until = {};
      c = std::move(conn.conn);
    }

    std::string sql;
    bool bad_encoding = false;
    PGconn* pg = c->pg;
    Escaper esc = [pg, &bad_encoding](std::string& out, std::string_view v) {
      const size_t old = out.size();
      out.resize(old + 2 * v.size() + 1);
      int err = 0;
      size_t n = PQescapeStringConn(pg, out.data() + old, v.data(), v.size(), &err);
      if (err) bad_encoding = true;
      out.resize(old + n);
    };
    if (!s_.query.expand(req, esc, sql) || bad_encoding) {
      core::secure_zero(sql);
      pool->release(std::move(c));
      co_return unknown_user(bad_encoding ? "invalid characters in user name" : "user name contains NUL");
    }
    QueryOut q = co_await run_query(*c, sql, deadline);
    if (s_.query.uses_password()) core::secure_zero(sql);
    if (q.broken) {
      c.reset();
      pool->release(nullptr);
      // A pooled connection the server closed meanwhile: one retry on a new one.
      if (reused && !q.timeout && attempt == 0) continue;
      std::string msg = "pgsql: " + q.error;
      co_return sql_tempfail(std::move(msg));
    }
    pool->release(std::move(c));
    if (!q.res) co_return sql_tempfail("pgsql: query returned no result");
    const ExecStatusType st = PQresultStatus(q.res.get());
    if (st != PGRES_TUPLES_OK) {
      // The primary message only: the full one quotes the query ("LINE 1:
      // ..."), which may hold a %{password} value.
      const char* primary = PQresultErrorField(q.res.get(), PG_DIAG_MESSAGE_PRIMARY);
      std::string msg = "pgsql: query failed: " + pg_message(primary ? primary : PQresStatus(st));
      co_return sql_tempfail(std::move(msg));
    }
    SqlRow row;
    PGresult* r = q.res.get();
    row.rows = static_cast<size_t>(PQntuples(r));
    if (row.rows > 0) {
      const int n = PQnfields(r);
      for (int i = 0; i < n; ++i) {
        row.names.emplace_back(PQfname(r, i));
        if (PQgetisnull(r, 0, i)) row.values.emplace_back(std::nullopt);
        else row.values.emplace_back(std::string_view(PQgetvalue(r, 0, i), static_cast<size_t>(PQgetlength(r, 0, i))));
      }
    }
    SqlAnswer a = sql_answer(req, row, cfg_);
    q.res.reset();
    if (!a.verify || !req.hashing || sql_verify_is_cheap(a, cfg_)) co_return verify(std::move(a), req);
    RequestCopy copy(req);
    net::Task<Lookup> task = verify_on_pool(self, std::move(a), std::move(copy));
    co_return co_await asio::co_spawn(req.hashing->get_executor(), std::move(task), asio::use_awaitable);
  }
}

}  // namespace

core::Result<std::shared_ptr<Passdb>> make_pgsql(const config::Passdb& cfg) {
  const auto* s = dynamic_cast<const SqlSettings*>(cfg.settings.get());
  if (!s) {
    return core::fail("pgsql: settings missing");
  }
  if (!known_scheme(cfg.default_pass_scheme)) {
    return core::fail("pgsql: unknown default_pass_scheme '" + cfg.default_pass_scheme + "'");
  }
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(s->connect.c_str(), &err);
  if (!opts) {
    auto fail = core::fail("pgsql: invalid connect string: " + pg_message(err ? err : "out of memory"));
    if (err) PQfreemem(err);
    return fail;
  }
  PQconninfoFree(opts);
  return std::make_shared<Pgsql>(cfg, *s);
}

}  // namespace portier::passdb
