#include "login/server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/error.hpp>
#include <asio/post.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/steady_timer.hpp>

#include "log/log.hpp"
#include "login/counters.hpp"
#include "net/awaitable.hpp"
#include "net/deadline.hpp"
#include "net/socket.hpp"

namespace portier::login {

namespace {
std::string_view tls_name(config::TlsMode m) {
  switch (m) {
    case config::TlsMode::None:
      return "none";
    case config::TlsMode::StartTls:
      return "starttls";
    case config::TlsMode::Implicit:
      return "implicit";
  }
  return "none";
}
}  // namespace

Server::Server(std::shared_ptr<const Snapshot> snapshot, std::vector<const Protocol*> protocols,
               std::vector<const SiblingService*> siblings)
    : snapshot_(std::move(snapshot)), protocols_(std::move(protocols)), siblings_(std::move(siblings)) {
  siblings_.resize(protocols_.size(), nullptr);
  unsigned n = snapshot_->cfg.server.workers;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>());
  auth_pool_ = std::make_unique<asio::thread_pool>(std::max(2u, n));
  for (size_t i = 0; i < snapshot_->cfg.listeners.size(); ++i)
    listeners_.push_back({protocols_[i], snapshot_->cfg.listeners[i].tls,
                          snapshot_->cfg.listeners[i].haproxy ? "haproxy" : "", {}, i});
  listener_names_.resize(listeners_.size());
}

Server::~Server() { shutdown(); }

std::shared_ptr<const Snapshot> Server::snapshot() const {
  std::lock_guard lock(snap_mutex_);
  return snapshot_;
}

void Server::reload(std::shared_ptr<const Snapshot> snapshot) {
  {
    std::lock_guard lock(snap_mutex_);
    snapshot_ = std::move(snapshot);
  }
  Counters::reloaded(true);
}

core::Result<void> Server::bind() {
  const auto& cfg = snapshot_->cfg;
  for (size_t li = 0; li < cfg.listeners.size(); ++li) {
    const auto& l = cfg.listeners[li];
    asio::error_code ec;
    if (!l.path.empty()) {
      // A unix socket (sibling services): one acceptor, on the first worker.
      ::unlink(l.path.c_str());  // a stale socket from a previous run
      auto acc = std::make_unique<asio::local::stream_protocol::acceptor>(workers_.front()->io);
      acc->open(asio::local::stream_protocol(), ec);
      if (!ec) acc->bind(asio::local::stream_protocol::endpoint(l.path), ec);
      if (!ec && ::chmod(l.path.c_str(), 0666) != 0)
        ec = asio::error_code(errno, asio::error::get_system_category());
      if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
      if (ec) return core::fail("bind(" + l.path + ") failed: " + ec.message());
      for (auto& w : workers_) w->acceptors.push_back(nullptr);
      workers_.front()->unix_acceptors.emplace_back(li, std::move(acc));
      listener_names_[li] = l.path;
      listeners_[li].name = listener_names_[li];
      log::logf(log::Level::Info, "portier", "Listening on {} ({}, unix)", l.path, l.protocol);
      continue;
    }
    auto addr = asio::ip::make_address(l.address, ec);
    if (ec) {
      return core::fail("listener " + l.address + ": invalid address");
    }
    uint16_t port = l.port;
    for (auto& w : workers_) {
      auto acc = std::make_unique<asio::ip::tcp::acceptor>(w->io);
      asio::ip::tcp::endpoint ep(addr, port);
      acc->open(ep.protocol(), ec);
      if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) {
        // One acceptor per worker on the same address: the kernel balances.
        int one = 1;
        if (::setsockopt(acc->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
          ec = asio::error_code(errno, asio::error::get_system_category());
      }
      if (!ec && addr.is_v6()) acc->set_option(asio::ip::v6_only(true), ec);
      if (!ec) acc->bind(ep, ec);
      if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        return core::fail("bind(" + l.address + ", " + std::to_string(port) + ") failed: " + ec.message());
      }
      // Port 0: the first worker's bind picks the port, the others share it.
      port = acc->local_endpoint().port();
      w->acceptors.push_back(std::move(acc));
    }
    // The metrics' listener label; its counters exist (at zero) from now on.
    listener_names_[li] = fmt::format("{}:{}", addr.is_v6() ? "[" + l.address + "]" : l.address, port);
    listeners_[li].name = listener_names_[li];
    if (listeners_[li].protocol)  // a sibling service (LMTP) has no login counters
      Counters::local().slot(listeners_[li].protocol->service, listeners_[li].name);
    log::logf(log::Level::Info, "portier", "Listening on {}:{} ({}, tls={}{})",
              addr.is_v6() ? "[" + l.address + "]" : l.address, port, l.protocol,
              tls_name(l.tls), l.haproxy ? ", haproxy" : "");
  }
  return {};
}

