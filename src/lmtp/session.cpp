// The LMTP proxy session (see service.hpp and docs/LMTP.md).

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/strings.hpp"
#include "core/text.hpp"
#include "lmtp/events.hpp"
#include "lmtp/service.hpp"
#include "lmtp/smtp.hpp"
#include "log/log.hpp"
#include "login/client_info.hpp"
#include "net/address.hpp"
#include "net/deadline.hpp"
#include "net/socket.hpp"
#include "passdb/chain.hpp"
#include "passdb/proxy_fields.hpp"
#include "tls/stream.hpp"

namespace portier::lmtp {

namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using login::DeliveryReason;

constexpr size_t kRead = 64 * 1024;         // one read (and the DATA chunk bound)
constexpr size_t kMaxReplyLine = 4096;      // a backend reply line
constexpr unsigned kMaxBadCommands = 20;    // unknown/invalid commands before 421
constexpr std::string_view kLog = "lmtp";  // the log service name

enum class Io { Ok, TooLong, Closed, TimedOut, Failed };

/// A connection read line by line (or in chunks) and written whole, each
/// operation under a deadline that cancels it.
class Conn {
 public:
  explicit Conn(tcp::socket s) : stream_(std::move(s)), deadline_(stream_.socket().get_executor()) {}

  tls::Stream& stream() { return stream_; }
  std::string in;  ///< received, not yet consumed

  /// One line (without CR LF) of at most `max` bytes.
  net::Task<Io> read_line(std::string& line, size_t max, milliseconds timeout) {
    for (;;) {
      size_t nl = in.find('\n');
      if (nl != std::string::npos) {
        if (nl > max) co_return Io::TooLong;
        line.assign(in, 0, nl > 0 && in[nl - 1] == '\r' ? nl - 1 : nl);
        in.erase(0, nl + 1);
        co_return Io::Ok;
      }
      if (in.size() > max) co_return Io::TooLong;
      Io r = co_await fill(timeout);
      if (r != Io::Ok) co_return r;
    }
  }

  /// Append what the peer sent next (at most kRead bytes).
  net::Task<Io> fill(milliseconds timeout) {
    size_t old = in.size();
    in.resize(old + kRead);
    asio::error_code ec;
    arm(timeout);
    size_t n = co_await stream_.read_some(in.data() + old, kRead, ec);
    deadline_.cancel();
    in.resize(old + n);
    if (n > 0) co_return Io::Ok;
    if (timed_out_) co_return Io::TimedOut;
    co_return ec == asio::error::eof ? Io::Closed : Io::Failed;
  }

  /// `data` must stay valid until the write completes (a named object).
  net::Task<Io> write(std::string_view data, milliseconds timeout) {
    arm(timeout);
    asio::error_code ec = co_await stream_.write_all(data);
    deadline_.cancel();
    if (!ec) co_return Io::Ok;
    co_return timed_out_ ? Io::TimedOut : Io::Failed;
  }

  /// Arm the deadline for an operation that is not a read or write here
  /// (connect, TLS handshake).
  void arm(milliseconds timeout) {
    timed_out_ = false;
    deadline_.arm_after(timeout, [this] {
      timed_out_ = true;
      stream_.cancel();
    });
  }
  void disarm() { deadline_.cancel(); }
  bool timed_out() const { return timed_out_; }
  void cancel() { stream_.cancel(); }
  void close() {
    deadline_.cancel();
    stream_.close();
  }

