// portier: command line, config loading, signals, privileges.
//   portier -c FILE            run in the foreground, log to stderr
//   portier --check -c FILE    validate the config, print file:line errors
//   SIGTERM/SIGINT: graceful stop; SIGHUP: reload config for new sessions;
//   SIGUSR2: flush the auth cache.
// Tells a service manager (systemd Type=notify) about readiness, reloads,
// stopping, a status line and watchdog pings: app/service_notify.

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "app/registries.hpp"
#include "app/service_notify.hpp"
#include "config/config.hpp"
#include "core/secure.hpp"
#include "log/log.hpp"
#include "login/counters.hpp"
#include "login/runtime.hpp"
#include "passdb/cache.hpp"
#include "passdb/registry.hpp"
#include "login/server.hpp"
#include "protocols/registry.hpp"
#include "tls/context.hpp"

namespace {

constexpr const char* kUsage =
    "usage: portier -c FILE [--check]\n"
    "  -c, --config FILE  configuration file (TOML)\n"
    "      --check        validate the configuration and exit\n"
    "  -V, --version      print the version\n"
    "  -h, --help         this help\n"
    "Signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads the configuration,\n"
    "SIGUSR2 flushes the auth cache.\n"
    "Under systemd (NOTIFY_SOCKET) it reports readiness, reloads, status and watchdog pings.\n"
    "See portier(8) and portier.toml(5).\n";

using portier::log::Level;

/// Load and validate a config, including the parts only the runtime checks
/// (protocol names, certificates, passdb files). Errors go to `errors`.
std::shared_ptr<const portier::login::Snapshot> load(const std::string& path,
                                                     std::vector<std::string>& errors,
                                                     std::vector<const portier::login::Protocol*>& protos) {
  auto res = portier::config::load_file(path, portier::app::registries());
  if (!res.config) {
    for (const auto& e : res.errors) errors.push_back(e.to_string());
    return nullptr;
  }
  protos.clear();
  for (const auto& l : res.config->listeners) {
    const auto* p = portier::protocols::find(l.protocol);
    if (!p) {
      errors.push_back(path + ":" + std::to_string(l.line) + ": protocol '" + l.protocol +
                       "' is not supported by this build");
      continue;
    }
    if (l.tls != portier::config::TlsMode::None && res.config->tls.cert.empty())
      errors.push_back(path + ":" + std::to_string(l.line) + ": listener needs [tls] cert and key");
    protos.push_back(p);
  }
  if (!errors.empty()) return nullptr;
  std::vector<std::string> build_errors;
  auto snap = portier::login::Snapshot::build(*res.config, build_errors);
  for (auto& e : build_errors) errors.push_back(path + ": " + e);
  return snap;
}

void configure_auth_cache(const portier::config::Auth::Cache& c) {
  portier::passdb::CacheSettings s;
  s.size = static_cast<size_t>(c.size);
  s.ttl = c.ttl;
  s.negative_ttl = c.negative_ttl;
  portier::passdb::auth_cache().configure(s);
}

bool drop_privileges(const std::string& user) {
  if (user.empty() || geteuid() != 0) return true;
  struct passwd* pw = getpwnam(user.c_str());
  if (!pw) {
    portier::log::logf(Level::Fatal, "portier", "server.user {} does not exist", user);
    return false;
  }
  if (setgroups(0, nullptr) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
    portier::log::logf(Level::Fatal, "portier", "cannot drop privileges to {}: {}", user,
                       std::strerror(errno));
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "-c" || a == "--config") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a == "--check") {
      check = true;
    } else if (a == "-V" || a == "--version") {
      std::printf("portier %s\n", PORTIER_VERSION);
      return 0;
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "portier: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }

  std::vector<std::string> errors;
  std::vector<const portier::login::Protocol*> protos;
  auto snap = load(config_path, errors, protos);
  if (!snap) {
    for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.c_str());
    return 1;
  }
  if (check) {
    std::printf("%s: OK\n", config_path.c_str());
    return 0;
  }
  Level lvl = Level::Info;
  if (portier::log::parse_level(snap->cfg.log.level, lvl)) portier::log::set_level(lvl);
  {
    const auto& lc = snap->cfg.log;
    portier::log::SinkOptions so;
    so.format = lc.format == "json" ? portier::log::Format::Json : portier::log::Format::Text;
    so.target = lc.target == "syslog" ? portier::log::Target::Syslog : portier::log::Target::Stderr;
    so.syslog_socket = lc.syslog_socket;
    so.syslog_ident = lc.syslog_ident;
    if (auto r = portier::log::configure(so); !r) {
      portier::log::write(Level::Fatal, "portier", r.error().message);
      return 1;
    }
  }

