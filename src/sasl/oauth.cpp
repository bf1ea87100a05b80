#include "sasl/oauth.hpp"

#include <cstdio>
#include <optional>

#include "core/strings.hpp"

namespace portier::sasl {

namespace {

constexpr char kSep = '\x01';

/// The key=value pairs of an OAUTHBEARER / XOAUTH2 message body:
/// `key=value ^A ... ^A ^A` (at least one pair). Only the keys both
/// mechanisms use are kept; others (host, port, ...) are ignored.
struct KvPairs {
  std::string_view user;   ///< XOAUTH2 `user=`
  std::string_view token;  ///< `auth=Bearer <token>`: the token
  bool has_user = false;
  bool has_auth = false;
};

/// RFC 6750 b64token characters, as a bearer token may hold them (plus
/// anything else printable: providers' tokens are not always token68).
bool token_ok(std::string_view t) {
  if (t.empty()) return false;
  for (unsigned char c : t)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

/// "" when fine, else why not (no secrets in it).
std::string parse_kvpairs(std::string_view body, KvPairs& out) {
  if (body.size() < 2 || !body.ends_with("\x01\x01"))
    return "message does not end with ^A^A";
  body.remove_suffix(2);
  if (body.empty()) return "no key=value pairs";
  for (;;) {
    const size_t end = body.find(kSep);
    const std::string_view kv = body.substr(0, end);
    const size_t eq = kv.find('=');
    if (eq == std::string_view::npos || eq == 0) return "invalid key=value pair";
    const std::string_view key = kv.substr(0, eq);
    const std::string_view value = kv.substr(eq + 1);
    for (char c : key)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return "invalid key";
    if (key == "auth") {
      if (out.has_auth) return "auth given twice";
      out.has_auth = true;
      if (value.size() < 7 || !core::iequals(value.substr(0, 7), "Bearer "))
        return "auth scheme is not Bearer";
      out.token = value.substr(7);
      if (!token_ok(out.token)) return "invalid bearer token";
    } else if (key == "user") {
      if (out.has_user) return "user given twice";
      out.has_user = true;
      out.user = value;
    }
    if (end == std::string_view::npos) break;
    body.remove_prefix(end + 1);
  }
  if (!out.has_auth) return "missing auth=Bearer";
  return {};
}

/// RFC 5801 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` (and a
/// literal `,`) is invalid.
std::optional<std::string> decode_saslname(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == ',') return std::nullopt;
    if (s[i] != '=') {
      out.push_back(s[i]);
      continue;
    }
    const std::string_view esc = s.substr(i + 1, 2);
    if (esc == "2C" || esc == "2c")
      out.push_back(',');
    else if (esc == "3D" || esc == "3d")
      out.push_back('=');
    else
      return std::nullopt;
    i += 2;
  }
  return out;
}

bool user_ok(std::string_view u) {
  return !u.empty() && u.find('\0') == std::string_view::npos;
}

/// Both mechanisms: an empty challenge when the client sent no initial
/// response, then one message to parse. `Parse` fills the user and the
/// password of `creds` or says why not.
class OAuthServer final : public ServerMech {
 public:
  using Parse = std::string (*)(std::string_view msg, Credentials& creds);
  OAuthServer(std::string_view mech, Parse parse) : parse_(parse) { creds_.mech = mech; }

  Step start(std::optional<std::string_view> ir) override {
    if (state_ != State::Initial) return finish(creds_.mech + ": start called twice");
    if (!ir) {
      state_ = State::WaitMessage;
      return Step{Status::Continue, {}, {}};
    }
    return got(*ir);
  }

  Step step(std::string_view response) override {
    if (state_ != State::WaitMessage) return finish(creds_.mech + ": unexpected response");
    return got(response);
  }

  const Credentials& credentials() const override { return creds_; }
  Credentials take_credentials() override { return std::move(creds_); }

 private:
  enum class State { Initial, WaitMessage, Finished };

  Step got(std::string_view msg) {
    std::string why = parse_(msg, creds_);
    if (!why.empty()) {
      creds_.authcid.clear();
      creds_.password.clear();
      return finish(creds_.mech + ": " + why);
    }
    state_ = State::Finished;
    return Step{Status::Done, {}, {}};
  }
  Step finish(std::string why) {
    state_ = State::Finished;
    return Step{Status::Failed, {}, std::move(why)};
  }

  Parse parse_;
  State state_ = State::Initial;
  Credentials creds_;
};

// RFC 7628 §3.1: gs2-header ^A kvpairs ^A
std::string parse_oauthbearer(std::string_view msg, Credentials& creds) {
  if (msg.empty()) return "empty message";
  if (msg[0] == 'p') return "channel binding (p=) is not supported";
  if (!(msg.starts_with("n,") || msg.starts_with("y,"))) return "invalid gs2 header";
  msg.remove_prefix(2);
  const size_t comma = msg.find(',');
  if (comma == std::string_view::npos) return "invalid gs2 header";
  const std::string_view authz = msg.substr(0, comma);
  msg.remove_prefix(comma + 1);
  if (authz.empty()) return "no authorization identity (a=) to log in as";
  if (!authz.starts_with("a=")) return "invalid gs2 header";
  auto user = decode_saslname(authz.substr(2));
  if (!user) return "invalid authorization identity";
  if (!user_ok(*user)) return "no authorization identity (a=) to log in as";
  if (msg.empty() || msg[0] != kSep) return "no ^A after the gs2 header";
  KvPairs kv;
  std::string why = parse_kvpairs(msg.substr(1), kv);
  if (!why.empty()) return why;
  creds.authcid = std::move(*user);
  creds.password.assign(kv.token);
  return {};
}

// user=<u> ^A auth=Bearer <token> ^A ^A
std::string parse_xoauth2(std::string_view msg, Credentials& creds) {
  KvPairs kv;
  std::string why = parse_kvpairs(msg, kv);
  if (!why.empty()) return why;
  if (!kv.has_user || !user_ok(kv.user)) return "missing user=";
  creds.authcid.assign(kv.user);
  creds.password.assign(kv.token);
  return {};
}

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

void append_member(std::string& out, std::string_view key, std::string_view value) {
  if (out.size() > 1) out.push_back(',');  // `out` starts with '{'
  append_json_string(out, key);
  out.push_back(':');
  append_json_string(out, value);
}

}  // namespace

bool is_oauth_mech(std::string_view mech) {
  return core::iequals(mech, "OAUTHBEARER") || core::iequals(mech, "XOAUTH2");
}

std::unique_ptr<ServerMech> make_oauthbearer_server() {
  return std::make_unique<OAuthServer>("OAUTHBEARER", &parse_oauthbearer);
}

std::unique_ptr<ServerMech> make_xoauth2_server() {
  return std::make_unique<OAuthServer>("XOAUTH2", &parse_xoauth2);
}

std::string oauth_failure_json(std::string_view mech, const OAuthFailureInfo& info) {
  const std::string_view scope = info.scope.empty() ? std::string_view("mail") : info.scope;
  std::string out = "{";
  if (core::iequals(mech, "XOAUTH2")) {
    const std::string_view code = info.status == "invalid_token"        ? "401"
                                  : info.status == "insufficient_scope" ? "403"
                                                                        : "400";
    append_member(out, "status", code);
    append_member(out, "schemes", "bearer");
  } else {
    append_member(out, "status", info.status.empty() ? "invalid_token" : info.status);
  }
  append_member(out, "scope", scope);
  if (!info.openid_configuration.empty())
    append_member(out, "openid-configuration", info.openid_configuration);
  out.push_back('}');
  return out;
}

}  // namespace portier::sasl