void Server::accept_loop(Worker& w, asio::ip::tcp::acceptor& acc, size_t li) {
  asio::co_spawn(
      w.io,
      [this, &w, &acc, li]() -> net::Task<void> {
        // Non-blocking, TCP_NODELAY (inherited by accepted sockets) and the
        // local endpoint: once per listener, not per connection.
        net::Listener listener(acc);
        asio::steady_timer backoff(w.io);
        for (;;) {
          auto [ec, sock, eps] = co_await listener.accept();
          if (ec == asio::error::operation_aborted || w.registry.shutting_down) co_return;
          if (ec) {
            // EMFILE/ENFILE and friends: log, back off briefly, keep serving.
            log::logf(log::Level::Error, "portier", "accept() failed: {}", ec.message());
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(net::use_nothrow);
            continue;
          }
          if (const SiblingService* sib = siblings_[li]) {
            sib->start({std::move(sock), eps, snapshot(), w.registry, governor_});
            continue;
          }
          // Peer from accept4, local from the listener unless it is a wildcard.
          start_session(std::move(sock), eps, snapshot(), listeners_[li], w.registry, *auth_pool_,
                        governor_);
        }
      },
      asio::detached);
}

// A unix-socket client (a local MTA) has no IP: it is shown as 127.0.0.1,
// port 0, on both ends — local, like Dovecot's unix listeners. The stream is
// handed on as a tcp::socket over the same descriptor (reads and writes do
// not care about the address family; nothing asks it for endpoints).
void Server::unix_accept_loop(Worker& w, asio::local::stream_protocol::acceptor& acc, size_t li) {
  asio::co_spawn(
      w.io,
      [this, &w, &acc, li]() -> net::Task<void> {
        asio::steady_timer backoff(w.io);
        const asio::ip::tcp::endpoint local(asio::ip::address_v4::loopback(), 0);
        for (;;) {
          asio::local::stream_protocol::socket peer(w.io);
          auto [ec] = co_await acc.async_accept(peer, net::use_nothrow);
          if (ec == asio::error::operation_aborted || w.registry.shutting_down) co_return;
          if (ec) {
            log::logf(log::Level::Error, "portier", "accept() failed: {}", ec.message());
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(net::use_nothrow);
            continue;
          }
          asio::ip::tcp::socket sock(w.io);
          asio::error_code aec;
          const int fd = peer.release(aec);
          if (!aec) sock.assign(asio::ip::tcp::v4(), fd, aec);
          if (aec) {
            if (fd >= 0) ::close(fd);
            continue;
          }
          sock.non_blocking(true, aec);
          net::Endpoints eps{local, local};
          if (const SiblingService* sib = siblings_[li])
            sib->start({std::move(sock), eps, snapshot(), w.registry, governor_});
        }
      },
      asio::detached);
}

