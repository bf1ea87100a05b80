#pragma once
// Drives one protocol Frontend with arbitrary client bytes, playing the
// engine's part for every event; the engine's decisions themselves (auth
// verdict, backend parameters) are the engine's code (login/auth_flow).
//
// Input layout:
//   byte 0  ClientInfo / chunking:
//           bit0 tls active, bit1 tls_configured, bit2 trusted network,
//           bit3 allow_cleartext, bit4 local connection (remote == local IP),
//           bits5-7 how client bytes are cut into feed() calls:
//           0 all at once, 1..6 chunks of 1,2,3,7,64,512 bytes, 7 one line each
//   byte 1  engine decisions:
//           bits0-2 first authentication outcome (then +1 per attempt):
//             0 Failed, 1 TempFail, 2 Disabled(reason), 3 CleartextDenied,
//             4 Limit, 5 backend login + proxy_failed(type cycles),
//             6 backend login succeeds (relay starts: the target ends),
//             7 backend login + proxy_failed with the machine's own failure
//           bit6 at end of input: timed_out() instead of goodbye()
//           bit7 small limits (line 64, literal 100, 2 invalid commands)
//   rest    client bytes
// Invariants: output() is CRLF-clean text ending in CRLF (literal bodies
// excepted where the protocol has literals); the Frontend never
// asks for STARTTLS when TLS is active; it never loops without consuming
// input; the backend machine's output is CRLF-clean (no injection through
// user names or passwords).

#include <asio/ip/address.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "login/auth_flow.hpp"
#include "login/protocol.hpp"
#include "passdb/reply.hpp"

