// bench/loadgen.cpp - the IMAP load generator of the benchmarks (epoll, no
// framework, one binary with three modes). Each mode prints one JSON object on
// stdout when it ends; progress and errors go to stderr.
//
//   login  C clients loop connect, [TLS], LOGIN, SELECT INBOX, LOGOUT, wait for
//          the server's close; per-login latency = connect start -> tagged OK
//          of LOGIN. Bounded by --duration and --count.
//   idle   open --sessions logged-in sessions (--concurrency at a time), print
//          "READY <n>" on stdout, hold them until stdin says anything or
//          closes (or --hold seconds pass), then close them all.
//   fetch  --streams sessions each log in, SELECT, then run --fetches times
//          `F FETCH 1 BODY[]`, skipping the literal without copying it;
//          reports bytes / wall time.
//
// Users are --user-prefix + (connection index % --users), password --pass.
// Everything is loopback-only: --host must be 127.x.x.x.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

double now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

double cpu_seconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

struct Options {
  std::string mode;
  std::string host = "127.0.0.1";
  int port = 0;
  bool tls = false;
  std::string user_prefix = "user";
  int users = 1;
  std::string pass = "pw";
  int clients = 1;
  double duration = 5;
  long count = 0;  // 0 = until duration
  int threads = 1;
  bool select = true;
  int sessions = 100;
  int concurrency = 50;
  double hold = 600;
  int fetches = 1;
  int streams = 1;
  int src_ips = 0;  // >0: bind sources round-robin to 127.0.0.2 .. 127.0.0.(1+n)
  double timeout = 10;  // per-connection step timeout
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "loadgen: %s\n"
               "usage: loadgen login|idle|fetch --port N [--host 127.0.0.1] [--tls]\n"
               "  [--user-prefix user] [--users 1] [--pass pw] [--src-ips 0]\n"
               "  login: [--clients 1] [--duration 5] [--count 0] [--threads 1] [--no-select]\n"
               "  idle:  [--sessions 100] [--concurrency 50] [--hold 600]\n"
               "  fetch: [--fetches 1] [--streams 1]\n",
               msg);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  if (argc < 2) usage("missing mode");
  Options o;
  o.mode = argv[1];
  if (o.mode != "login" && o.mode != "idle" && o.mode != "fetch") usage("unknown mode");
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) usage("missing value");
      return argv[++i];
    };
    if (a == "--host") o.host = val();
    else if (a == "--port") o.port = std::atoi(val());
    else if (a == "--tls") o.tls = true;
    else if (a == "--user-prefix") o.user_prefix = val();
    else if (a == "--users") o.users = std::max(1, std::atoi(val()));
    else if (a == "--pass") o.pass = val();
    else if (a == "--clients") o.clients = std::max(1, std::atoi(val()));
    else if (a == "--duration") o.duration = std::atof(val());
    else if (a == "--count") o.count = std::atol(val());
    else if (a == "--threads") o.threads = std::max(1, std::atoi(val()));
    else if (a == "--no-select") o.select = false;
    else if (a == "--sessions") o.sessions = std::max(1, std::atoi(val()));
    else if (a == "--concurrency") o.concurrency = std::max(1, std::atoi(val()));
    else if (a == "--hold") o.hold = std::atof(val());
    else if (a == "--fetches") o.fetches = std::max(1, std::atoi(val()));
    else if (a == "--streams") o.streams = std::max(1, std::atoi(val()));
    else if (a == "--src-ips") o.src_ips = std::max(0, std::atoi(val()));
    else if (a == "--timeout") o.timeout = std::atof(val());
    else usage("unknown option");
  }
  if (o.port <= 0) usage("--port required");
  if (o.host.rfind("127.", 0) != 0) usage("--host must be a loopback address");
  return o;
}

SSL_CTX* make_ctx() {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // No session resumption: every connection pays the full handshake, the same
  // for every proxy.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // A peer that closes without close_notify after LOGOUT is an EOF, not an error.
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  return ctx;
}