void Server::start() {
  for (auto& w : workers_) {
    for (size_t li = 0; li < w->acceptors.size(); ++li)
      if (w->acceptors[li]) accept_loop(*w, *w->acceptors[li], li);
    for (auto& [li, acc] : w->unix_acceptors) unix_accept_loop(*w, *acc, li);
    Worker* wp = w.get();
    wp->thread = std::thread([wp] { wp->io.run(); });
  }
}

bool Server::heartbeat() {
  bool all = true;
  for (auto& w : workers_) {
    Worker* wp = w.get();
    all &= wp->beats.load() == wp->posted;
    ++wp->posted;
    asio::post(wp->io, [wp] { ++wp->beats; });
  }
  return all;
}

void Server::shutdown() {
  bool any = false;
  for (auto& w : workers_) any |= w->thread.joinable();
  if (!any) return;
  auto on_each = [this](auto fn) {
    for (auto& w : workers_) {
      if (!w->thread.joinable()) continue;
      Worker* wp = w.get();
      asio::post(wp->io, [wp, fn] { fn(*wp); });
    }
  };
  // 1. Stop accepting; end relays and idle pre-login sessions.
  on_each([](Worker& w) {
    asio::error_code ec;
    for (auto& a : w.acceptors)
      if (a) a->close(ec);
    for (auto& [li, a] : w.unix_acceptors) {
      const std::string path = a->local_endpoint(ec).path();
      a->close(ec);
      if (!path.empty()) ::unlink(path.c_str());
    }
    // The worker's deadline timer stays armed between sessions; from now on
    // it goes when the last deadline does, so that run() can return.
    net::Wheel::of(w.io.get_executor()).drain();
    for (auto* t : w.kick_timers) t->cancel();
    w.registry.stop_all(false);
  });
  // 2. Logins already talking to a backend may finish, up to the deadline.
  auto deadline = std::chrono::steady_clock::now() + snapshot()->cfg.server.shutdown_timeout;
  // (Polled: a worker with nothing left has already returned from run().)
  while (std::chrono::steady_clock::now() < deadline && governor_.backend_logins() > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // 3. Everything that is left ends now.
  on_each([](Worker& w) { w.registry.stop_all(true); });
  for (auto& w : workers_) {
    // Sessions end on their own after stop(); the io_context then runs out of work.
    if (w->thread.joinable()) w->thread.join();
  }
  if (auth_pool_) auth_pool_->join();
}

void SessionRegistry::stop_all(bool force) {
  shutting_down = true;
  // stop() only cancels; sessions remove themselves when their coroutine ends.
  for (Stoppable* s : sessions) s->stop(force);
  // A relay's stop() erases it from `relays` at once: iterate over a copy.
  std::vector<relay::Relay*> live;
  live.reserve(relays.size());
  for (auto& [key, r] : relays) live.push_back(r.relay);
  for (relay::Relay* r : live) r->stop();
}

std::vector<SessionRow> SessionRegistry::rows() const {
  std::vector<SessionRow> out;
  out.reserve(sessions.size() + relays.size());
  for (const Stoppable* s : sessions) out.push_back(s->row());
  for (const auto& [key, r] : relays) {
    out.push_back(r.row);
    out.back().in = r.relay->bytes_in();
    out.back().out = r.relay->bytes_out();
  }
  return out;
}

size_t SessionRegistry::kick(const std::unordered_set<uint64_t>& ids) {
  // kick()/stop() only cancel (sessions) or end at once and erase themselves
  // (relays): collect first, then act.
  std::vector<Stoppable*> pre;
  std::vector<relay::Relay*> live;
  for (Stoppable* s : sessions)
    if (ids.count(s->id())) pre.push_back(s);
  for (auto& [key, r] : relays)
    if (ids.count(r.row.id)) live.push_back(r.relay);
  for (Stoppable* s : pre) s->kick();
  for (relay::Relay* r : live) r->stop("Kicked by admin");
  return pre.size() + live.size();
}

uint64_t next_session_id() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

void set_dest(SessionRow& row, std::string dest) {
  // "ip:port", "[v6]:port", "host[ip]:port"
  auto colon = dest.rfind(':');
  auto open = dest.find('[');
  if (colon != std::string::npos && (open == std::string::npos || colon > dest.rfind(']'))) {
    unsigned port = 0;
    for (char c : std::string_view(dest).substr(colon + 1))
      port = c >= '0' && c <= '9' && port < 65536 ? port * 10 + unsigned(c - '0') : 65536;
    row.dest_port = port < 65536 ? static_cast<uint16_t>(port) : 0;
    if (open != std::string::npos && dest.rfind(']') != std::string::npos)
      row.dest_ip = dest.substr(open + 1, dest.rfind(']') - open - 1);
    else
      row.dest_ip = dest.substr(0, colon);
  }
  row.dest = std::move(dest);
}

// ---- admin API ----------------------------------------------------------------

namespace {
/// Gathers one result per worker; the last one calls `done`.
template <typename T>
struct Gather {
  std::mutex m;
  size_t left = 0;
  T acc{};
  std::function<void(T)> done;
};
}  // namespace

void Server::list(std::function<void(std::vector<SessionRow>)> done) {
  auto g = std::make_shared<Gather<std::vector<SessionRow>>>();
  g->left = workers_.size();
  g->done = std::move(done);
  for (auto& w : workers_) {
    Worker* wp = w.get();
    asio::post(wp->io, [wp, g] {
      auto rows = wp->registry.rows();
      std::unique_lock lock(g->m);
      for (auto& r : rows) g->acc.push_back(std::move(r));
      if (--g->left == 0) {
        lock.unlock();
        g->done(std::move(g->acc));
      }
    });
  }
}

void Server::kick(std::function<bool(const SessionRow&)> match, std::chrono::milliseconds delay,
                  std::function<void(size_t)> done) {
  auto g = std::make_shared<Gather<size_t>>();
  g->left = workers_.size();
  g->done = std::move(done);
  auto m = std::make_shared<std::function<bool(const SessionRow&)>>(std::move(match));
  for (auto& w : workers_) {
    Worker* wp = w.get();
    asio::post(wp->io, [this, wp, g, m, delay] {
      std::vector<uint64_t> ids;
      if (!wp->registry.shutting_down)
        for (const auto& r : wp->registry.rows())
          if ((*m)(r)) ids.push_back(r.id);
      const size_t n = ids.size();
      if (delay.count() <= 0) wp->registry.kick({ids.begin(), ids.end()});
      else if (n) kick_later(*wp, std::move(ids), delay);
      std::unique_lock lock(g->m);
      g->acc += n;
      if (--g->left == 0) {
        lock.unlock();
        g->done(g->acc);
      }
    });
  }
}

void Server::kick_later(Worker& w, std::vector<uint64_t> ids, std::chrono::milliseconds delay) {
  asio::co_spawn(
      w.io,
      [&w, ids = std::move(ids), delay]() -> net::Task<void> {
        // Session i of n goes at i/n of the delay, in 100 ms steps.
        constexpr auto kStep = std::chrono::milliseconds(100);
        asio::steady_timer timer(w.io);
        w.kick_timers.insert(&timer);
        const auto start = std::chrono::steady_clock::now();
        const size_t n = ids.size();
        auto offset = [&](size_t i) {
          auto at = delay * static_cast<long long>(i) / static_cast<long long>(n);
          return at - at % kStep;
        };
        size_t i = 0;
        while (i < n && !w.registry.shutting_down) {
          const auto at = offset(i);
          timer.expires_at(start + at);
          co_await timer.async_wait(net::use_nothrow);
          if (w.registry.shutting_down) break;
          std::unordered_set<uint64_t> batch;
          for (; i < n && offset(i) <= at; ++i) batch.insert(ids[i]);
          w.registry.kick(batch);
        }
        w.kick_timers.erase(&timer);
      },
      asio::detached);
}

}  // namespace portier::login
