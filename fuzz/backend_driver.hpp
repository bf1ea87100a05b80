#pragma once
// Drives one protocol BackendLogin with arbitrary backend lines, playing the
// engine's part (src/login/session.cpp proxy_attempt()): lines are cut on LF
// with one CR dropped, lines over 4096 bytes end the dialogue (the engine
// fails them as "Too long input line"), StartTls is answered with
// on_tls_ready(), Success/Failure end the attempt.
//
// Input layout:
//   byte 0  params: bit0 starttls, bit1 tls (ssl or starttls), bit2 nopipelining,
//           bit3 not_trusted, bit4 noauth, bit5 master user, bits6-7 proxy_mech
//           ("", PLAIN, LOGIN, then by the kCreds index mod 3: OAUTHBEARER,
//           XOAUTH2 or the unknown XYZZY)
//   byte 1  client / credentials: bits0-2 user+password pair from kCreds,
//           bit3 client TLS, bit4 client trusted, bit5 forward_* fields,
//           bits6-7 protocol-specific variant (the target's make() uses them)
//   rest    backend lines
// Invariants: output() is CRLF-clean (literal bodies excepted where the
// protocol has literals) and ends in CRLF; client_reply() and
// failure().client_reply end in CRLF with no bare LF; the password never
// appears in state(), failure().reason or a client reply unless the backend
// itself sent it; failure reasons (logged verbatim) hold no control
// characters; every event is a valid enum value.

#include <asio/ip/address.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "login/backend_driver.hpp"
#include "login/protocol.hpp"

namespace portier::fuzz {

struct Creds {
  std::string_view user, password;
};
inline constexpr Creds kCreds[8] = {
    {"user1", "S3cret-pass"},
    {"user name", "pass word\""},
    {"\"quoted\"\\user", "back\\slash{5}"},
    {"ünïcode@example.org", "pässwörd-ü"},
    {"user\r\nA001 LOGOUT", "line\r\nbreak-pw"},  // reachable: nopassword entries forward any password
    {"", "empty-user-pw"},
    {"user1", ""},
    {"x", std::string_view("nul\0inside-pw", 13)},
};

using MakeBackend = std::function<std::unique_ptr<login::BackendLogin>(
    const login::BackendLoginParams&, unsigned variant)>;

inline void check_reply(std::string_view r, const char* what) {
  if (r.empty()) return;
  FUZZ_CHECK(r.size() >= 2 && r.substr(r.size() - 2) == "\r\n", what, r);
  for (size_t i = 0; i < r.size(); ++i)
    FUZZ_CHECK(r[i] != '\n' || (i > 0 && r[i - 1] == '\r'), what, r);
}

inline int run_backend(const MakeBackend& make, bool literals, const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t f = data[0], g = data[1];
  const std::string_view in = as_text(data + 2, size - 2);

  login::ClientInfo ci;
  ci.remote_ip = asio::ip::make_address_v4("192.0.2.7");
  ci.remote_port = 53640;
  ci.local_ip = asio::ip::make_address_v4("192.0.2.1");
  ci.local_port = 143;
  ci.tls = g & 0x08;
  ci.end_client_tls = ci.tls;
  ci.trusted = g & 0x10;
  ci.session_id = "y7/P7lthiNF/AAAB";
  ci.proxy_ttl = 5;

  static constexpr std::string_view kMechs[4] = {"", "PLAIN", "LOGIN", "XYZZY"};
  static constexpr std::string_view kLastMechs[3] = {"OAUTHBEARER", "XOAUTH2", "XYZZY"};
  const Creds& cr = kCreds[g & 7];
  login::BackendLoginParams p;
  p.user = std::string(cr.user);
  p.password = cr.password;
  p.starttls = f & 0x01;
  p.tls = (f & 0x02) || p.starttls;
  p.nopipelining = f & 0x04;
  p.not_trusted = f & 0x08;
  p.noauth = f & 0x10;
  if (f & 0x20) p.master = "master*admin";
  p.mech = std::string(kMechs[f >> 6]);
  if (p.mech == "XYZZY") p.mech = std::string(kLastMechs[(g & 7) % 3]);
  p.host = "backend.example.org";  // OAUTHBEARER's host/port pairs
  p.port = 143;
  if (g & 0x20) p.forward = {{"client_id", "fuzz 1"}, {"x", "a\"b\\c"}};
  p.hostname = "proxy.example.org";
  p.client = &ci;

  auto bl = make(p, g >> 6);
  const std::string_view pw = cr.password;
  // The backend's own bytes may spell the password once control bytes are
  // made log-safe (a 0x1c between "pass" and "word" becomes a space): only
  // check for leaks when no such rendering of the input holds it.
  auto rendered = [&](char with) {
    std::string r(in);
    for (char& c : r)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\r' && c != '\n') || c == 0x7f) c = with;
    return r;
  };
  const bool pw_checkable = pw.size() >= 6 && !contains(in, pw) &&
                            !contains(rendered(' '), pw) && !contains(rendered('?'), pw);
  auto check = [&](login::BackendEvent ev) {
    FUZZ_CHECK(static_cast<unsigned>(ev) <= static_cast<unsigned>(login::BackendEvent::Failure),
               "invalid BackendEvent", "");
    std::string why;
    if (!wire_clean(bl->output(), literals, &why))
      fail("backend output not CRLF-clean (command injection?)", why + ": " + bl->output());
    bl->wipe_output();
    std::string st = bl->state();
    FUZZ_CHECK(!st.empty(), "empty state()", "");
    if (pw_checkable) FUZZ_CHECK(!contains(st, pw), "password in state()", st);
  };

  size_t events = 0;
  // Lines are cut by the engine's own code (login/backend_driver).
  std::string buf(in);
  buf += '\n';  // the last line counts even without its LF
  std::string line;
  for (;;) {
    login::LineCut cut = login::next_backend_line(buf, line);
    if (cut != login::LineCut::Line) return 0;  // TooLong ends the dialogue; NeedMore: input done
    login::BackendEvent ev = bl->on_line(line);
    check(ev);
    while (ev == login::BackendEvent::StartTls) {
      FUZZ_CHECK(++events < 16, "StartTls loop", "");
      ev = bl->on_tls_ready();
      check(ev);
    }
    if (ev == login::BackendEvent::Success) {
      check_reply(bl->client_reply(), "client_reply not CRLF-terminated lines");
      if (pw_checkable) FUZZ_CHECK(!contains(bl->client_reply(), pw), "password in client_reply", "");
      return 0;
    }
    if (ev == login::BackendEvent::Failure) {
      const login::ProxyFailure& pf = bl->failure();
      FUZZ_CHECK(pf.type < login::FailureType::kCount, "invalid FailureType", "");
      // Authentication failures carry the backend's text, which may be empty.
      FUZZ_CHECK(!pf.reason.empty() || login::failure_is_auth(pf.type), "failure without reason",
                 std::string(login::failure_type_name(pf.type)) + " state=" + bl->state());
      // The engine logs the reason as is (session.cpp log_proxy): backend
      // bytes in it must already be made safe for a log line.
      for (char c : pf.reason)
        FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f,
                   "control character in failure reason (log injection)", pf.reason);
      check_reply(pf.client_reply, "failure client_reply not CRLF-terminated lines");
      if (pw_checkable) {
        FUZZ_CHECK(!contains(pf.reason, pw), "password in failure reason", pf.reason);
        FUZZ_CHECK(!contains(pf.client_reply, pw), "password in failure client_reply", "");
      }
      return 0;
    }
  }
  return 0;
}

}  // namespace portier::fuzz