enum class St { Connecting, Handshake, Greeting, Login, Select, Logout, WaitEof, Idle, Fetch, Done };

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  St st = St::Done;
  std::string line;      // partial line
  uint64_t skip = 0;     // literal bytes still to skip
  double t0 = 0, deadline = 0;
  int idx = 0;
  uint32_t events = 0;   // current epoll interest
  int fetches_left = 0;
  uint64_t bytes = 0;    // literal bytes received
};

struct Stats {
  long logins = 0;
  long errors = 0;
  long cycles = 0;
  std::vector<float> login_ms;
  std::vector<float> cycle_ms;
  uint64_t bytes = 0;
  std::string first_error;
};

class Worker {
 public:
  Worker(const Options& o, SSL_CTX* ctx, int first_idx) : o_(o), ctx_(ctx), next_idx_(first_idx) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    buf_.resize(256 * 1024);
  }
  ~Worker() { ::close(ep_); }

  Stats stats;

  // Mode login: run `clients` loops until the deadline or count.
  void run_login(int clients, long count, double duration) {
    count_limit_ = count;
    end_ = now() + duration;
    conns_.resize(clients);
    for (auto& c : conns_) start(c);
    loop([&] { return now() < end_ && (count_limit_ == 0 || stats.logins < count_limit_); },
         /*drain=*/2.0);
  }

  // Mode idle: open n sessions, `conc` in flight at a time.
  int open_idle(int n, int conc, double max_secs) {
    conns_.resize(n);
    int started = 0;
    end_ = now() + max_secs;
    auto pump = [&] {
      int inflight = 0, idle = 0;
      for (auto& c : conns_) {
        if (c.st == St::Idle) ++idle;
        else if (c.st != St::Done) ++inflight;
      }
      while (started < n && inflight < conc) {
        start(conns_[started++]);
        ++inflight;
      }
      return idle;
    };
    idle_mode_ = true;
    int idle = 0;
    double t_end = now() + max_secs;
    while (now() < t_end) {
      idle = pump();
      if (idle + stats.errors >= n && started >= n) break;
      if (stats.errors > n / 10 + 10) break;
      poll_once(50);
      check_timeouts();
    }
    return count_state(St::Idle);
  }

  int count_state(St s) const {
    int k = 0;
    for (auto& c : conns_) k += c.st == s;
    return k;
  }

  // Wait while sessions idle; count the ones the server drops.
  void hold_idle(double secs, int stdin_fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = ~uint64_t(0);
    epoll_ctl(ep_, EPOLL_CTL_ADD, stdin_fd, &ev);
    double t_end = now() + secs;
    stop_on_stdin_ = true;
    while (now() < t_end && !stdin_seen_) poll_once(200);
    epoll_ctl(ep_, EPOLL_CTL_DEL, stdin_fd, nullptr);
  }

  void run_fetch(int streams, int fetches, double max_secs) {
    fetches_ = fetches;
    conns_.resize(streams);
    for (auto& c : conns_) start(c);
    end_ = now() + max_secs;
    loop([&] { return now() < end_ && done_ < streams; }, 0);
  }

  double fetch_t0 = 0, fetch_t1 = 0;
  void close_all() {
    for (auto& c : conns_) finish(c);
  }

 private:
  template <class Pred>
  void loop(Pred keep_going, double drain) {
    while (keep_going()) {
      poll_once(20);
      check_timeouts();
    }
    // Let in-flight logins finish (no new ones start once stopping_ is set).
    stopping_ = true;
    double t_end = now() + drain;
    while (now() < t_end) {
      bool any = false;
      for (auto& c : conns_) any |= c.st != St::Done;
      if (!any) break;
      poll_once(20);
      check_timeouts();
    }
    for (auto& c : conns_) finish(c);
  }

  void check_timeouts() {
    double t = now();
    for (auto& c : conns_)
      if (c.st != St::Done && c.st != St::Idle && t > c.deadline) fail(c, "timeout in state " + std::to_string(int(c.st)));
  }

  void poll_once(int ms) {
    epoll_event evs[256];
    int n = epoll_wait(ep_, evs, 256, ms);
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.u64 == ~uint64_t(0)) {
        stdin_seen_ = true;
        continue;
      }
      Conn& c = conns_[evs[i].data.u64];
      on_event(c, evs[i].events);
    }
  }

  // Sockets are registered once, edge-triggered for both directions: no
  // epoll_ctl per state change (the load generator must stay cheap).
  void set_events(Conn&, uint32_t) {}

  void start(Conn& c) {
    if (stopping_) {
      c.st = St::Done;
      return;
    }
    c = Conn{};
    c.idx = next_idx_++;
    c.t0 = now();
    c.deadline = c.t0 + o_.timeout;
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return fail(c, std::string("socket: ") + std::strerror(errno));
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (o_.src_ips > 0) {
      setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      sockaddr_in src{};
      src.sin_family = AF_INET;
      src.sin_addr.s_addr = htonl(0x7f000002u + uint32_t(c.idx % o_.src_ips));
      ::bind(c.fd, reinterpret_cast<sockaddr*>(&src), sizeof src);
    }
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(uint16_t(o_.port));
    inet_pton(AF_INET, o_.host.c_str(), &sa.sin_addr);
    int r = ::connect(c.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    if (r < 0 && errno != EINPROGRESS) return fail(c, std::string("connect: ") + std::strerror(errno));
    c.st = St::Connecting;
    epoll_event e{};
    e.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    e.data.u64 = uint64_t(&c - conns_.data());
    epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &e);
  }

  void finish(Conn& c) {
    if (c.ssl) {
      SSL_free(c.ssl);
      c.ssl = nullptr;
    }
    if (c.fd >= 0) {
      ::close(c.fd);  // also leaves the epoll set
      c.fd = -1;
    }
    c.st = St::Done;
  }

  void fail(Conn& c, const std::string& why) {
    ++stats.errors;
    if (stats.first_error.empty()) stats.first_error = why;
    finish(c);
    after_end(c);
  }

  // A connection ended (ok or not): start the next one in login mode.
  void after_end(Conn& c) {
    if (idle_mode_ || fetches_ > 0) {
      if (fetches_ > 0) ++done_;
      return;
    }
    if (stats.errors > 1000 && stats.errors > stats.logins) {
      stopping_ = true;  // the target is broken: don't spin
      return;
    }
    start(c);
  }

  bool send_str(Conn& c, std::string_view s) {
    size_t off = 0;
    double until = now() + o_.timeout;
    while (off < s.size()) {
      ssize_t n;
      if (c.ssl) {
        int r = SSL_write(c.ssl, s.data() + off, int(s.size() - off));
        if (r > 0) n = r;
        else {
          int e = SSL_get_error(c.ssl, r);
          if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) return false;
          n = -1;
          errno = EAGAIN;
        }
      } else {
        n = ::send(c.fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      }
      if (n > 0) {
        off += size_t(n);
        continue;
      }
      if (errno != EAGAIN && errno != EINTR) return false;
      if (now() > until) return false;
      pollfd p{c.fd, POLLOUT | POLLIN, 0};
      ::poll(&p, 1, 100);
    }
    return true;
  }

  void on_event(Conn& c, uint32_t ev) {
    if (c.st == St::Done) return;
    if (c.st == St::Connecting) {
      if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      int err = 0;
      socklen_t l = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &l);
      if (err) return fail(c, std::string("connect: ") + std::strerror(err));
      if (o_.tls) {
        c.ssl = SSL_new(ctx_);
        SSL_set_fd(c.ssl, c.fd);
        SSL_set_connect_state(c.ssl);
        c.st = St::Handshake;
        return handshake(c);
      }
      c.st = St::Greeting;
      return read_ready(c);  // the greeting may have come with the same edge
    }
    if (c.st == St::Handshake) return handshake(c);
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) read_ready(c);
  }

  void handshake(Conn& c) {
    int r = SSL_do_handshake(c.ssl);
    if (r == 1) {
      c.st = St::Greeting;
      set_events(c, EPOLLIN);
      return read_ready(c);  // the greeting may already be buffered
    }
    int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ) return set_events(c, EPOLLIN);
    if (e == SSL_ERROR_WANT_WRITE) return set_events(c, EPOLLOUT);
    char buf[160];
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    fail(c, std::string("TLS handshake: ") + buf);
  }

  void read_ready(Conn& c) {
    for (;;) {  // edge-triggered: until EAGAIN
      ssize_t n;
      if (c.ssl) {
        int r = SSL_read(c.ssl, buf_.data(), int(buf_.size()));
        if (r > 0) n = r;
        else {
          int e = SSL_get_error(c.ssl, r);
          if (e == SSL_ERROR_WANT_READ) return;
          if (e == SSL_ERROR_WANT_WRITE) return;
          if (e == SSL_ERROR_ZERO_RETURN) n = 0;
          else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) n = 0;
          else if (c.st == St::WaitEof) n = 0;
          else {
            char eb[160];
            ERR_error_string_n(ERR_get_error(), eb, sizeof eb);
            return fail(c, std::string("TLS read error: ") + eb);
          }
        }
      } else {
        n = ::recv(c.fd, buf_.data(), buf_.size(), 0);
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) return;
          if (c.st == St::WaitEof && errno == ECONNRESET) n = 0;
          else return fail(c, std::string("recv: ") + std::strerror(errno));
        }
      }
      if (n == 0) return on_eof(c);
      if (!on_data(c, buf_.data(), size_t(n))) return;
      if (c.st == St::Done) return;
    }
  }

  void on_eof(Conn& c) {
    if (c.st == St::WaitEof || c.st == St::Logout) {
      ++stats.cycles;
      if (!idle_mode_) stats.cycle_ms.push_back(float((now() - c.t0) * 1e3));
      finish(c);
      return after_end(c);
    }
    fail(c, "connection closed by server in state " + std::to_string(int(c.st)));
  }

  // Returns false when the connection was closed.
  bool on_data(Conn& c, const char* p, size_t n) {
    while (n > 0) {
      if (c.skip > 0) {
        size_t k = size_t(std::min<uint64_t>(c.skip, n));
        c.skip -= k;
        c.bytes += k;
        p += k;
        n -= k;
        continue;
      }
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', n));
      if (!nl) {
        c.line.append(p, n);
        if (c.line.size() > 65536) {
          fail(c, "line too long");
          return false;
        }
        return true;
      }
      c.line.append(p, size_t(nl - p));
      n -= size_t(nl - p) + 1;
      p = nl + 1;
      if (!c.line.empty() && c.line.back() == '\r') c.line.pop_back();
      std::string line;
      line.swap(c.line);
      if (!on_line(c, line)) return false;
    }
    return true;
  }

  std::string user_of(const Conn& c) const {
    return o_.user_prefix + std::to_string(c.idx % o_.users);
  }

  static bool tagged_ok(std::string_view line, std::string_view tag) {
    return line.size() > tag.size() + 3 && line.substr(0, tag.size()) == tag &&
           line[tag.size()] == ' ' && line.substr(tag.size() + 1, 2) == "OK";
  }
  static bool tagged(std::string_view line, std::string_view tag) {
    return line.size() > tag.size() && line.substr(0, tag.size()) == tag && line[tag.size()] == ' ';
  }

  bool on_line(Conn& c, std::string_view line) {
    // A literal announced at the end of a line: skip its bytes.
    if (!line.empty() && line.back() == '}') {
      size_t b = line.rfind('{');
      if (b != std::string_view::npos) {
        c.skip = std::strtoull(std::string(line.substr(b + 1)).c_str(), nullptr, 10);
        return true;
      }
    }
    switch (c.st) {
      case St::Greeting:
        if (line.rfind("* OK", 0) != 0) {
          fail(c, "bad greeting: " + std::string(line.substr(0, 80)));
          return false;
        }
        c.st = St::Login;
        c.deadline = now() + o_.timeout;
        return send_or_fail(c, "a LOGIN " + user_of(c) + " " + o_.pass + "\r\n");
      case St::Login:
        if (!tagged(line, "a")) return true;
        if (!tagged_ok(line, "a")) {
          fail(c, "login refused: " + std::string(line.substr(0, 120)));
          return false;
        }
        ++stats.logins;
        if (!idle_mode_) stats.login_ms.push_back(float((now() - c.t0) * 1e3));
        if (idle_mode_) {
          c.st = St::Idle;
          return true;
        }
        if (o_.select || fetches_ > 0) {
          c.st = St::Select;
          return send_or_fail(c, "b SELECT INBOX\r\n");
        }
        c.st = St::Logout;
        return send_or_fail(c, "c LOGOUT\r\n");
      case St::Select:
        if (!tagged(line, "b")) return true;
        if (!tagged_ok(line, "b")) {
          fail(c, "select failed: " + std::string(line.substr(0, 120)));
          return false;
        }
        if (fetches_ > 0) {
          c.st = St::Fetch;
          c.fetches_left = fetches_;
          if (fetch_t0 == 0) fetch_t0 = now();
          c.deadline = now() + 600;
          return send_or_fail(c, "f FETCH 1 BODY[]\r\n");
        }
        c.st = St::Logout;
        return send_or_fail(c, "c LOGOUT\r\n");
      case St::Fetch:
        if (!tagged(line, "f")) return true;
        if (!tagged_ok(line, "f")) {
          fail(c, "fetch failed: " + std::string(line.substr(0, 120)));
          return false;
        }
        stats.bytes += c.bytes;
        c.bytes = 0;
        if (--c.fetches_left > 0) return send_or_fail(c, "f FETCH 1 BODY[]\r\n");
        fetch_t1 = now();
        c.st = St::Logout;
        c.deadline = now() + o_.timeout;
        return send_or_fail(c, "c LOGOUT\r\n");
      case St::Logout:
        if (!tagged(line, "c")) return true;
        c.st = St::WaitEof;
        return true;
      case St::Idle:
        // Unsolicited data while idle is fine (e.g. * OK still here).
        return true;
      default:
        return true;
    }
  }

  bool send_or_fail(Conn& c, const std::string& s) {
    if (!send_str(c, s)) {
      fail(c, std::string("send failed: ") + std::strerror(errno));
      return false;
    }
    return true;
  }

  const Options& o_;
  SSL_CTX* ctx_;
  int ep_;
  int next_idx_;
  std::vector<Conn> conns_;
  std::vector<char> buf_;
  double end_ = 0;
  long count_limit_ = 0;
  bool stopping_ = false;
  bool idle_mode_ = false;
  bool stop_on_stdin_ = false;
  bool stdin_seen_ = false;
  int fetches_ = 0;
  int done_ = 0;
};

