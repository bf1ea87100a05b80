#include "sasl/oauth_client.hpp"

#include "core/secret.hpp"
#include "core/strings.hpp"

namespace portier::sasl {

namespace {

constexpr char kSep = '\x01';

class OAuthClient final : public ClientMech {
 public:
  /// `ack`: the answer to the server's failure challenge.
  OAuthClient(core::Secret msg, std::string ack) : msg_(std::move(msg)), ack_(std::move(ack)) {}

  std::string initial_response() override { return std::string(msg_.view()); }

  std::optional<std::string> step(std::string_view challenge) override {
    if (failed_) return std::nullopt;
    // A server that did not take an initial response sends an empty
    // challenge: answer it once with the message (as PLAIN does).
    if (challenge.empty() && !answered_) {
      answered_ = true;
      return std::string(msg_.view());
    }
    // Anything else is the server's failure report, acknowledged once.
    failed_ = true;
    msg_.clear();
    return ack_;
  }

  bool failure_reported() const override { return failed_; }

 private:
  core::Secret msg_;
  std::string ack_;
  bool answered_ = false;
  bool failed_ = false;
};

void append_token(core::Secret& msg, std::string_view token) {
  msg.append("auth=Bearer ");
  msg.append(token);
  msg.push_back(kSep);
  msg.push_back(kSep);
}

}  // namespace

std::string gs2_escape(std::string_view authzid) {
  std::string out;
  out.reserve(authzid.size());
  for (char c : authzid) {
    if (c == ',')
      out += "=2C";
    else if (c == '=')
      out += "=3D";
    else
      out += c;
  }
  return out;
}

bool is_oauth_client_mech(std::string_view name) {
  return core::iequals(name, "OAUTHBEARER") || core::iequals(name, "XOAUTH2");
}

std::unique_ptr<ClientMech> make_oauth_client(std::string_view name, std::string_view user,
                                              std::string_view token, const ClientParams& params) {
  core::Secret msg;
  if (core::iequals(name, "OAUTHBEARER")) {
    msg.append("n,a=");
    msg.append(gs2_escape(user));
    msg.push_back(',');
    msg.push_back(kSep);
    if (!params.host.empty()) {
      msg.append("host=");
      msg.append(params.host);
      msg.push_back(kSep);
    }
    if (params.port != 0) {
      msg.append("port=");
      msg.append(std::to_string(params.port));
      msg.push_back(kSep);
    }
    append_token(msg, token);
    return std::make_unique<OAuthClient>(std::move(msg), std::string(1, kSep));
  }
  if (core::iequals(name, "XOAUTH2")) {
    msg.append("user=");
    msg.append(user);
    msg.push_back(kSep);
    append_token(msg, token);
    return std::make_unique<OAuthClient>(std::move(msg), std::string());
  }
  return nullptr;
}

}  // namespace portier::sasl