namespace portier::fuzz {

struct FrontendTarget {
  const login::Protocol* proto = nullptr;
  bool literals = false;  // the protocol has literals (a literal tag echoed, commands to the backend)
  std::vector<std::string_view> backend_script;  // canned backend lines (happy path)
  std::string_view auth_reply;                   // canned client reply for AuthReplied & co
};

inline void check_client_output(const FrontendTarget& t, std::string& out, const char* when) {
  std::string why;
  if (!wire_clean(out, t.literals, &why)) fail(when, why + ": " + out);
  out.clear();
}

/// Runs a BackendLogin for the client's credentials against a canned backend
/// dialogue; returns the last event.
/// (Password leaks are checked by the backend targets, whose passwords are
/// fixed; here the client picks them and any text could match.)
inline login::BackendEvent drive_canned_backend(const FrontendTarget& t, login::BackendLogin& bl) {
  login::BackendEvent ev = login::BackendEvent::Continue;
  auto check = [&] {
    std::string why;
    if (!wire_clean(bl.output(), t.literals, &why))
      fail("backend output not CRLF-clean (command injection?)", why + ": " + bl.output());
    bl.wipe_output();
  };
  for (std::string_view line : t.backend_script) {
    ev = bl.on_line(line);
    check();
    for (int i = 0; ev == login::BackendEvent::StartTls && i < 4; ++i) {
      ev = bl.on_tls_ready();
      check();
    }
    if (ev == login::BackendEvent::Success || ev == login::BackendEvent::Failure) break;
  }
  return ev;
}

inline int run_frontend(const FrontendTarget& t, const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t f = data[0], g = data[1];
  const std::string_view in = as_text(data + 2, size - 2);

  login::FrontendSettings s;
  s.hostname = "proxy.example.org";
  s.greeting = "Dovecot (Debian) ready.";
  s.allow_cleartext = f & 0x08;
  s.mechanisms = {"PLAIN", "LOGIN"};
  if (g & 0x80) {
    s.max_line_length = 64;
    s.max_literal_size = 100;
    s.max_invalid_commands = 2;
  }
  login::ClientInfo ci;
  ci.remote_ip = asio::ip::make_address_v4("192.0.2.7");
  ci.remote_port = 53640;
  ci.local_ip = asio::ip::make_address_v4((f & 0x10) ? "192.0.2.7" : "192.0.2.1");
  ci.local_port = t.proto->default_port;
  ci.tls = f & 0x01;
  ci.tls_configured = f & 0x02;
  ci.trusted = f & 0x04;
  ci.end_client_tls = ci.tls;
  ci.session_id = "y7/P7lthiNF/AAAB";

  static constexpr size_t kChunk[8] = {0, 1, 2, 3, 7, 64, 512, 0};
  const unsigned mode = f >> 5;

  auto fe = t.proto->make_frontend(s, ci);
  fe->start();
  check_client_output(t, fe->output(), "greeting not CRLF-clean");

  size_t pos = 0;
  unsigned attempts = 0;
  size_t events = 0;
  const size_t max_events = 2 * in.size() + 64;
  for (;;) {
    login::FrontendEvent ev = fe->next();
    check_client_output(t, fe->output(), "client output not CRLF-clean");
    FUZZ_CHECK(++events <= max_events, "Frontend loops without consuming input",
               std::to_string(events));
    switch (ev) {
      case login::FrontendEvent::NeedInput: {
        if (pos >= in.size()) {
          if (g & 0x40)
            fe->timed_out();
          else
            fe->goodbye("Server shutting down.");
          check_client_output(t, fe->output(), "goodbye not CRLF-clean");
          return 0;
        }
        size_t n;
        if (mode == 0) {
          n = in.size() - pos;
        } else if (mode == 7) {
          size_t nl = in.find('\n', pos);
          n = (nl == std::string_view::npos ? in.size() : nl + 1) - pos;
        } else {
          n = std::min(kChunk[mode], in.size() - pos);
        }
        fe->feed(in.substr(pos, n));
        pos += n;
        break;
      }
      case login::FrontendEvent::StartTls:
        FUZZ_CHECK(!ci.tls, "StartTls requested while TLS is active", "");
        ci.tls = true;
        ci.end_client_tls = true;
        fe->tls_started();
        check_client_output(t, fe->output(), "output after tls_started not CRLF-clean");
        break;
      case login::FrontendEvent::Close:
        return 0;
      case login::FrontendEvent::Authenticate: {
        sasl::Credentials creds = fe->take_credentials();
        unsigned outcome = (g + attempts) & 7;
        ++attempts;
        if (outcome == 3 || outcome == 4) {  // decided by the frontend / the governor
          fe->auth_failed(outcome == 3 ? login::AuthFailure::CleartextDenied
                                       : login::AuthFailure::Limit,
                          "");
          break;
        }
        // The engine's own decisions (login/auth_flow): a passdb answer, its
        // verdict, and the backend parameters built from it.
        passdb::Lookup l;
        l.reply.user = creds.authcid;
        l.result = outcome == 0   ? passdb::Result::Mismatch
                   : outcome == 1 ? passdb::Result::TempFail
                                  : passdb::Result::Ok;
        if (outcome == 2)
          l.reply.fields = {{"nologin", ""}, {"reason", "Account is disabled."}};
        else
          l.reply.fields = passdb::parse_extra_fields("proxy host=192.0.2.9 forward_client_id=fuzz");
        login::AuthVerdict v = login::judge(l, *t.proto);
        if (!v.proxy) {
          FUZZ_CHECK(outcome <= 2, "a proxy entry was refused", v.log_error);
          fe->auth_failed(v.reply, v.reason);
          break;
        }
        login::BackendLoginParams p = login::backend_params(v.fields, creds, s.hostname, ci);
        auto bl = fe->make_backend_login(p);
        FUZZ_CHECK(bl != nullptr, "make_backend_login returned null", "");
        login::BackendEvent bev = drive_canned_backend(t, *bl);
        if (outcome == 6 && bev == login::BackendEvent::Success) {
          FUZZ_CHECK(wire_clean(bl->client_reply(), false), "client_reply not CRLF-clean",
                     bl->client_reply());
          (void)fe->take_pending_input();
          return 0;  // relaying from here on: the Frontend is done
        }
        login::ProxyFailure pf;
        if (outcome == 7 && bev == login::BackendEvent::Failure) {
          pf = bl->failure();
        } else {
          pf.type = static_cast<login::FailureType>(
              attempts % static_cast<unsigned>(login::FailureType::kCount));
          pf.reason = "fuzz";
          if (pf.type == login::FailureType::AuthReplied ||
              pf.type == login::FailureType::AuthTempfail ||
              pf.type == login::FailureType::LimitReached)
            pf.client_reply = std::string(t.auth_reply);
        }
        fe->proxy_failed(pf);
        break;
      }
    }
  }
}

}  // namespace portier::fuzz