 private:
  tls::Stream stream_;
  net::Deadline deadline_;
  bool timed_out_ = false;
};

/// No control characters (UTF-8 is fine: SMTPUTF8 is offered).
bool no_controls(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

std::string_view failure_text(Io r) {
  switch (r) {
    case Io::TimedOut:
      return "timed out";
    case Io::TooLong:
      return "bad reply";
    default:
      return "connection lost";
  }
}

/// One backend connection and its share of the transaction.
struct Backend {
  std::string key;
  std::string host;  ///< for TLS name checks
  tcp::endpoint ep;
  std::string source_ip;
  passdb::BackendTls tls = passdb::BackendTls::None;
  bool any_cert = false;
  bool smtp = false;
  bool not_trusted = false;
  milliseconds timeout{0};
  unsigned n = 0;  ///< P<n>: the n-th backend connection of the session
  std::unique_ptr<Conn> conn;
  Capabilities caps;
  /// Empty while usable; else "connect", "connection lost", "timed out" or
  /// "bad reply" (Dovecot's `Proxy failed (<why>)` texts).
  std::string failure;
  /// A reply refusing the whole transaction (MAIL or DATA refused): applies
  /// to every recipient of this backend.
  std::optional<Reply> refused;
  std::vector<size_t> rcpts;  ///< indices into Session::rcpts_
  bool mail_pending = false;  ///< MAIL not sent yet: goes with the first RCPT (PIPELINING)

  std::string dest() const { return net::to_text(ep.address()) + ":" + std::to_string(ep.port()); }
  bool usable() const { return failure.empty() && !refused; }
};

struct Rcpt {
  std::string addr;    ///< as the client gave it
  Backend* be = nullptr;
  std::optional<Reply> reply;  ///< DATA reply from the backend
};

class Session final : public login::Stoppable, public std::enable_shared_from_this<Session> {
 public:
  explicit Session(login::SiblingConnection c)
      : client_(std::move(c.socket)), eps_(c.endpoints), snap_(std::move(c.snapshot)),
        registry_(c.registry), cfg_(snap_->cfg) {}

  net::Task<void> run();
  void stop(bool force) override {
    if (!force && busy_) return;  // a transaction in progress may finish
    client_.cancel();
    for (auto& b : backends_)
      if (b->conn) b->conn->cancel();
  }
  /// Admin kick: the connection ends now (the sending MTA retries whatever
  /// was not acknowledged, as after any lost connection).
  void kick() override { stop(true); }
  uint64_t id() const override { return id_; }
  login::SessionRow row() const override {
    login::SessionRow r;
    r.id = id_;
    r.protocol = "lmtp";
    r.src_ip = remote_ip_;
    r.src_port = remote_port_;
    r.state = busy_ ? "transaction" : "idle";
    r.since = since_;
    return r;
  }

 private:
  // ---- client leg
  net::Task<bool> reply(const std::string& text) {
    std::string line = text + "\r\n";
    co_return co_await client_.write(line, cfg_.login.client_timeout) == Io::Ok;
  }
  std::string lhlo_reply() const;
  bool apply_xclient(const std::vector<std::pair<std::string, std::string>>& attrs);

  // ---- transaction
  net::Task<std::string> rcpt(const PathArg& p);
  net::Task<bool> data();
  net::Task<void> open(Backend& be);
  net::Task<std::optional<Reply>> command(Backend& be, const std::string& line);
  net::Task<std::optional<Reply>> read_reply(Backend& be);
  void fail(Backend& be, std::string_view why) {
    if (be.failure.empty()) be.failure = std::string(why);
    if (be.conn) be.conn->close();
  }
  std::string proxy_failed(const Backend& be) const {
    return "451 4.4.0 Proxy failed (" + be.failure + ", session=" + sid_ + ")";
  }
  std::string refuse_failed(const std::string& addr, const Backend& be) const {
    const std::string detail = "Proxy failed (" + be.failure + ")", dest = be.dest();
    return refuse(addr, DeliveryReason::BackendFailure, proxy_failed(be), detail, dest);
  }
  void end_transaction();
  /// Count and log a recipient refused at RCPT time; returns `reply`.
  std::string refuse(const std::string& addr, DeliveryReason why, std::string reply, std::string_view detail = {},
                     std::string_view dest = {}) const {
    const int code = reply.size() >= 3 ? std::atoi(reply.substr(0, 3).c_str()) : 0;
    sink_.emit(events::RcptRefused{addr, why, code, detail, dest});
    return reply;
  }

  Conn client_;
  net::Endpoints eps_;
  std::shared_ptr<const login::Snapshot> snap_;
  login::SessionRegistry& registry_;
  const config::Config& cfg_;

  const uint64_t id_ = login::next_session_id();
  const std::chrono::system_clock::time_point since_ = std::chrono::system_clock::now();
  std::string sid_;
  const events::EventSink sink_{sid_};
  std::string remote_ip_, local_ip_;
  asio::ip::address local_addr_;
  uint16_t remote_port_ = 0, local_port_ = 0;
  bool trusted_ = false;
  unsigned ttl_ = 5;
  std::string helo_;
  bool have_helo_ = false;
  bool busy_ = false;  ///< inside a transaction (MAIL given)
  std::optional<std::string> mail_;  ///< the MAIL FROM line to replay (without CRLF)
  std::vector<Rcpt> rcpts_;
  std::vector<std::unique_ptr<Backend>> backends_;
  unsigned backend_count_ = 0;
};

std::string Session::lhlo_reply() const {
  const std::string& host = snap_->frontend.hostname;
  std::string r = "250-" + host + "\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n";
  if (trusted_) r += "250-XCLIENT ADDR PORT TTL SESSION HELO LOGIN PROTO TIMEOUT DESTADDR DESTPORT\r\n";
  r += "250 SMTPUTF8";
  return r;
}

bool Session::apply_xclient(const std::vector<std::pair<std::string, std::string>>& attrs) {
  // All or nothing: check first.
  for (const auto& [k, v] : attrs) {
    if (v == "[UNAVAILABLE]" || v == "[TEMPUNAVAIL]") continue;
    asio::error_code ec;
    if (k == "ADDR") {
      std::string_view a = v;
      if (core::istarts_with(a, "IPV6:")) a.remove_prefix(5);
      asio::ip::make_address(std::string(a), ec);
      if (ec) return false;
    } else if (k == "PORT" || k == "TTL" || k == "DESTPORT" || k == "TIMEOUT") {
      if (v.empty() || v.size() > 5 || v.find_first_not_of("0123456789") != std::string::npos) return false;
      if ((k == "PORT" || k == "DESTPORT") && std::stoul(v) > 65535) return false;
    }
  }
  for (const auto& [k, v] : attrs) {
    if (v == "[UNAVAILABLE]" || v == "[TEMPUNAVAIL]") continue;
    if (k == "ADDR") {
      std::string_view a = v;
      if (core::istarts_with(a, "IPV6:")) a.remove_prefix(5);
      remote_ip_ = net::to_text(asio::ip::make_address(std::string(a)));
    } else if (k == "PORT") {
      remote_port_ = static_cast<uint16_t>(std::stoul(v));
    } else if (k == "TTL") {
      ttl_ = static_cast<unsigned>(std::stoul(v));
    } else if (k == "SESSION") {
      if (!v.empty() && v.size() <= 64) sid_ = clean_text(v);
    } else if (k == "HELO") {
      helo_ = clean_text(v);
    }
  }
  return true;
}

net::Task<std::optional<Reply>> Session::read_reply(Backend& be) {
  ReplyParser parser;
  std::string line;
  for (;;) {
    Io r = co_await be.conn->read_line(line, kMaxReplyLine, be.timeout);
    if (r != Io::Ok) {
      fail(be, failure_text(r));
      co_return std::nullopt;
    }
    auto st = parser.feed(line);
    if (st == ReplyParser::Status::Bad) {
      log::logf(log::Level::Error, kLog, "{}: Backend {} sent an invalid reply line: {}", sid_, be.dest(),
                line.substr(0, 200));
      fail(be, "bad reply");
      co_return std::nullopt;
    }
    if (st == ReplyParser::Status::Done) co_return parser.take();
  }
}

net::Task<std::optional<Reply>> Session::command(Backend& be, const std::string& line) {
  if (!be.conn || !be.failure.empty()) co_return std::nullopt;
  std::string out = line + "\r\n";
  Io w = co_await be.conn->write(out, be.timeout);
  if (w != Io::Ok) {
    fail(be, failure_text(w));
    co_return std::nullopt;
  }
  co_return co_await read_reply(be);
}

net::Task<void> Session::open(Backend& be) {
  auto ex = client_.stream().socket().get_executor();
  asio::error_code ec;
  tcp::socket sock = net::open_socket(ex, be.ep.protocol(), ec);
  // Commands and the body's last chunk are small writes: no Nagle delay.
  if (!ec) sock.set_option(tcp::no_delay(true), ec);
  if (!ec && !be.source_ip.empty()) {
    asio::ip::address src = asio::ip::make_address(be.source_ip, ec);
    if (!ec) sock.bind(tcp::endpoint(src, 0), ec);
  }
  if (ec) {
    log::logf(log::Level::Error, kLog, "{}: Cannot open a connection to {}: {}", sid_, be.dest(), ec.message());
    be.failure = "connect";
    co_return;
  }
  be.conn = std::make_unique<Conn>(std::move(sock));
  be.conn->arm(be.timeout);
  ec = co_await net::connect(be.conn->stream().socket(), be.ep);
  be.conn->disarm();
  if (ec) {
    log::logf(log::Level::Error, kLog, "{}: connect({}) failed: {}", sid_, be.dest(),
              be.conn->timed_out() ? std::string("timed out") : ec.message());
    fail(be, be.conn->timed_out() ? "timed out" : "connect");
    co_return;
  }
  auto handshake = [&]() -> net::Task<bool> {
    SSL_CTX* ctx = be.any_cert ? snap_->backend_anycert_ctx.get() : snap_->backend_verify_ctx.get();
    if (!ctx) {
      fail(be, "connect");
      co_return false;
    }
    be.conn->arm(be.timeout);
    auto hs = co_await be.conn->stream().handshake_client(ctx, be.host, !be.any_cert);
    be.conn->disarm();
    if (!hs.ok) {
      log::logf(log::Level::Error, kLog, "{}: TLS handshake with {} failed: {}", sid_, be.dest(), hs.error);
      fail(be, "connect");
    }
    co_return hs.ok;
  };
  if (be.tls == passdb::BackendTls::Implicit && !co_await handshake()) co_return;
  auto greeting = co_await read_reply(be);
  if (!greeting) co_return;
  if (greeting->code != 220) {
    be.refused = std::move(greeting);
    co_return;
  }
  std::string hello = (be.smtp ? "EHLO " : "LHLO ") + snap_->frontend.hostname;
  auto caps = co_await command(be, hello);
  if (!caps) co_return;
  if (caps->code != 250) {
    fail(be, "bad reply");
    co_return;
  }
  if (be.tls == passdb::BackendTls::StartTls) {
    std::string starttls = "STARTTLS";
    auto r = co_await command(be, starttls);
    if (!r) co_return;
    if (r->code != 220 || !be.conn->in.empty()) {
      fail(be, "bad reply");
      co_return;
    }
    if (!co_await handshake()) co_return;
    caps = co_await command(be, hello);
    if (!caps) co_return;
    if (caps->code != 250) {
      fail(be, "bad reply");
      co_return;
    }
  }
  be.caps = parse_capabilities(*caps);
  if (be.caps.xclient && !be.not_trusted) {
    std::vector<std::pair<std::string, std::string>> attrs = {
        {"ADDR", remote_ip_},
        {"PORT", std::to_string(remote_port_)},
        {"SESSION", sid_ + ":P" + std::to_string(be.n)},
        {"TTL", std::to_string(ttl_ - 1)},
        {"DESTADDR", local_ip_},
        {"DESTPORT", std::to_string(local_port_)},
    };
    // A unix-socket client has no ports (Dovecot refuses PORT=0): left out.
    std::erase_if(attrs, [](const auto& a) {
      return (a.first == "PORT" || a.first == "DESTPORT") && a.second == "0";
    });
    if (!helo_.empty()) attrs.emplace_back("HELO", helo_);
    const std::vector<std::string> xclient = xclient_lines(attrs, be.caps.xclient_attrs);
    for (const std::string& l : xclient) {
      std::string line = l.substr(0, l.size() - 2);
      auto r = co_await command(be, line);
      if (!r) co_return;
      if (r->code / 100 != 2) {
        log::logf(log::Level::Error, kLog, "{}: Backend {} refused XCLIENT: {}", sid_, be.dest(), r->render());
        fail(be, "bad reply");
        co_return;
      }
      // XCLIENT restarts the session: greet again.
      auto again = co_await command(be, hello);
      if (!again) co_return;
      if (again->code != 250) {
        fail(be, "bad reply");
        co_return;
      }
    }
  }
  // With PIPELINING, MAIL goes out together with the first RCPT (one round
  // trip less per backend connection); otherwise now.
  if (be.caps.pipelining) {
    be.mail_pending = true;
    co_return;
  }
  auto mr = co_await command(be, *mail_);
  if (!mr) co_return;
  if (mr->code / 100 != 2) be.refused = std::move(mr);
}

net::Task<std::string> Session::rcpt(const PathArg& p) {
  const std::string& addr = p.path;
  const std::string& delims = cfg_.lmtp.recipient_delimiter;
  auto [user, detail] = split_detail(addr, delims);
  passdb::Request req = passdb::lookup_only_request(user, "lmtp", snap_->passdbs.timeout());
  req.remote_ip = remote_ip_;
  req.remote_port = remote_port_;
  req.local_ip = local_ip_;
  req.local_port = local_port_;
  req.session_id = sid_;
  req.secured = trusted_;
  passdb::Lookup lk = co_await snap_->passdbs.lookup(req);
  if (lk.result == passdb::Result::UnknownUser)
    co_return refuse(addr, DeliveryReason::UnknownUser, "550 5.1.1 <" + addr + "> User doesn't exist",
                     "user doesn't exist");
  if (lk.result == passdb::Result::TempFail) {
    const std::string detail = "passdb lookup failed: " + lk.error;
    co_return refuse(addr, DeliveryReason::PassdbTempfail, "451 4.3.0 <" + addr + "> Temporary user lookup failure",
                     detail);
  }
  const bool smtp_field = lk.reply.get("protocol") == std::optional<std::string_view>("smtp");
  auto pf = passdb::parse_proxy_fields(lk.reply, smtp_field ? 25 : 24, smtp_field ? 25 : 24);
  const std::string internal = "550 5.3.5 <" + addr + "> Internal user lookup failure";
  if (!pf.fields) co_return refuse(addr, DeliveryReason::ConfigError, internal, pf.error);
  passdb::ProxyFields f = std::move(*pf.fields);
  if (f.nologin) {
    std::string why = f.reason.empty() ? "Login disabled" : clean_text(f.reason);
    co_return refuse(addr, DeliveryReason::Disabled, "550 5.3.5 <" + addr + "> " + why);
  }
  std::string protocol(lk.reply.get("protocol").value_or("lmtp"));
  if (!f.proxy) {
    if (cfg_.lmtp.unproxied != "default")
      co_return refuse(addr, DeliveryReason::NotProxied, "550 5.1.1 <" + addr + "> User not served by this proxy",
                       "passdb entry without proxy: refused");
    f.host = cfg_.lmtp.default_host;
    f.hostip.clear();
    f.port = cfg_.lmtp.default_port;
    protocol = cfg_.lmtp.default_protocol;
  }
  if (protocol != "lmtp" && protocol != "smtp") {
    const std::string detail = "invalid protocol field '" + protocol + "'";
    co_return refuse(addr, DeliveryReason::ConfigError, internal, detail);
  }
  if (ttl_ <= 1) {
    const std::string_view looping = "Proxying appears to be looping (TTL=0)";
    co_return refuse(addr, DeliveryReason::Loop, "554 5.4.6 <" + addr + "> " + std::string(looping), looping);
  }
  asio::error_code ec;
  auto ip = asio::ip::make_address(f.hostip.empty() ? f.host : f.hostip, ec);
  if (ec) co_return refuse(addr, DeliveryReason::ConfigError, internal, "host is not an IP address");
  if (ip == local_addr_ && f.port == local_port_) {
    const std::string_view self = "Proxying loops to itself";
    co_return refuse(addr, DeliveryReason::Loop, "554 5.4.6 <" + addr + "> " + std::string(self), self);
  }
  // The recipient the backend sees: destuser (or a user name the passdb
  // changed) with the detail put back; the original goes in ORCPT.
  std::string dest = addr;
  if (auto du = lk.reply.get("destuser"))
    dest = join_detail(*du, delims.empty() ? '+' : delims[0], detail);
  else if (lk.reply.user != user && !lk.reply.user.empty())
    dest = join_detail(lk.reply.user, delims.empty() ? '+' : delims[0], detail);

  tcp::endpoint ep(ip, f.port);
  std::string key = protocol + "|" + net::to_text(ip) + "|" + std::to_string(f.port) + "|" + f.source_ip + "|" +
                    std::to_string(static_cast<int>(f.tls)) + (f.any_cert ? "a" : "");
  Backend* be = nullptr;
  for (auto& b : backends_)
    if (b->key == key) be = b.get();
  if (!be) {
    auto nb = std::make_unique<Backend>();
    nb->key = key;
    nb->host = f.host;
    nb->ep = ep;
    nb->source_ip = f.source_ip;
    nb->tls = f.tls;
    nb->any_cert = f.any_cert;
    nb->smtp = protocol == "smtp";
    nb->not_trusted = f.not_trusted;
    nb->timeout = f.proxy_timeout.value_or(cfg_.lmtp.proxy_timeout);
    nb->n = ++backend_count_;
    be = nb.get();
    backends_.push_back(std::move(nb));
    co_await open(*be);
    const std::string dest = be->dest();
    sink_.emit(events::BackendOpened{dest, be->failure.empty()});
  } else if (f.proxy_timeout && *f.proxy_timeout > be->timeout) {
    be->timeout = *f.proxy_timeout;  // the largest per-recipient timeout
  }
  if (!be->failure.empty()) co_return refuse_failed(addr, *be);
  if (be->refused) co_return refuse(addr, DeliveryReason::Backend, be->refused->render());
  std::string line = "RCPT TO:<" + dest + ">";
  if (!p.params.empty()) line += " " + p.params;
  if (dest != addr && !p.has_orcpt) line += " ORCPT=rfc822;" + xtext_encode(addr);
  if (!f.forward.empty() && be->caps.xrcptforward && !be->not_trusted) {
    std::string fw;
    for (const auto& [k, v] : f.forward) {
      if (!fw.empty()) fw += '\t';
      fw += k + "=" + v;
    }
    line += " XRCPTFORWARD=" + xtext_encode(fw);
  }
  std::optional<Reply> r;
  if (be->mail_pending) {
    // MAIL + RCPT in one write (RFC 2920), then both replies.
    be->mail_pending = false;
    std::string both = *mail_ + "\r\n" + line;
    auto mr = co_await command(*be, both);
    if (mr && mr->code / 100 != 2) {
      be->refused = std::move(mr);
      auto ignored = co_await read_reply(*be);  // the RCPT's reply after a refused MAIL
      (void)ignored;
      co_return refuse(addr, DeliveryReason::Backend, be->refused->render());
    }
    if (mr) r = co_await read_reply(*be);
  } else {
    r = co_await command(*be, line);
  }
  if (!r) co_return refuse_failed(addr, *be);
  if (r->code / 100 != 2) co_return refuse(addr, DeliveryReason::Backend, r->render());
  if (r->enhanced.empty()) r->enhanced = "2.1.5";
  be->rcpts.push_back(rcpts_.size());
  rcpts_.push_back({addr, be, std::nullopt});
  co_return r->render();
}

net::Task<bool> Session::data() {
  const auto start = Clock::now();
  // DATA to every backend with recipients; the ones refusing it (or failing)
  // fail their recipients, the others get the body.
  std::string data_cmd = "DATA";
  for (auto& b : backends_) {
    if (b->rcpts.empty() || !b->usable()) continue;
    auto r = co_await command(*b, data_cmd);
    if (r && r->code != 354) b->refused = std::move(r);
  }
  const std::string go_ahead = "354 2.0.0 OK";
  if (!co_await reply(go_ahead)) co_return false;
  DataScanner scan;
  uint64_t bytes = 0;
  for (bool done = false; !done;) {
    if (client_.in.empty()) {
      Io r = co_await client_.fill(cfg_.login.client_timeout);
      if (r != Io::Ok) {
        // The client went away mid-DATA: nothing was accepted; the
        // backends see the connection close without the final dot.
        log::logf(log::Level::Info, kLog, "{}: Client disconnected in DATA ({})", sid_, failure_text(r));
        co_return false;
      }
    }
    size_t end = scan.feed(client_.in);
    size_t n = end == std::string::npos ? client_.in.size() : end;
    done = end != std::string::npos;
    // The bytes exactly as the client sent them (dot-stuffing untouched),
    // written from the input buffer itself: no copy per chunk.
    const std::string_view chunk(client_.in.data(), n);
    bytes += n;
    for (auto& b : backends_) {
      if (b->rcpts.empty() || !b->usable()) continue;
      Io w = co_await b->conn->write(chunk, b->timeout);
      if (w != Io::Ok) fail(*b, failure_text(w));
    }
    client_.in.erase(0, n);
  }
  // Per-recipient replies: an LMTP backend answers once per recipient, an
  // SMTP backend once for all of them.
  for (auto& b : backends_) {
    if (b->rcpts.empty() || !b->usable()) continue;
    size_t replies = b->smtp ? 1 : b->rcpts.size();
    for (size_t i = 0; i < replies; ++i) {
      auto r = co_await read_reply(*b);
      if (!r) break;
      if (b->smtp) {
        for (size_t k : b->rcpts) rcpts_[k].reply = *r;
      } else {
        rcpts_[b->rcpts[i]].reply = std::move(r);
      }
    }
  }
  std::string out;
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  for (size_t i = 0; i < rcpts_.size(); ++i) {
    Rcpt& rc = rcpts_[i];
    std::string line;
    DeliveryReason why = DeliveryReason::Backend;
    if (rc.reply) {
      // A reply that came before a later failure still counts.
      if (rc.reply->code / 100 == 2) {
        line = "250 " + (rc.reply->enhanced.empty() ? std::string("2.0.0") : rc.reply->enhanced) + " <" + rc.addr +
               "> " + sid_ + " Saved";
      } else {
        line = rc.reply->render();
      }
    } else if (rc.be->refused) {
      line = rc.be->refused->render();
    } else {
      line = proxy_failed(*rc.be);
      why = DeliveryReason::BackendFailure;
    }
    const std::string backend_reply = rc.reply ? rc.reply->render() : line, dest = rc.be->dest();
    const int code = std::atoi(line.substr(0, 3).c_str());
    sink_.emit(events::RcptDone{rc.addr, dest, backend_reply, code, why, i + 1, rcpts_.size(), ms});
    out += line + "\r\n";
  }
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
  sink_.emit(events::MessageDone{bytes, rcpts_.size(), took});
  end_transaction();
  Io w = co_await client_.write(out, cfg_.login.client_timeout);
  co_return w == Io::Ok;
}

void Session::end_transaction() {
  for (auto& b : backends_)
    if (b->conn) b->conn->close();
  backends_.clear();
  rcpts_.clear();
  mail_.reset();
  busy_ = false;
}

net::Task<void> Session::run() {
  registry_.sessions.insert(this);
  asio::error_code ec;
  auto lep = net::local_endpoint(client_.stream().socket(), eps_, ec);
  if (ec) {
    registry_.sessions.erase(this);
    co_return;
  }
  local_addr_ = lep.address();
  local_port_ = lep.port();
  local_ip_ = net::to_text(local_addr_);
  remote_ip_ = net::to_text(eps_.remote.address());
  remote_port_ = eps_.remote.port();
  trusted_ = snap_->is_trusted(eps_.remote.address());
  ttl_ = cfg_.login.proxy_ttl;
  sid_ = login::make_session_id(eps_.remote.address(), remote_port_);
  const std::string& host = snap_->frontend.hostname;
  const std::string greeting = "220 " + host + " portier LMTP ready";
  sink_.emit(events::Connected{remote_ip_});
  std::string reason = "Client has quit the connection";
  unsigned bad = 0;
  if (co_await reply(greeting)) {
    std::string line;
    for (bool quit = false; !quit;) {
      Io r = co_await client_.read_line(line, cfg_.login.max_line_length, cfg_.login.client_timeout);
      if (r == Io::TooLong) {
        const std::string msg = "500 5.5.2 Line too long";
        co_await reply(msg);
        reason = "Line too long";
        break;
      }
      if (r == Io::TimedOut) {
        const std::string msg = "421 4.4.2 " + host + " Disconnected client for inactivity";
        co_await reply(msg);
        reason = "Disconnected for inactivity";
        break;
      }
      if (r != Io::Ok) {
        reason = registry_.shutting_down ? "Process shutting down" : "Client disconnected";
        break;
      }
      Command c = parse_command(line);
      std::string out;
      bool valid = true;
      if (c.verb == "LHLO") {
        if (c.arg.empty() || !core::printable_ascii(c.arg)) {
          out = "501 5.5.4 Invalid domain";
          valid = false;
        } else {
          helo_ = std::string(c.arg);
          have_helo_ = true;
          end_transaction();
          out = lhlo_reply();
        }
      } else if (c.verb == "MAIL") {
        auto p = parse_path(c.arg, "FROM:");
        if (!have_helo_) out = "503 5.5.1 Send LHLO first";
        else if (mail_) out = "503 5.5.1 MAIL already given";
        else if (!p || !no_controls(c.arg)) {
          out = "501 5.5.4 Invalid FROM: parameters";
          valid = false;
        } else {
          mail_ = "MAIL FROM:<" + p->path + ">" + (p->params.empty() ? "" : " " + p->params);
          busy_ = true;
          out = "250 2.1.0 OK";
        }
      } else if (c.verb == "RCPT") {
        auto p = parse_path(c.arg, "TO:");
        if (!mail_) out = "503 5.5.1 MAIL needed first";
        else if (!p || p->path.empty() || !no_controls(c.arg)) {
          out = "501 5.5.4 Invalid TO: parameters";
          valid = false;
        } else if (rcpts_.size() >= cfg_.lmtp.max_recipients) {
          out = refuse(p->path, DeliveryReason::TooManyRecipients, "452 4.5.3 Too many recipients");
        } else {
          out = co_await rcpt(*p);
        }
      } else if (c.verb == "DATA") {
        if (!mail_) out = "503 5.5.1 MAIL needed first";
        else if (rcpts_.empty()) out = "554 5.5.1 No valid recipients";
        else if (!c.arg.empty()) out = "501 5.5.4 DATA takes no parameters";
        else {
          if (!co_await data()) {
            reason = "Connection lost in DATA";
            break;
          }
          continue;
        }
      } else if (c.verb == "RSET") {
        end_transaction();
        out = "250 2.0.0 OK";
      } else if (c.verb == "NOOP") {
        out = "250 2.0.0 OK";
      } else if (c.verb == "VRFY") {
        out = "252 2.3.3 Try RCPT instead";
      } else if (c.verb == "QUIT") {
        out = "221 2.0.0 " + host + " Bye";
        quit = true;
      } else if (c.verb == "XCLIENT") {
        auto attrs = parse_xclient(c.arg);
        if (!trusted_) out = "550 5.7.14 You are not from trusted IP";
        else if (mail_) out = "503 5.5.1 Mail transaction in progress";
        else if (!attrs || !apply_xclient(*attrs)) {
          out = "501 5.5.4 Invalid XCLIENT parameters";
          valid = false;
        } else {
          have_helo_ = false;
          out = greeting;
        }
      } else {
        out = c.verb == "BDAT" ? "502 5.5.1 CHUNKING not offered" : "500 5.5.1 Unknown command";
        valid = false;
      }
      if (!valid && ++bad >= kMaxBadCommands) {
        const std::string msg = "421 4.7.0 " + host + " Too many invalid commands";
        co_await reply(msg);
        reason = "Too many invalid commands";
        break;
      }
      if (!co_await reply(out)) {
        reason = "Connection lost";
        break;
      }
    }
  }
  end_transaction();
  client_.close();
  registry_.sessions.erase(this);
  sink_.emit(events::Disconnected{remote_ip_, reason});
}

void start(login::SiblingConnection c) {
  auto ex = c.socket.get_executor();
  auto s = std::make_shared<Session>(std::move(c));
  asio::co_spawn(ex, [s]() -> net::Task<void> { co_await s->run(); }, asio::detached);
}

}  // namespace

const login::SiblingService kService{"lmtp", 24, &start};

}  // namespace portier::lmtp
