#include "admin/ctl.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

namespace portier::admin {

using nlohmann::json;

namespace {

constexpr const char* kDefaultSocket = "/run/portier/admin.sock";
constexpr const char* kCtlUsage =
    "usage: portier ctl [--socket PATH] [-c CONFIG] COMMAND\n"
    "  who|list [--json] [USER-MASK...] [--host HOST] [--ip CIDR]\n"
    "  kick USER-MASK...|--host HOST|--ip CIDR [--delay 10s] [--json]\n"
    "  reload\n"
    "  stats [--json]\n"
    "  cache-flush [USER...]\n";
constexpr size_t kMaxReply = 64 * 1024 * 1024;

int usage(const char* msg) {
  if (msg) std::fprintf(stderr, "portier ctl: %s\n", msg);
  std::fputs(kCtlUsage, stderr);
  return 64;
}

std::string s(const json& o, const char* k) {
  if (!o.is_object() || !o.contains(k) || !o[k].is_string()) return "";
  return o[k].get<std::string>();
}

void print_table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(head.size());
  for (size_t i = 0; i < head.size(); ++i) w[i] = head[i].size();
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); ++i) {
      out += r[i];
      if (i + 1 < r.size()) out += std::string(w[i] - r[i].size() + 2, ' ');
    }
    std::printf("%s\n", out.c_str());
  };
  line(head);
  for (const auto& r : rows) line(r);
}

}  // namespace

bool ctl_request(const std::string& path, const std::string& body, int& status, std::string& reply,
                 std::string& error) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) {
    error = "socket path too long";
    return false;
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return false;
  }
  timeval tv{60, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    error = path + ": " + std::strerror(errno);
    ::close(fd);
    return false;
  }
  std::string req = "POST /doveadm/v1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    "Connection: close\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
  size_t off = 0;
  while (off < req.size()) {
    ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = std::string("write: ") + std::strerror(errno);
      ::close(fd);
      return false;
    }
    off += static_cast<size_t>(n);
  }
  std::string in;
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = std::string("read: ") + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    in.append(buf, static_cast<size_t>(n));
    if (in.size() > kMaxReply) break;
  }
  ::close(fd);
  // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody" (Connection: close: the body runs to EOF)
  auto sp = in.find(' ');
  auto hdr_end = in.find("\r\n\r\n");
  if (in.compare(0, 5, "HTTP/") != 0 || sp == std::string::npos || hdr_end == std::string::npos) {
    error = "not an HTTP reply";
    return false;
  }
  status = std::atoi(in.c_str() + sp + 1);
  reply = in.substr(hdr_end + 4);
  return true;
}

int ctl_main(const std::vector<std::string>& args,
             const std::function<std::string(const std::string&)>& socket_of_config) {
  std::string socket, config, cmd, delay;
  bool as_json = false;
  std::vector<std::string> users, hosts;
  std::string ip;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= args.size()) return false;
      out = args[++i];
      return true;
    };
    if (a == "--socket" || a == "-s") {
      if (!value(socket)) return usage("--socket needs a path");
    } else if (a == "-c" || a == "--config") {
      if (!value(config)) return usage("-c needs a file");
    } else if (a == "--json") {
      as_json = true;
    } else if (a == "--host" || a == "-h") {
      std::string h;
      if (!value(h)) return usage("--host needs a backend host");
      hosts.push_back(h);
    } else if (a == "--ip") {
      if (!value(ip)) return usage("--ip needs an IP or CIDR");
    } else if (a == "--delay") {
      if (!value(delay)) return usage("--delay needs a duration (e.g. 10s)");
    } else if (a == "--help") {
      std::fputs(kCtlUsage, stdout);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      return usage(("unknown option " + a).c_str());
    } else if (cmd.empty()) {
      cmd = a;
    } else {
      users.push_back(a);
    }
  }
  if (cmd.empty()) return usage(nullptr);
  if (socket.empty() && !config.empty()) {
    socket = socket_of_config(config);
    if (socket.empty()) return 64;
  }
  if (socket.empty()) socket = kDefaultSocket;

  json params = json::object();
  if (!users.empty()) params["user"] = users;
  if (!hosts.empty()) params["host"] = hosts;
  if (!ip.empty()) params["ip"] = ip;
  std::string name;
  if (cmd == "who" || cmd == "list") {
    name = "proxyList";
  } else if (cmd == "kick") {
    name = "proxyKick";
    if (params.empty()) return usage("kick needs USER..., --host or --ip");
    if (!delay.empty()) params["delay"] = delay;
  } else if (cmd == "reload") {
    name = "reload";
  } else if (cmd == "stats") {
    name = "stats";
  } else if (cmd == "cache-flush") {
    name = "authCacheFlush";
  } else {
    return usage(("unknown command " + cmd).c_str());
  }
  json body = json::array({json::array({name, params, "ctl"})});
  int status = 0;
  std::string reply, error;
  if (!ctl_request(socket, body.dump(), status, reply, error)) {
    std::fprintf(stderr, "portier ctl: cannot talk to the admin socket: %s\n", error.c_str());
    return 69;
  }
  auto out = json::parse(reply, nullptr, false);
  if (status != 200 || out.is_discarded() || !out.is_array() || out.empty() || !out[0].is_array() ||
      out[0].size() < 2) {
    std::fprintf(stderr, "portier ctl: the server answered %d: %s\n", status, reply.c_str());
    return 1;
  }
  const json& r = out[0];
  if (r[0] == "error") {
    std::string msg = s(r[1], "message");
    std::fprintf(stderr, "portier ctl: %s failed: %s\n", cmd.c_str(), msg.c_str());
    if (r[1].contains("errors") && r[1]["errors"].is_array())
      for (const auto& e : r[1]["errors"])
        if (e.is_string()) std::fprintf(stderr, "  %s\n", e.get<std::string>().c_str());
    int code = r[1].value("exitCode", 1);
    return code > 0 && code < 256 ? code : 1;
  }
  const json& rows = r[1];
  if (as_json) {
    std::printf("%s\n", rows.dump(2).c_str());
    return 0;
  }
  if (name == "proxyList") {
    std::vector<std::vector<std::string>> t;
    for (const auto& row : rows)
      t.push_back({s(row, "username"), s(row, "service"), s(row, "src-ip"), s(row, "src-port"),
                   s(row, "dest-ip"), s(row, "dest-port"), s(row, "state"), s(row, "connected-since"),
                   s(row, "bytes-in"), s(row, "bytes-out")});
    print_table({"username", "service", "src-ip", "src-port", "dest-ip", "dest-port", "state", "since",
                 "in", "out"},
                t);
  } else if (name == "proxyKick") {
    std::printf("%s connections kicked\n", s(rows.empty() ? json() : rows[0], "count").c_str());
  } else if (name == "authCacheFlush") {
    std::printf("%s cache entries flushed\n", s(rows.empty() ? json() : rows[0], "count").c_str());
  } else if (name == "reload") {
    std::printf("Config reloaded\n");
  } else {
    if (!rows.empty() && rows[0].is_object())
      for (const auto& [k, v] : rows[0].items())
        std::printf("%s: %s\n", k.c_str(), v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
  }
  return 0;
}

}  // namespace portier::admin
