// portier: command line, config loading, signals, privileges.
//   portier -c FILE            run in the foreground, log to stderr
//   portier --check -c FILE    validate the config, print file:line errors
//   portier ctl ...            the admin socket's client (admin/ctl.hpp)
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
#include <mutex>
#include <string>
#include <vector>

#include "admin/ctl.hpp"
#include "admin/server.hpp"
#include "app/registries.hpp"
#include "app/service_notify.hpp"
#include "config/config.hpp"
#include "core/secure.hpp"
#include "doveadm/service.hpp"
#include "log/log.hpp"
#include "login/counters.hpp"
#include "login/runtime.hpp"
#include "passdb/cache.hpp"
#include "passdb/registry.hpp"
#include "login/server.hpp"
#include "metrics/prometheus.hpp"
#include "protocols/registry.hpp"
#include "tls/context.hpp"

namespace {

constexpr const char* kUsage =
    "usage: portier -c FILE [--check]\n"
    "       portier ctl [--socket PATH] [-c FILE] who|kick|reload|stats|cache-flush ...\n"
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
                                                     std::vector<const portier::login::Protocol*>& protos,
                                                     std::vector<const portier::login::SiblingService*>* sibs = nullptr) {
  auto res = portier::config::load_file(path, portier::app::registries());
  if (!res.config) {
    for (const auto& e : res.errors) errors.push_back(e.to_string());
    return nullptr;
  }
  protos.clear();
  if (sibs) sibs->clear();
  for (const auto& l : res.config->listeners) {
    const auto* p = portier::protocols::find(l.protocol);
    // A non-login service (LMTP): its own session instead of a login.
    if (const auto* sib = p ? nullptr : portier::app::find_sibling(l.protocol)) {
      if (l.tls != portier::config::TlsMode::None || l.haproxy)
        errors.push_back(path + ":" + std::to_string(l.line) + ": listener protocol '" + l.protocol +
                         "' supports neither tls nor haproxy");
      protos.push_back(nullptr);
      if (sibs) sibs->push_back(sib);
      continue;
    }
    if (!p) {
      errors.push_back(path + ":" + std::to_string(l.line) + ": protocol '" + l.protocol +
                       "' is not supported by this build");
      continue;
    }
    if (!l.path.empty())  // logins need the client's address (limits, penalties, logs)
      errors.push_back(path + ":" + std::to_string(l.line) + ": listener protocol '" + l.protocol +
                       "' cannot listen on a unix socket (path)");
    if (l.tls != portier::config::TlsMode::None && res.config->tls.cert.empty())
      errors.push_back(path + ":" + std::to_string(l.line) + ": listener needs [tls] cert and key");
    protos.push_back(p);
    if (sibs) sibs->push_back(nullptr);
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

/// The notifier is used by the main thread and by a reload from the admin thread.
std::mutex notify_mutex;

/// SIGHUP and the admin API's reload: load, validate, swap the snapshot.
/// Serialised: the admin thread and the main thread may both ask.
portier::admin::ReloadResult reload_config(const std::string& path, portier::login::Server& server,
                                           portier::app::ServiceNotifier& notifier,
                                           portier::doveadm::Service* doveadm) {
  static std::mutex m;
  std::lock_guard lock(m);
  std::lock_guard nlock(notify_mutex);
  notifier.reloading();
  portier::admin::ReloadResult res;
  std::vector<const portier::login::Protocol*> rprotos;
  auto fresh = load(path, res.errors, rprotos);
  if (!fresh) {
    portier::log::write(Level::Error, "portier", "Config reload failed, keeping the old config:");
    for (const auto& e : res.errors) portier::log::write(Level::Error, "portier", e);
    portier::login::Counters::reloaded(false);  // metrics: portier_config_reloads_total
    notifier.reloaded(server.connections(), false);
    return res;
  }
  // Listeners (and the admin listener) are bound once at start; a reload
  // changes everything else.
  configure_auth_cache(fresh->cfg.auth.cache);
  server.reload(fresh);
  if (doveadm) doveadm->reload(fresh);
  portier::log::write(Level::Info, "portier", "Config reloaded");
  notifier.reloaded(server.connections(), true);
  res.ok = true;
  return res;
}

/// `portier ctl -c FILE`: the config's [admin] socket.
std::string socket_of_config(const std::string& path) {
  auto res = portier::config::load_file(path, portier::app::registries());
  if (!res.config) {
    for (const auto& e : res.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return "";
  }
  if (res.config->admin.socket.empty())
    std::fprintf(stderr, "portier ctl: %s has no [admin] socket\n", path.c_str());
  return res.config->admin.socket;
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
  if (argc > 1 && std::string_view(argv[1]) == "ctl")
    return portier::admin::ctl_main(std::vector<std::string>(argv + 2, argv + argc), socket_of_config);
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
  std::vector<const portier::login::SiblingService*> sibs;
  auto snap = load(config_path, errors, protos, &sibs);
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
  // Declared before the server: destroyed after it (worker callbacks of
  // admin requests may be the last to let go of the admin's handlers).
  std::unique_ptr<portier::admin::AdminServer> admin;
  portier::app::ServiceNotifier notifier;
  portier::login::Server server(snap, protos, sibs);
  if (auto r = server.bind(); !r) {
    portier::log::write(Level::Fatal, "portier", r.error().message);
    return 1;
  }
  std::unique_ptr<portier::doveadm::Service> doveadm;  // the doveadm proxy, when [doveadm] listen is set
  if (portier::doveadm::Service::configured(snap->cfg)) {
    doveadm = std::make_unique<portier::doveadm::Service>(snap);
    if (auto r = doveadm->bind(); !r) {
      portier::log::write(Level::Fatal, "portier", r.error().message);
      return 1;
    }
  }
  if (!snap->cfg.admin.listen.empty() || !snap->cfg.admin.socket.empty()) {
    portier::admin::Engine engine;
    engine.list = [&server](auto done) { server.list(std::move(done)); };
    engine.kick = [&server](auto match, auto delay, auto done) {
      server.kick(std::move(match), delay, std::move(done));
    };
    portier::admin::Hooks hooks;
    hooks.metrics = [] { return portier::metrics::render(); };
    if (snap->cfg.auth.cache.size > 0)  // bound at start, like the listener
      hooks.cache_flush = [](const std::vector<std::string>& users) {
        return portier::passdb::auth_cache_flush(users);
      };
    if (doveadm)  // per-user doveadm HTTP API commands go to the user's backend
      hooks.forward = [&doveadm](nlohmann::json cmd, std::function<void(nlohmann::json)> done) {
        doveadm->http_command(std::move(cmd), std::move(done));
      };
    hooks.reload = [&config_path, &server, &notifier, &doveadm] {
      return reload_config(config_path, server, notifier, doveadm.get());
    };
    admin = std::make_unique<portier::admin::AdminServer>(snap->cfg.admin, std::move(engine),
                                                          std::move(hooks));
    if (auto r = admin->bind(); !r) {
      portier::log::write(Level::Fatal, "portier", r.error().message);
      return 1;
    }
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
  if (doveadm) doveadm->start();
  portier::log::write(Level::Info, "portier", "Ready");
  notifier.ready(server.connections());
  if (admin) admin->start();  // after ready(): its reloads may use the notifier
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
        std::lock_guard nlock(notify_mutex);
        notifier.tick(server.connections(), alive);
      }
      continue;
    }
    if (sig == SIGHUP) {
      reload_config(config_path, server, notifier, doveadm.get());
      continue;
    }
    if (sig == SIGUSR2) {
      const size_t n = portier::passdb::auth_cache_flush({});
      portier::log::logf(Level::Info, "portier", "Auth cache flushed: {} entries removed", n);
      continue;
    }
    if (admin) admin->stop();  // while the workers still answer its requests
    notifier.stopping();
    portier::log::write(Level::Info, "portier", "Shutting down");
    server.shutdown();
    if (doveadm) doveadm->shutdown();
    portier::log::write(Level::Info, "portier", "Stopped");
    return 0;
  }
}
