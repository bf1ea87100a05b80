#include "doveadm/service.hpp"

#include <asio/co_spawn.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <string>
#include <vector>

#include "doveadm/protocol.hpp"
#include "doveadm/route.hpp"
#include "log/log.hpp"
#include "login/counters.hpp"
#include "net/address.hpp"
#include "net/awaitable.hpp"
#include "net/socket.hpp"
#include "passdb/proxy_fields.hpp"

namespace portier::doveadm {

using asio::ip::tcp;
using std::chrono::milliseconds;

struct Service::Shared {
  std::mutex mu;
  std::shared_ptr<const login::Snapshot> snap;
  unsigned sessions = 0;  // io thread only
  std::shared_ptr<const login::Snapshot> get() {
    std::lock_guard lk(mu);
    return snap;
  }
};

namespace {

/// Lines from a socket, bounded by kMaxLine.
struct LineReader {
  tcp::socket& sock;
  std::string buf;
  enum class Status { Line, Eof, TooLong, Error };
};

}  // namespace

net::Task<Route> route(const login::Snapshot& snap, const std::string& user, const std::string& rip) {
  Route r;
  const auto& cfg = snap.cfg.doveadm;
  passdb::Request req = passdb::lookup_only_request(user, "doveadm", snap.passdbs.timeout());
  req.remote_ip = rip;
  req.secured = true;
  passdb::Lookup l = co_await snap.passdbs.lookup(req);
  if (l.result == passdb::Result::UnknownUser) {
    r.code = "NOUSER";
    r.why = "User doesn't exist";
    co_return r;
  }
  r.code = "TEMPFAIL";
  if (l.result != passdb::Result::Ok) {
    r.why = l.result == passdb::Result::TempFail ? "passdb lookup failed: " + log::sanitize(l.error, 200)
                                                 : std::string("passdb lookup failed");
    co_return r;
  }
  auto pf = passdb::parse_proxy_fields(l.reply, cfg.port, cfg.port);
  if (!pf.fields || !pf.fields->proxy) {
    r.why = pf.fields ? std::string("user has no proxy destination (no proxy field in the passdb)")
                      : "passdb: " + pf.error;
    co_return r;
  }
  const auto& f = *pf.fields;
  r.code.clear();
  r.port = cfg.passdb_port && l.reply.has("port") ? f.port : cfg.port;
  r.host = f.hostip.empty() ? f.host : f.hostip;
  r.destuser = f.destuser.empty() ? l.reply.user : f.destuser;
  if (r.destuser.empty()) r.destuser = user;
  co_return r;
}

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<Service::Shared> sh, tcp::socket s, tcp::endpoint remote)
      : sh_(std::move(sh)),
        snap_(sh_->get()),
        cfg_(snap_->cfg.doveadm),
        client_(std::move(s)),
        deadline_(client_.get_executor()),
        in_{client_, {}},
        rip_(net::to_text(remote.address())) {
    deadline_.watch(&client_);
  }

  static net::Task<void> run(std::shared_ptr<Session> self) {
    ++self->sh_->sessions;
    co_await self->serve();
    --self->sh_->sessions;
    asio::error_code ignored;
    self->client_.close(ignored);
  }

 private:
  net::Task<LineReader::Status> read_line(LineReader& r, std::string& line) {
    for (;;) {
      size_t lf = r.buf.find('\n');
      if (lf != std::string::npos) {
        line.assign(r.buf, 0, lf);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        r.buf.erase(0, lf + 1);
        co_return LineReader::Status::Line;
      }
      if (r.buf.size() > kMaxLine) co_return LineReader::Status::TooLong;
      deadline_.arm(cfg_.timeout);
      auto [ec, n] = co_await r.sock.async_read_some(asio::buffer(chunk_), net::use_nothrow);
      deadline_.disarm();
      if (ec == asio::error::eof) co_return LineReader::Status::Eof;
      if (ec) co_return LineReader::Status::Error;
      r.buf.append(chunk_.data(), n);
    }
  }

  net::Task<bool> write(tcp::socket& s, std::string_view data) {
    deadline_.arm(cfg_.timeout);
    auto [ec, n] = co_await asio::async_write(s, asio::buffer(data.data(), data.size()), net::use_nothrow);
    deadline_.disarm();
    (void)n;
    co_return !ec;
  }

  void note(log::Level lvl, std::string_view what) {
    log::logf(lvl, "doveadm", "{}({}): {}", user_.empty() ? "client" : "proxy",
              user_.empty() ? rip_ : log::sanitize(user_, 128) + "," + rip_, what);
  }

  /// Answers the current command with portier's own failure.
  net::Task<bool> fail(std::string_view why, std::string_view code) {
    note(log::Level::Error, fmt::format("{}: {}", log::sanitize(cmd_name_, 64), why));
    login::Counters::local().doveadm_command(code == "NOUSER"     ? login::DoveadmResult::UserUnknown
                                             : code == "TEMPFAIL" ? login::DoveadmResult::TempFail
                                                                  : login::DoveadmResult::Refused);
    std::string text = fmt::format("portier: {}", why);
    std::string reply = error_reply(mux_, text, code);
    co_return co_await write(client_, reply);
  }

  net::Task<void> serve() {
    std::string line;
    auto st = co_await read_line(in_, line);
    std::optional<unsigned> minor;
    if (st == LineReader::Status::Line) minor = parse_version(line);
    if (!minor) {
      note(log::Level::Info, st == LineReader::Status::Line ? "Disconnected: not a doveadm VERSION line"
                                                            : "Disconnected before the handshake");
      co_return;
    }
    minor_ = std::min(*minor, kMaxMinor);
    mux_ = minor_ >= 1;
    std::string greeting = server_greeting(minor_);
    if (!co_await write(client_, greeting)) co_return;
    st = co_await read_line(in_, line);
    bool ok = st == LineReader::Status::Line && check_plain(line, cfg_.password);
    core::Secret wipe = core::Secret::take(line);
    if (!ok) {
      note(log::Level::Info, "Authentication failed (wrong doveadm password)");
      std::string no = "-\n";
      co_await write(client_, no);
      co_return;
    }
    std::string yes = "+\n";
    if (!co_await write(client_, yes)) co_return;
    for (;;) {
      st = co_await read_line(in_, line);
      if (st == LineReader::Status::Eof) co_return;
      if (st != LineReader::Status::Line) {
        note(log::Level::Info, st == LineReader::Status::TooLong ? "Disconnected: command line too long"
                               : deadline_.expired()             ? "Disconnected: idle timeout"
                                                                 : "Disconnected: read error");
        co_return;
      }
      if (!co_await command(line)) co_return;
    }
  }

  /// One command; false ends the session.
  net::Task<bool> command(const std::string& line) {
    user_.clear();
    cmd_name_.clear();
    auto cmd = parse_command(line);
    if (!cmd) {
      std::string why = "invalid command line (expected <flags> TAB <user> TAB <command>)";
      std::string code = "USAGE";
      co_return co_await fail(why, code);
    }
    user_ = cmd->user;
    cmd_name_ = cmd->name;
    if (cmd->user.empty()) {
      std::string why = "only per-user commands are proxied (give -u <user>)";
      std::string code = "USAGE";
      co_return co_await fail(why, code);
    }
    if (cmd->name == "dsync-server") {
      std::string why = "dsync through the doveadm proxy is not supported";
      std::string code = "NOTPOSSIBLE";
      co_return co_await fail(why, code);
    }
    Route r = co_await route(*snap_, cmd->user, rip_);
    if (!r.code.empty()) co_return co_await fail(r.why, r.code);
    std::string rendered = render_command(*cmd, r.destuser);
    co_return co_await forward(r.host, r.port, rendered);
  }

  net::Task<bool> forward(const std::string& host, uint16_t port, const std::string& rendered) {
    const std::string dest = fmt::format("{}:{}", host, port);
    asio::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (ec) {
      std::string why = "invalid backend address " + log::sanitize(host, 64);
      std::string code = "TEMPFAIL";
      co_return co_await fail(why, code);
    }
    tcp::endpoint ep(addr, port);
    tcp::socket backend = net::open_socket(client_.get_executor(), ep.protocol(), ec);
    if (ec) {
      std::string why = "socket(): " + ec.message();
      std::string code = "TEMPFAIL";
      co_return co_await fail(why, code);
    }
    // The session's deadline also cancels the backend while it is open.
    deadline_.watch(&backend);
    bool result = co_await exchange(backend, dest, ep, rendered);
    deadline_.unwatch(&backend);
    asio::error_code ignored;
    backend.close(ignored);
    co_return result;
  }

  net::Task<bool> exchange(tcp::socket& backend, const std::string& dest, const tcp::endpoint& ep,
                           const std::string& rendered) {
    const std::string code = "TEMPFAIL";
    deadline_.arm(cfg_.timeout);
    auto ec = co_await net::connect(backend, ep);
    deadline_.disarm();
    if (ec) {
      std::string why = fmt::format("connect({}) failed: {}", dest,
                                    deadline_.expired() ? std::string("timed out") : ec.message());
      co_return co_await fail(why, code);
    }
    LineReader br{backend, {}};
    std::string hello = client_version(minor_);
    std::string line;
    if (!co_await write(backend, hello)) {
      std::string why = fmt::format("{}: write failed", dest);
      co_return co_await fail(why, code);
    }
    auto st = co_await read_line(br, line);
    bool versioned = false;
    if (st == LineReader::Status::Line && line.rfind("VERSION\t", 0) == 0) {
      versioned = true;
      st = co_await read_line(br, line);
    }
    auto lost = [&](LineReader::Status s) {
      return fmt::format("{}: {} during the handshake", dest,
                         deadline_.expired()              ? "timed out"
                         : s == LineReader::Status::Eof   ? "connection closed"
                         : s == LineReader::Status::TooLong ? "line too long"
                                                          : "read error");
    };
    if (st != LineReader::Status::Line) {
      std::string why = lost(st);
      co_return co_await fail(why, code);
    }
    if (mux_ && !versioned) {
      std::string why = dest + ": the backend speaks doveadm protocol 1.0 only";
      co_return co_await fail(why, code);
    }
    if (line == "-") {
      const std::string& pw = cfg_.backend_password.empty() ? cfg_.password : cfg_.backend_password;
      core::Secret auth = plain_line(pw);
      std::string_view auth_line = auth.view();
      if (!co_await write(backend, auth_line)) {
        std::string why = dest + ": write failed";
        co_return co_await fail(why, code);
      }
      st = co_await read_line(br, line);
      if (st != LineReader::Status::Line) {
        std::string why = lost(st);
        co_return co_await fail(why, code);
      }
      if (line != "+") {
        std::string why = dest + ": the backend refused portier's doveadm password (backend_password)";
        co_return co_await fail(why, code);
      }
    } else if (line != "+") {
      std::string why = dest + ": unexpected handshake line from the backend";
      co_return co_await fail(why, code);
    }
    if (!co_await write(backend, rendered)) {
      std::string why = dest + ": write failed";
      co_return co_await fail(why, code);
    }
    // The reply, streamed: read, scan, pass on, one buffer at a time.
    ReplyScanner scan(mux_);
    uint64_t bytes = 0;
    std::string pending = std::move(br.buf);
    for (;;) {
      std::string_view data;
      if (!pending.empty()) {
        data = pending;
      } else {
        deadline_.arm(cfg_.timeout);
        auto [rec, n] = co_await backend.async_read_some(asio::buffer(chunk_), net::use_nothrow);
        deadline_.disarm();
        if (rec) {
          std::string why = fmt::format("{}: {} before the end of the reply", dest,
                                        deadline_.expired()        ? std::string("timed out")
                                        : rec == asio::error::eof ? std::string("connection closed")
                                                                  : rec.message());
          if (scan.can_append()) co_return co_await fail(why, code);
          note(log::Level::Error, fmt::format("{}: {}", log::sanitize(cmd_name_, 64), why));
          login::Counters::local().doveadm_command(login::DoveadmResult::Aborted);
          co_return false;
        }
        data = std::string_view(chunk_.data(), n);
      }
      size_t use = scan.feed(data);
      if (scan.failed()) {
        note(log::Level::Error, fmt::format("{}: {}: malformed reply from the backend", log::sanitize(cmd_name_, 64), dest));
        login::Counters::local().doveadm_command(login::DoveadmResult::Aborted);
        co_return false;
      }
      std::string_view out = data.substr(0, use);
      bytes += out.size();
      if (!co_await write(client_, out)) {
        login::Counters::local().doveadm_command(login::DoveadmResult::Aborted);
        co_return false;
      }
      pending.clear();
      if (scan.done()) break;
    }
    note(log::Level::Info, fmt::format("{}: {}: {} (exit code {}, {} bytes)", log::sanitize(cmd_name_, 64), dest,
                                       log::sanitize(scan.status(), 64), exit_code(scan.status()), bytes));
    login::Counters::local().doveadm_command(login::DoveadmResult::Ok);
    co_return true;
  }

  std::shared_ptr<Service::Shared> sh_;
  std::shared_ptr<const login::Snapshot> snap_;
  const config::Doveadm& cfg_;
  tcp::socket client_;
  Deadline deadline_;
  LineReader in_;
  std::string rip_;
  unsigned minor_ = 0;
  bool mux_ = false;
  std::string user_, cmd_name_;
  std::array<char, 16384> chunk_{};
};

}  // namespace