double pct(std::vector<float>& v, double p) {
  if (v.empty()) return 0;
  size_t k = size_t(p / 100.0 * double(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + long(k), v.end());
  return v[k];
}

void json_escape(std::string& out, std::string_view s) {
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) continue;
    out += ch;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  SSL_CTX* ctx = o.tls ? make_ctx() : nullptr;
  const double cpu0 = cpu_seconds();
  std::string err;
  std::string out;
  char tmp[512];

  if (o.mode == "login") {
    int nt = std::min(o.threads, o.clients);
    std::vector<std::unique_ptr<Worker>> ws;
    for (int t = 0; t < nt; ++t) ws.push_back(std::make_unique<Worker>(o, ctx, t * 1000003));
    const double t0 = now();
    std::vector<std::thread> th;
    for (int t = 0; t < nt; ++t) {
      int cl = o.clients / nt + (t < o.clients % nt ? 1 : 0);
      long cnt = o.count ? o.count / nt + (t < o.count % nt ? 1 : 0) : 0;
      th.emplace_back([&, t, cl, cnt] { ws[size_t(t)]->run_login(cl, cnt, o.duration); });
    }
    for (auto& x : th) x.join();
    const double secs = now() - t0;
    Stats all;
    for (auto& w : ws) {
      all.logins += w->stats.logins;
      all.errors += w->stats.errors;
      all.cycles += w->stats.cycles;
      all.login_ms.insert(all.login_ms.end(), w->stats.login_ms.begin(), w->stats.login_ms.end());
      all.cycle_ms.insert(all.cycle_ms.end(), w->stats.cycle_ms.begin(), w->stats.cycle_ms.end());
      if (err.empty()) err = w->stats.first_error;
    }
    std::snprintf(tmp, sizeof tmp,
                  "{\"mode\":\"login\",\"clients\":%d,\"logins\":%ld,\"cycles\":%ld,\"errors\":%ld,"
                  "\"secs\":%.4f,\"rate\":%.1f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,"
                  "\"cycle_p50_ms\":%.4f,\"cycle_p99_ms\":%.4f,\"loadgen_cpu_s\":%.4f,",
                  o.clients, all.logins, all.cycles, all.errors, secs, double(all.cycles) / secs,
                  pct(all.login_ms, 50), pct(all.login_ms, 99), pct(all.cycle_ms, 50),
                  pct(all.cycle_ms, 99), cpu_seconds() - cpu0);
    out = tmp;
  } else if (o.mode == "idle") {
    Worker w(o, ctx, 0);
    const double t0 = now();
    int n = w.open_idle(o.sessions, o.concurrency, std::min(o.hold, 300.0));
    const double setup = now() - t0;
    std::printf("READY %d\n", n);
    std::fflush(stdout);
    w.hold_idle(o.hold, 0);
    int still = w.count_state(St::Idle);
    w.close_all();
    err = w.stats.first_error;
    std::snprintf(tmp, sizeof tmp,
                  "{\"mode\":\"idle\",\"sessions\":%d,\"ready\":%d,\"still_idle\":%d,\"errors\":%ld,"
                  "\"setup_secs\":%.3f,\"loadgen_cpu_s\":%.4f,",
                  o.sessions, n, still, w.stats.errors, setup, cpu_seconds() - cpu0);
    out = tmp;
  } else {
    Worker w(o, ctx, 0);
    w.run_fetch(o.streams, o.fetches, 600);
    const double secs = w.fetch_t1 > w.fetch_t0 ? w.fetch_t1 - w.fetch_t0 : 0;
    err = w.stats.first_error;
    std::snprintf(tmp, sizeof tmp,
                  "{\"mode\":\"fetch\",\"streams\":%d,\"fetches\":%d,\"bytes\":%" PRIu64
                  ",\"errors\":%ld,\"secs\":%.4f,\"gbps\":%.4f,\"loadgen_cpu_s\":%.4f,",
                  o.streams, o.fetches, w.stats.bytes, w.stats.errors, secs,
                  secs > 0 ? double(w.stats.bytes) / secs / 1e9 : 0.0, cpu_seconds() - cpu0);
    out = tmp;
  }
  out += "\"tls\":";
  out += o.tls ? "true" : "false";
  out += ",\"first_error\":\"";
  json_escape(out, err);
  out += "\"}\n";
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
  if (ctx) SSL_CTX_free(ctx);
  return 0;
}
