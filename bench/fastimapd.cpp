// bench/fastimapd.cpp - a scripted IMAP backend that answers at once, for the
// benchmarks: logins/s without Dovecot's process-per-login cost, thousands of
// cheap idle sessions, and a FETCH that streams a large message from memory.
//
//   fastimapd --port N [--msg-size BYTES] [--threads 1]
//
// Any LOGIN / AUTHENTICATE PLAIN succeeds. Understands literals ({n} and {n+})
// so nginx's literal LOGIN works. Prints "READY <port>" on stdout when
// listening. Loopback only. Stops on SIGTERM/SIGINT.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

std::atomic<bool> g_stop{false};
size_t g_msg_size = 64u << 20;
std::vector<char> g_body;  // 1 MiB of text lines, sent cyclically

constexpr std::string_view kCaps = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN";

struct Client {
  int fd;
  std::string in;
  std::string cmd;        // command being assembled across literals
  size_t literal = 0;     // literal bytes still to read into cmd
  bool sasl_wait = false; // AUTHENTICATE without initial response: next line is it
  std::string sasl_tag;
  std::string out;        // pending small output
  size_t out_off = 0;
  size_t body_left = 0;   // FETCH body bytes still to send
  size_t body_pos = 0;
  std::string after_body; // ")\r\nTAG OK ...\r\n"
  bool close_after = false;
  bool want_out = false;
};

std::string upper(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = char(std::toupper(static_cast<unsigned char>(c)));
  return r;
}