Service::Service(std::shared_ptr<const login::Snapshot> snapshot)
    : shared_(std::make_shared<Shared>()), work_(io_.get_executor()), acceptor_(io_) {
  shared_->snap = std::move(snapshot);
}

Service::~Service() { shutdown(); }

core::Result<void> Service::bind() {
  auto snap = shared_->get();
  const auto& d = snap->cfg.doveadm;
  asio::error_code ec;
  auto addr = asio::ip::make_address(d.listen_address, ec);
  if (ec) return core::fail("doveadm listen " + d.listen_address + ": invalid address");
  tcp::endpoint ep(addr, d.listen_port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && addr.is_v6()) acceptor_.set_option(asio::ip::v6_only(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return core::fail("doveadm: bind(" + d.listen_address + ", " + std::to_string(d.listen_port) +
                      ") failed: " + ec.message());
  port_ = acceptor_.local_endpoint().port();
  log::logf(log::Level::Info, "portier", "Listening on {}:{} (doveadm)",
            addr.is_v6() ? "[" + d.listen_address + "]" : d.listen_address, port_);
  return {};
}

void Service::start() {
  if (acceptor_.is_open()) start_accepting();
  thread_ = std::thread([this] { io_.run(); });
}

void Service::http_command(nlohmann::json cmd, std::function<void(nlohmann::json)> done) {
  asio::co_spawn(
      io_,
      [sh = shared_, cmd = std::move(cmd), done = std::move(done)]() mutable -> net::Task<void> {
        auto snap = sh->get();
        nlohmann::json reply = co_await http_forward(snap, cmd);
        done(std::move(reply));
      },
      asio::detached);
}

void Service::start_accepting() {
  asio::co_spawn(
      io_,
      [this]() -> net::Task<void> {
        net::Listener listener(acceptor_);
        asio::steady_timer backoff(io_);
        for (;;) {
          auto [ec, sock, eps] = co_await listener.accept();
          if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
          if (ec) {
            log::logf(log::Level::Error, "doveadm", "accept() failed: {}", ec.message());
            backoff.expires_after(milliseconds(100));
            co_await backoff.async_wait(net::use_nothrow);
            continue;
          }
          auto snap = shared_->get();
          if (shared_->sessions >= snap->cfg.doveadm.max_connections) {
            log::logf(log::Level::Warning, "doveadm",
                      "client({}): Disconnected: doveadm.max_connections ({}) reached",
                      net::to_text(eps.remote.address()), snap->cfg.doveadm.max_connections);
            continue;  // the socket closes here
          }
          auto s = std::make_shared<Session>(shared_, std::move(sock), eps.remote);
          asio::co_spawn(io_, Session::run(std::move(s)), asio::detached);
        }
      },
      asio::detached);
}

void Service::reload(std::shared_ptr<const login::Snapshot> snapshot) {
  std::lock_guard lk(shared_->mu);
  shared_->snap = std::move(snapshot);
}

void Service::shutdown() {
  work_.reset();
  if (thread_.joinable()) {
    asio::post(io_, [this] {
      asio::error_code ignored;
      acceptor_.close(ignored);
    });
    io_.stop();
    thread_.join();
  }
}

}  // namespace portier::doveadm
