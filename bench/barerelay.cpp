// bench/barerelay.cpp - the ceilings for the relay benchmark: the least a
// TCP relay can do on this machine. One thread, epoll (level-triggered), no
// protocol: every accepted connection is paired with a new connection to
// --to and bytes flow both ways until either side closes.
//
//   barerelay --mode splice|copy|tls --listen PORT --to PORT
//             [--cert FILE --key FILE] [--buf BYTES]
//
//   splice  splice(2) through one pipe per direction (64 KiB default pipe)
//   copy    read/write through a --buf buffer per direction (16 KiB default,
//           portier's relay buffer size)
//   tls     TLS (OpenSSL, server side) on the accepted leg, plaintext to --to,
//           copy through a --buf buffer: the bare userspace-TLS relay
//
// Prints "READY <port>" on stdout when listening. Loopback only; stops on
// SIGTERM/SIGINT.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

enum class Mode { Splice, Copy, Tls };
std::atomic<bool> g_stop{false};
Mode g_mode = Mode::Copy;
size_t g_buf = 16384;
SSL_CTX* g_ctx = nullptr;

struct Pair;

// One direction: src -> dst. `tls_src`/`tls_dst`: that leg is the SSL one.
struct Dir {
  int src = -1, dst = -1;
  bool tls_src = false, tls_dst = false;
  int pipe_r = -1, pipe_w = -1;
  std::vector<char> buf;
  size_t off = 0, len = 0;  // pending bytes in buf (copy/tls) or pipe (splice: len)
  bool eof = false;
};

struct Pair {
  int cfd = -1, bfd = -1;
  SSL* ssl = nullptr;
  bool handshaking = false;
  Dir up, down;  // up: client -> backend, down: backend -> client
  uint32_t cev = 0, bev = 0;
  bool dead = false;
};

int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

