// Micro-benchmarks of the sans-I/O login path, per protocol (Google Benchmark):
//   BM_FrontendLogin/<proto>    new Frontend, greeting, feed the client's login
//                               bytes, next() until Authenticate, take credentials
//   BM_FrontendCommand/<proto>  one pre-login command (CAPABILITY-like) parsed and
//                               answered on a long-lived Frontend
//   BM_BackendLogin/<proto>     one BackendLogin machine from banner to Success,
//                               fed the lines a Dovecot 2.3 backend sends
//   BM_StateRender/<kind>       proxy state rendering for log lines
// The scripts are checked before timing: a protocol whose script does not reach
// the expected event reports an error instead of a number.
#include <benchmark/benchmark.h>

#include <string>
#include <string_view>
#include <vector>

#include "login/protocol.hpp"
#include "protocols/imap/state.hpp"
#include "protocols/registry.hpp"

using namespace portier;

namespace {

struct Script {
  std::string_view proto;
  std::string login;    // client bytes up to and including the login command
  std::string command;  // one cheap pre-login command
  std::vector<std::string> backend;  // backend lines, banner first, last one = success
};

const std::vector<std::string> kEhlo = {
    "250-backend.lab", "250-8BITMIME", "250-AUTH PLAIN LOGIN", "250-BURL imap", "250-CHUNKING",
    "250-ENHANCEDSTATUSCODES", "250-SIZE", "250-STARTTLS", "250-PIPELINING",
    "250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION TTL TIMEOUT FORWARD"};

std::vector<std::string> cat(std::initializer_list<std::vector<std::string>> parts) {
  std::vector<std::string> out;
  for (auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

const std::vector<Script>& scripts() {
  static const std::vector<Script> s = {
      {"imap", "a LOGIN user1 pass1\r\n", "c CAPABILITY\r\n",
       {"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
        "AUTH=PLAIN AUTH=LOGIN] Dovecot (Debian) ready.",
        "* ID (\"name\" \"Dovecot\")", "I OK ID completed.",
        "L OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT LITERAL+] Logged in"}},
      {"pop3", "USER user1\r\nPASS pass1\r\n", "CAPA\r\n",
       {"+OK [XCLIENT] Dovecot (Debian) ready.", "+OK Updated", "+OK", "+OK Logged in."}},
      {"submission", "EHLO client.lab\r\nAUTH PLAIN AHVzZXIxAHBhc3Mx\r\n", "NOOP\r\n",
       cat({{"220 backend.lab Dovecot (Debian) ready."}, kEhlo,
            {"220 backend.lab Dovecot (Debian) ready."}, kEhlo, {"235 2.7.0 Logged in."}})},
      {"managesieve", "AUTHENTICATE \"PLAIN\" \"AHVzZXIxAHBhc3Mx\"\r\n", "CAPABILITY\r\n",
       {R"("IMPLEMENTATION" "Dovecot (Debian) Pigeonhole")", R"("SIEVE" "fileinto reject envelope")",
        R"("NOTIFY" "mailto")", R"("SASL" "PLAIN LOGIN")", R"("STARTTLS")", R"("VERSION" "1.0")",
        R"("XCLIENT")", R"(OK "Dovecot (Debian) ready.")", R"(OK "Updated")",
        R"(OK "Logged in.")"}},
  };
  return s;
}

login::FrontendSettings settings() {
  login::FrontendSettings s;
  s.hostname = "proxy.test";
  s.greeting = "portier ready.";
  s.allow_cleartext = true;
  s.mechanisms = {"PLAIN", "LOGIN"};
  return s;
}

login::ClientInfo client_info() {
  login::ClientInfo c;
  c.remote_ip = asio::ip::make_address("127.0.0.2");
  c.remote_port = 50000;
  c.local_ip = asio::ip::make_address("127.0.0.1");
  c.local_port = 143;
  c.trusted = true;
  c.session_id = "y7/P7lthiNF/AAAB";
  return c;
}

// Runs a Frontend up to Authenticate; false on any other outcome.
bool to_authenticate(login::Frontend& fe, std::string_view bytes) {
  fe.start();
  fe.output().clear();
  fe.feed(bytes);
  for (int i = 0; i < 8; ++i) {
    auto ev = fe.next();
    fe.output().clear();
    if (ev == login::FrontendEvent::Authenticate) return true;
    if (ev != login::FrontendEvent::NeedInput) return false;
  }
  return false;
}

const Script& script(int i) { return scripts()[static_cast<size_t>(i)]; }

void BM_FrontendLogin(benchmark::State& st) {
  const Script& sc = script(static_cast<int>(st.range(0)));
  st.SetLabel(std::string(sc.proto));
  const login::Protocol* proto = protocols::find(sc.proto);
  auto set = settings();
  auto ci = client_info();
  {
    auto fe = proto->make_frontend(set, ci);
    if (!to_authenticate(*fe, sc.login)) return st.SkipWithError("script does not reach Authenticate");
  }
  for (auto _ : st) {
    auto fe = proto->make_frontend(set, ci);
    bool ok = to_authenticate(*fe, sc.login);
    auto cred = fe->take_credentials();
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(cred);
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(sc.login.size()));
}

void BM_FrontendCommand(benchmark::State& st) {
  const Script& sc = script(static_cast<int>(st.range(0)));
  st.SetLabel(std::string(sc.proto));
  const login::Protocol* proto = protocols::find(sc.proto);
  auto set = settings();
  set.max_invalid_commands = 1u << 30;
  auto ci = client_info();
  auto fe = proto->make_frontend(set, ci);
  fe->start();
  fe->output().clear();
  if (sc.proto == "submission") {  // SMTP wants EHLO first
    fe->feed("EHLO client.lab\r\n");
    fe->next();
    fe->output().clear();
  }
  fe->feed(sc.command);
  if (fe->next() != login::FrontendEvent::NeedInput || fe->output().empty())
    return st.SkipWithError("command not answered");
  fe->output().clear();
  for (auto _ : st) {
    fe->feed(sc.command);
    auto ev = fe->next();
    benchmark::DoNotOptimize(ev);
    fe->output().clear();
  }
}

void BM_BackendLogin(benchmark::State& st) {
  const Script& sc = script(static_cast<int>(st.range(0)));
  st.SetLabel(std::string(sc.proto));
  const login::Protocol* proto = protocols::find(sc.proto);
  auto set = settings();
  auto ci = client_info();
  auto fe = proto->make_frontend(set, ci);
  if (!to_authenticate(*fe, sc.login)) return st.SkipWithError("frontend script failed");
  auto cred = fe->take_credentials();
  login::BackendLoginParams p;
  p.user = "user1";
  p.password = "pass1";
  p.hostname = "proxy.test";
  p.client = &ci;
  auto run = [&](std::string* why) {
    auto bl = fe->make_backend_login(p);
    login::BackendEvent ev = login::BackendEvent::Continue;
    for (const auto& line : sc.backend) {
      ev = bl->on_line(line);
      bl->output().clear();
      if (ev != login::BackendEvent::Continue) break;
    }
    if (why && ev != login::BackendEvent::Success)
      *why = "state " + bl->state() + ": " + bl->failure().reason;
    return ev == login::BackendEvent::Success;
  };
  std::string why;
  if (!run(&why)) return st.SkipWithError(("backend script does not succeed: " + why).c_str());
  for (auto _ : st) benchmark::DoNotOptimize(run(nullptr));
}

void BM_StateRenderImap(benchmark::State& st) {
  protocols::imap::ProxyState s;
  using S = protocols::imap::ProxyStateTraits::Sent;
  using R = protocols::imap::ProxyStateTraits::Received;
  s.set_sent(S::Id);
  s.set_sent(S::Capability);
  s.set_sent(S::Login);
  s.set_received(R::Banner);
  for (auto _ : st) {
    std::string r = s.render();  // "id+capability+login/banner"
    benchmark::DoNotOptimize(r);
  }
}

// BackendLogin::state() of each protocol after its banner (what a timeout logs).
void BM_StateRender(benchmark::State& st) {
  const Script& sc = script(static_cast<int>(st.range(0)));
  st.SetLabel(std::string(sc.proto));
  const login::Protocol* proto = protocols::find(sc.proto);
  auto set = settings();
  auto ci = client_info();
  auto fe = proto->make_frontend(set, ci);
  if (!to_authenticate(*fe, sc.login)) return st.SkipWithError("frontend script failed");
  login::BackendLoginParams p;
  p.user = "user1";
  p.password = "pass1";
  p.hostname = "proxy.test";
  p.client = &ci;
  auto bl = fe->make_backend_login(p);
  bl->on_line(sc.backend.front());
  for (auto _ : st) {
    std::string r = bl->state();
    benchmark::DoNotOptimize(r);
  }
}

void protos(benchmark::internal::Benchmark* b) {
  for (int i = 0; i < static_cast<int>(scripts().size()); ++i) b->Arg(i);
}

}  // namespace

BENCHMARK(BM_FrontendLogin)->Apply(protos);
BENCHMARK(BM_FrontendCommand)->Apply(protos);
BENCHMARK(BM_BackendLogin)->Apply(protos);
BENCHMARK(BM_StateRenderImap);
BENCHMARK(BM_StateRender)->Apply(protos);
BENCHMARK_MAIN();