  // Signals are taken synchronously by this thread; workers never see them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  sigaddset(&sigs, SIGUSR2);  // flush the auth cache
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (geteuid() == 0 && snap->cfg.server.user.empty() && !snap->cfg.server.allow_root) {
    portier::log::write(Level::Fatal, "portier",
                        "Refusing to run as root: set server.user to drop privileges after "
                        "binding, or server.allow_root = true");
    return 1;
  }
  configure_auth_cache(snap->cfg.auth.cache);
  portier::login::Server server(snap, protos);
  if (auto r = server.bind(); !r) {
    portier::log::write(Level::Fatal, "portier", r.error().message);
    return 1;
  }
  if (!drop_privileges(snap->cfg.server.user)) return 1;
  if (snap->cfg.tls.ktls)
    portier::log::write(Level::Info, "portier",
                        portier::tls::kernel_has_ktls()
                            ? "kTLS: kernel TLS available, enabled where the cipher allows"
                            : "kTLS: the kernel has no TLS ULP; using userspace TLS");
  if (portier::core::wiping_disabled())
    portier::log::write(Level::Warning, "portier",
                        "PORTIER_TEST_NO_WIPE is set: secrets are NOT wiped from memory "
                        "(a test switch; never set it in production)");
  server.start();
  portier::log::write(Level::Info, "portier", "Ready");
  portier::app::ServiceNotifier notifier;
  notifier.ready(server.connections());
  if (notifier.watchdog_enabled())
    portier::log::logf(Level::Info, "portier", "Service watchdog enabled: pinging every {} ms",
                       notifier.tick_interval().count());

  bool stalled = false;
  for (;;) {
    // Wait for a signal, waking up for the status line and watchdog pings.
    const auto wait = notifier.tick_interval();
    timespec ts{static_cast<time_t>(wait.count() / 1000), static_cast<long>(wait.count() % 1000) * 1000000L};
    int sig = sigtimedwait(&sigs, nullptr, &ts);
    if (sig < 0) {
      if (errno == EAGAIN) {
        bool alive = server.heartbeat();
        if (alive == stalled)
          portier::log::write(alive ? Level::Info : Level::Error, "portier",
                              alive ? "Worker event loops turning again: watchdog pings resumed"
                                    : "A worker's event loop is stalled: watchdog pings withheld");
        stalled = !alive;
        notifier.tick(server.connections(), alive);
      }
      continue;
    }
    if (sig == SIGHUP) {
      notifier.reloading();
      std::vector<std::string> rerrors;
      std::vector<const portier::login::Protocol*> rprotos;
      auto fresh = load(config_path, rerrors, rprotos);
      if (!fresh) {
        portier::log::write(Level::Error, "portier",
                            "Config reload failed, keeping the old config:");
        for (const auto& e : rerrors) portier::log::write(Level::Error, "portier", e);
        portier::login::Counters::reloaded(false);  // metrics: portier_config_reloads_total
        notifier.reloaded(server.connections(), false);
        continue;
      }
      // Listeners are bound once at start; a reload changes everything else.
      configure_auth_cache(fresh->cfg.auth.cache);
      server.reload(fresh);
      portier::log::write(Level::Info, "portier", "Config reloaded");
      notifier.reloaded(server.connections(), true);
      continue;
    }
    if (sig == SIGUSR2) {
      const size_t n = portier::passdb::auth_cache_flush({});
      portier::log::logf(Level::Info, "portier", "Auth cache flushed: {} entries removed", n);
      continue;
    }
    notifier.stopping();
    portier::log::write(Level::Info, "portier", "Shutting down");
    server.shutdown();
    portier::log::write(Level::Info, "portier", "Stopped");
    return 0;
  }
}