class Relay {
 public:
  Relay(int lfd, int to) : lfd_(lfd), to_(to) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    add(lfd_, EPOLLIN);
  }

  void run() {
    epoll_event evs[128];
    while (!g_stop.load(std::memory_order_relaxed)) {
      int n = epoll_wait(ep_, evs, 128, 200);
      for (int i = 0; i < n; ++i) {
        int fd = evs[i].data.fd;
        if (fd == lfd_) {
          accept_one();
          continue;
        }
        auto it = by_fd_.find(fd);
        if (it == by_fd_.end()) continue;
        Pair* p = it->second;
        service(*p, fd, evs[i].events);
        if (p->dead) destroy(p);
      }
    }
  }

 private:
  void add(int fd, uint32_t ev) {
    epoll_event e{};
    e.events = ev;
    e.data.fd = fd;
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &e);
  }
  void mod(int fd, uint32_t& cur, uint32_t ev) {
    if (cur == ev) return;
    cur = ev;
    epoll_event e{};
    e.events = ev;
    e.data.fd = fd;
    epoll_ctl(ep_, EPOLL_CTL_MOD, fd, &e);
  }

  void accept_one() {
    int cfd = accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) return;
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int bfd = connect_to(to_);
    if (bfd < 0) {
      close(cfd);
      return;
    }
    auto* p = new Pair;
    p->cfd = cfd;
    p->bfd = bfd;
    p->up.src = cfd;
    p->up.dst = bfd;
    p->down.src = bfd;
    p->down.dst = cfd;
    for (Dir* d : {&p->up, &p->down}) {
      if (g_mode == Mode::Splice) {
        int fds[2];
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) std::abort();
        d->pipe_r = fds[0];
        d->pipe_w = fds[1];
      } else {
        d->buf.resize(g_buf);
      }
    }
    if (g_mode == Mode::Tls) {
      p->ssl = SSL_new(g_ctx);
      SSL_set_fd(p->ssl, cfd);
      SSL_set_accept_state(p->ssl);
      p->handshaking = true;
      p->up.tls_src = true;
      p->down.tls_dst = true;
    }
    by_fd_[cfd] = p;
    by_fd_[bfd] = p;
    p->cev = EPOLLIN;
    p->bev = EPOLLIN;
    add(cfd, EPOLLIN);
    add(bfd, EPOLLIN);
    service(*p, -1, 0);
    if (p->dead) destroy(p);
  }

  void destroy(Pair* p) {
    by_fd_.erase(p->cfd);
    by_fd_.erase(p->bfd);
    if (p->ssl) {
      if (!p->handshaking) SSL_shutdown(p->ssl);  // best effort close_notify
      SSL_free(p->ssl);
    }
    close(p->cfd);
    close(p->bfd);
    for (Dir* d : {&p->up, &p->down})
      if (d->pipe_r >= 0) {
        close(d->pipe_r);
        close(d->pipe_w);
      }
    delete p;
  }

  // Returns >0 bytes, 0 eof, -1 would block, -2 error.
  ssize_t rd(Pair& p, Dir& d, char* b, size_t n) {
    if (d.tls_src) {
      int r = SSL_read(p.ssl, b, int(n));
      if (r > 0) return r;
      int e = SSL_get_error(p.ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -1;
      if (e == SSL_ERROR_ZERO_RETURN) return 0;
      return e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 ? 0 : -2;
    }
    ssize_t r = ::read(d.src, b, n);
    if (r < 0) return errno == EAGAIN || errno == EINTR ? -1 : -2;
    return r;
  }
  ssize_t wr(Pair& p, Dir& d, const char* b, size_t n) {
    if (d.tls_dst) {
      int r = SSL_write(p.ssl, b, int(n));
      if (r > 0) return r;
      int e = SSL_get_error(p.ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -1;
      return -2;
    }
    ssize_t r = ::send(d.dst, b, n, MSG_NOSIGNAL);
    if (r < 0) return errno == EAGAIN || errno == EINTR ? -1 : -2;
    return r;
  }

  // Move bytes src -> dst until the source would block or dst is full.
  // Returns false on a fatal error or when the source ended.
  bool pump(Pair& p, Dir& d) {
    for (int rounds = 0; rounds < 64; ++rounds) {
      if (d.len > 0) {  // flush pending
        if (g_mode == Mode::Splice) {
          ssize_t m = splice(d.pipe_r, nullptr, d.dst, nullptr, d.len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
          if (m < 0) {
            if (errno == EAGAIN) return true;
            return false;
          }
          d.len -= size_t(m);
        } else {
          ssize_t m = wr(p, d, d.buf.data() + d.off, d.len);
          if (m == -1) return true;
          if (m < 0) return false;
          d.off += size_t(m);
          d.len -= size_t(m);
        }
        if (d.len > 0) continue;
      }
      d.off = 0;
      ssize_t n;
      if (g_mode == Mode::Splice) {
        n = splice(d.src, nullptr, d.pipe_w, nullptr, 1 << 16, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) n = (errno == EAGAIN || errno == EINTR) ? -1 : -2;
      } else {
        n = rd(p, d, d.buf.data(), d.buf.size());
      }
      if (n == -1) return true;
      if (n <= 0) {
        d.eof = true;
        return false;
      }
      d.len = size_t(n);
    }
    return true;
  }

  // Work only the direction(s) this event concerns: readable client = up,
  // readable backend = down, writable = flush the direction waiting on it
  // (fd < 0: both, e.g. right after accept or the handshake).
  void service(Pair& p, int fd, uint32_t ev) {
    if (p.handshaking) {
      int r = SSL_do_handshake(p.ssl);
      if (r != 1) {
        int e = SSL_get_error(p.ssl, r);
        if (e == SSL_ERROR_WANT_READ) return mod(p.cfd, p.cev, EPOLLIN);
        if (e == SSL_ERROR_WANT_WRITE) return mod(p.cfd, p.cev, EPOLLOUT);
        p.dead = true;
        return;
      }
      p.handshaking = false;
      fd = -1;
    }
    const bool all = fd < 0 || (ev & (EPOLLERR | EPOLLHUP));
    bool up = all || (fd == p.cfd && (ev & EPOLLIN)) || (fd == p.bfd && (ev & EPOLLOUT));
    bool down = all || (fd == p.bfd && (ev & EPOLLIN)) || (fd == p.cfd && (ev & EPOLLOUT));
    if ((up && !pump(p, p.up)) || (down && !pump(p, p.down))) {
      p.dead = true;  // either side closed or failed: a benchmark relay just ends the pair
      return;
    }
    // Interest: read a source only while its direction has nothing pending;
    // wait for writability of a destination while it has.
    uint32_t cev = (p.up.len == 0 ? uint32_t(EPOLLIN) : 0u) | (p.down.len > 0 ? uint32_t(EPOLLOUT) : 0u);
    uint32_t bev = (p.down.len == 0 ? uint32_t(EPOLLIN) : 0u) | (p.up.len > 0 ? uint32_t(EPOLLOUT) : 0u);
    mod(p.cfd, p.cev, cev);
    mod(p.bfd, p.bev, bev);
  }

  int lfd_, to_, ep_;
  std::unordered_map<int, Pair*> by_fd_;
};

}  // namespace

int main(int argc, char** argv) {
  int listen_port = 0, to = 0;
  std::string cert, key;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view a = argv[i], v = argv[i + 1];
    if (a == "--mode") g_mode = v == "splice" ? Mode::Splice : v == "tls" ? Mode::Tls : Mode::Copy;
    else if (a == "--listen") listen_port = std::atoi(argv[i + 1]);
    else if (a == "--to") to = std::atoi(argv[i + 1]);
    else if (a == "--cert") cert = argv[i + 1];
    else if (a == "--key") key = argv[i + 1];
    else if (a == "--buf") g_buf = std::strtoul(argv[i + 1], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: barerelay --mode splice|copy|tls --listen P --to P [--cert F --key F] [--buf N]\n");
      return 2;
    }
  }
  if (to <= 0) {
    std::fprintf(stderr, "barerelay: --to required\n");
    return 2;
  }
  if (g_mode == Mode::Tls) {
    g_ctx = SSL_CTX_new(TLS_server_method());
    if (SSL_CTX_use_certificate_chain_file(g_ctx, cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(g_ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
      std::fprintf(stderr, "barerelay: cannot load --cert/--key\n");
      return 1;
    }
    SSL_CTX_set_mode(g_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = [](int) { g_stop = true; };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(listen_port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || listen(fd, 1024) < 0) {
    std::perror("barerelay: bind/listen");
    return 1;
  }
  socklen_t l = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &l);
  std::printf("READY %d\n", ntohs(addr.sin_port));
  std::fflush(stdout);
  Relay(fd, to).run();
  return 0;
}