class Server {
 public:
  explicit Server(int lfd) : lfd_(lfd) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = lfd_;
    epoll_ctl(ep_, EPOLL_CTL_ADD, lfd_, &e);
  }

  void run() {
    epoll_event evs[256];
    while (!g_stop.load(std::memory_order_relaxed)) {
      int n = epoll_wait(ep_, evs, 256, 200);
      for (int i = 0; i < n; ++i) {
        int fd = evs[i].data.fd;
        if (fd == lfd_) {
          accept_all();
          continue;
        }
        auto it = clients_.find(fd);
        if (it == clients_.end()) continue;
        Client& c = it->second;
        if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) {
          drop(c);
          continue;
        }
        if (evs[i].events & EPOLLOUT) {
          if (!flush(c)) continue;
        }
        if (evs[i].events & EPOLLIN) on_readable(c);
      }
    }
  }

 private:
  void accept_all() {
    for (int k = 0; k < 64; ++k) {
      int fd = accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      Client& c = clients_[fd];
      c = Client{};
      c.fd = fd;
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.fd = fd;
      epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &e);
      c.out = "* OK [CAPABILITY " + std::string(kCaps) + "] fastimapd ready.\r\n";
      flush(c);
    }
  }

  void drop(Client& c) {
    epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    clients_.erase(c.fd);
  }

  void set_out(Client& c, bool on) {
    if (c.want_out == on) return;
    c.want_out = on;
    epoll_event e{};
    e.events = on ? EPOLLOUT : EPOLLIN;  // while output is pending, stop reading
    e.data.fd = c.fd;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &e);
  }

  // Write what is pending; false when the client was dropped.
  bool flush(Client& c) {
    for (;;) {
      if (c.out_off < c.out.size()) {
        ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EAGAIN) return set_out(c, true), true;
          drop(c);
          return false;
        }
        c.out_off += size_t(n);
        continue;
      }
      c.out.clear();
      c.out_off = 0;
      if (c.body_left > 0) {
        size_t chunk = std::min(c.body_left, g_body.size() - c.body_pos);
        ssize_t n = ::send(c.fd, g_body.data() + c.body_pos, chunk, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EAGAIN) return set_out(c, true), true;
          drop(c);
          return false;
        }
        c.body_left -= size_t(n);
        c.body_pos = (c.body_pos + size_t(n)) % g_body.size();
        if (c.body_left == 0) c.out.swap(c.after_body);
        continue;
      }
      break;
    }
    if (c.close_after) {
      drop(c);
      return false;
    }
    set_out(c, false);
    // Input that arrived while we were writing.
    if (!c.in.empty()) return process(c);
    return true;
  }

  void on_readable(Client& c) {
    char buf[16384];
    for (;;) {
      ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(c);
        return;
      }
      if (n < 0) break;
      c.in.append(buf, size_t(n));
      if (size_t(n) < sizeof buf) break;
    }
    process(c);
  }

  // Consume complete commands from c.in; false when dropped.
  bool process(Client& c) {
    size_t pos = 0;
    while (c.body_left == 0 && !c.close_after) {
      if (c.literal > 0) {
        size_t k = std::min(c.literal, c.in.size() - pos);
        c.cmd.append(c.in, pos, k);
        pos += k;
        c.literal -= k;
        if (c.literal > 0) break;
        continue;
      }
      size_t nl = c.in.find('\n', pos);
      if (nl == std::string::npos) break;
      std::string_view line(c.in.data() + pos, nl - pos);
      pos = nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      // Literal at the end of the line?
      if (!line.empty() && line.back() == '}') {
        size_t b = line.rfind('{');
        if (b != std::string_view::npos) {
          bool nonsync = line[line.size() - 2] == '+';
          c.literal = std::strtoul(std::string(line.substr(b + 1)).c_str(), nullptr, 10);
          c.cmd.append(line);
          c.cmd += "\r\n";
          if (!nonsync) c.out += "+ OK\r\n";
          continue;
        }
      }
      c.cmd.append(line);
      std::string cmd;
      cmd.swap(c.cmd);
      handle(c, cmd);
    }
    c.in.erase(0, pos);
    if (!c.out.empty() || c.body_left > 0 || c.close_after) return flush(c);
    return true;
  }

  void handle(Client& c, std::string_view cmd) {
    if (c.sasl_wait) {
      c.sasl_wait = false;
      c.out += c.sasl_tag + " OK [CAPABILITY IMAP4rev1 ID IDLE LITERAL+] Logged in\r\n";
      return;
    }
    size_t sp = cmd.find(' ');
    std::string tag(cmd.substr(0, sp));
    std::string_view rest = sp == std::string_view::npos ? "" : cmd.substr(sp + 1);
    size_t sp2 = rest.find(' ');
    std::string name = upper(rest.substr(0, sp2));
    std::string_view args = sp2 == std::string_view::npos ? "" : rest.substr(sp2 + 1);
    if (name == "UID") {
      size_t sp3 = args.find(' ');
      name = upper(args.substr(0, sp3));
    }
    if (name == "CAPABILITY") {
      c.out += "* CAPABILITY " + std::string(kCaps) + "\r\n" + tag + " OK Capability completed.\r\n";
    } else if (name == "ID") {
      c.out += "* ID NIL\r\n" + tag + " OK ID completed.\r\n";
    } else if (name == "LOGIN") {
      c.out += tag + " OK [CAPABILITY IMAP4rev1 ID IDLE LITERAL+] Logged in\r\n";
    } else if (name == "AUTHENTICATE") {
      if (args.find(' ') == std::string_view::npos) {
        c.sasl_wait = true;
        c.sasl_tag = tag;
        c.out += "+ \r\n";
      } else {
        c.out += tag + " OK [CAPABILITY IMAP4rev1 ID IDLE LITERAL+] Logged in\r\n";
      }
    } else if (name == "SELECT" || name == "EXAMINE") {
      c.out += "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* 1 EXISTS\r\n* 0 RECENT\r\n"
               "* OK [UIDVALIDITY 1] UIDs valid\r\n* OK [UIDNEXT 2] Predicted next UID\r\n" +
               tag + " OK [READ-WRITE] Select completed.\r\n";
    } else if (name == "FETCH") {
      c.out += "* 1 FETCH (BODY[] {" + std::to_string(g_msg_size) + "}\r\n";
      c.body_left = g_msg_size;
      c.body_pos = 0;
      c.after_body = ")\r\n" + tag + " OK Fetch completed.\r\n";
    } else if (name == "LOGOUT") {
      c.out += "* BYE Logging out\r\n" + tag + " OK Logout completed.\r\n";
      c.close_after = true;
    } else if (name == "NOOP") {
      c.out += tag + " OK NOOP completed.\r\n";
    } else {
      c.out += tag + " BAD Error in IMAP command received by server.\r\n";
    }
  }

  int lfd_;
  int ep_;
  std::unordered_map<int, Client> clients_;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0, threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view a = argv[i];
    if (a == "--port") port = std::atoi(argv[i + 1]);
    else if (a == "--msg-size") g_msg_size = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--threads") threads = std::max(1, std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: fastimapd --port N [--msg-size BYTES] [--threads 1]\n");
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = [](int) { g_stop = true; };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  g_body.resize(1 << 20);
  for (size_t i = 0; i < g_body.size(); ++i)
    g_body[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : char('a' + (i % 26));

  std::vector<int> lfds;
  for (int t = 0; t < threads; ++t) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || listen(fd, 4096) < 0) {
      std::perror("fastimapd: bind/listen");
      return 1;
    }
    if (port == 0) {
      socklen_t l = sizeof addr;
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &l);
      port = ntohs(addr.sin_port);
    }
    lfds.push_back(fd);
  }
  std::printf("READY %d\n", port);
  std::fflush(stdout);
  std::vector<std::thread> th;
  for (int fd : lfds) th.emplace_back([fd] { Server(fd).run(); });
  for (auto& t : th) t.join();
  return 0;
}
