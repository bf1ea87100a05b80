#include "sasl/sasl.hpp"

#include <algorithm>

#include "core/secure.hpp"
#include "core/strings.hpp"
#include "sasl/oauth.hpp"
#include "sasl/oauth_client.hpp"

namespace portier::sasl {

ServerMech::~ServerMech() = default;
ClientMech::~ClientMech() = default;

namespace {

Step cont(std::string challenge) { return Step{Status::Continue, std::move(challenge), {}}; }
Step done() { return Step{Status::Done, {}, {}}; }
Step fail(std::string why) { return Step{Status::Failed, {}, std::move(why)}; }

// ---- PLAIN (RFC 4616) -------------------------------------------------------

class PlainServer final : public ServerMech {
 public:
  PlainServer() { creds_.mech = "PLAIN"; }

  Step start(std::optional<std::string_view> ir) override {
    if (state_ != State::Initial) return fail("PLAIN: start called twice");
    if (!ir) {
      state_ = State::WaitMessage;
      return cont("");
    }
    return parse(*ir);
  }

  Step step(std::string_view response) override {
    if (state_ != State::WaitMessage) return fail("PLAIN: unexpected response");
    return parse(response);
  }

  const Credentials& credentials() const override { return creds_; }
  Credentials take_credentials() override { return std::move(creds_); }

 private:
  enum class State { Initial, WaitMessage, Finished };

  Step parse(std::string_view msg) {
    state_ = State::Finished;
    if (std::count(msg.begin(), msg.end(), '\0') != 2)
      return fail("PLAIN: invalid message (expected authzid NUL authcid NUL password)");
    size_t a = msg.find('\0');
    size_t b = msg.find('\0', a + 1);
    std::string_view authzid = msg.substr(0, a);
    std::string_view authcid = msg.substr(a + 1, b - a - 1);
    std::string_view password = msg.substr(b + 1);
    if (authcid.empty()) return fail("PLAIN: empty authentication identity");
    creds_.authzid.assign(authzid);
    creds_.authcid.assign(authcid);
    creds_.password.assign(password);
    return done();
  }

  State state_ = State::Initial;
  Credentials creds_;
};

// ---- LOGIN ------------------------------------------------------------------

class LoginServer final : public ServerMech {
 public:
  LoginServer() { creds_.mech = "LOGIN"; }

  Step start(std::optional<std::string_view> ir) override {
    if (state_ != State::Initial) return fail("LOGIN: start called twice");
    // LOGIN has no initial response: an empty one asks for the user name
    // (as Dovecot's LOGIN does), in every protocol.
    if (!ir || ir->empty()) {
      state_ = State::WaitUser;
      return cont("Username:");
    }
    return got_user(*ir);
  }

  Step step(std::string_view response) override {
    switch (state_) {
      case State::WaitUser:
        return got_user(response);
      case State::WaitPassword:
        state_ = State::Finished;
        if (response.find('\0') != std::string_view::npos)
          return fail("LOGIN: NUL in password");
        creds_.password.assign(response);
        return done();
      default:
        return fail("LOGIN: unexpected response");
    }
  }

  const Credentials& credentials() const override { return creds_; }
  Credentials take_credentials() override { return std::move(creds_); }

 private:
  enum class State { Initial, WaitUser, WaitPassword, Finished };

  Step got_user(std::string_view user) {
    if (user.empty()) {
      state_ = State::Finished;
      return fail("LOGIN: empty username");
    }
    if (user.find('\0') != std::string_view::npos) {
      state_ = State::Finished;
      return fail("LOGIN: NUL in username");
    }
    creds_.authcid.assign(user);
    state_ = State::WaitPassword;
    return cont("Password:");
  }

  State state_ = State::Initial;
  Credentials creds_;
};

// ---- EXTERNAL (RFC 4422 appendix A) -----------------------------------------
// The identity is the certificate's; the client's message is an optional
// authorization identity, which must be empty or that same identity.

class ExternalServer final : public ServerMech {
 public:
  explicit ExternalServer(std::string_view id) : id_(id) { creds_.mech = "EXTERNAL"; }

  Step start(std::optional<std::string_view> ir) override {
    if (state_ != State::Initial) return fail("EXTERNAL: start called twice");
    if (id_.empty()) {
      state_ = State::Finished;
      return fail("EXTERNAL: no verified client certificate");
    }
    if (!ir) {
      state_ = State::WaitAuthzid;
      return cont("");
    }
    return got_authzid(*ir);
  }

  Step step(std::string_view response) override {
    if (state_ != State::WaitAuthzid) return fail("EXTERNAL: unexpected response");
    return got_authzid(response);
  }

  const Credentials& credentials() const override { return creds_; }
  Credentials take_credentials() override { return std::move(creds_); }

 private:
  enum class State { Initial, WaitAuthzid, Finished };

  Step got_authzid(std::string_view authzid) {
    state_ = State::Finished;
    if (!authzid.empty() && authzid != id_)
      return fail("EXTERNAL: authorization identity differs from the certificate's user");
    creds_.authcid = id_;
    creds_.authzid.assign(authzid);
    return done();
  }

  std::string id_;
  State state_ = State::Initial;
  Credentials creds_;
};

// ---- clients ----------------------------------------------------------------

class PlainClient final : public ClientMech {
 public:
  PlainClient(std::string_view authzid, std::string_view authcid, std::string_view password) {
    msg_.append(authzid);
    msg_.push_back('\0');
    msg_.append(authcid);
    msg_.push_back('\0');
    msg_.append(password);
  }

  std::string initial_response() override {
    sent_ = true;
    return std::string(msg_.view());
  }

  std::optional<std::string> step(std::string_view challenge) override {
    // A server that did not take the IR sends an empty challenge; answer once.
    if (!answered_ && challenge.empty()) {
      answered_ = true;
      return std::string(msg_.view());
    }
    return std::nullopt;
  }

 private:
  core::Secret msg_;  // authzid NUL authcid NUL password
  bool sent_ = false;
  bool answered_ = false;
};

class LoginClient final : public ClientMech {
 public:
  LoginClient(std::string_view authcid, std::string_view password)
      : user_(authcid), password_(password) {}

  std::string initial_response() override { return {}; }

  std::optional<std::string> step(std::string_view challenge) override {
    switch (n_++) {
      case 0: return user_;
      case 1: return std::string(password_.view());
      default: return std::nullopt;
    }
  }

 private:
  std::string user_;
  core::Secret password_;
  int n_ = 0;
};

}  // namespace

namespace {
// The mechanism registry: a new mechanism is its classes above plus one line.
struct Mechanism {
  std::string_view name;
  std::unique_ptr<ServerMech> (*server)(const ServerParams&);
  std::unique_ptr<ClientMech> (*client)(std::string_view authzid, std::string_view authcid,
                                         std::string_view password);
};
constexpr auto kNoClient = [](std::string_view, std::string_view, std::string_view) {
  return std::unique_ptr<ClientMech>();
};
constexpr Mechanism kMechanisms[] = {
    {"PLAIN", [](const ServerParams&) { return std::unique_ptr<ServerMech>(std::make_unique<PlainServer>()); },
     [](std::string_view z, std::string_view c, std::string_view p) {
       return std::unique_ptr<ClientMech>(std::make_unique<PlainClient>(z, c, p));
     }},
    {"LOGIN", [](const ServerParams&) { return std::unique_ptr<ServerMech>(std::make_unique<LoginServer>()); },
     [](std::string_view, std::string_view c, std::string_view p) {
       return std::unique_ptr<ClientMech>(std::make_unique<LoginClient>(c, p));
     }},
    // Server side only: portier never logs in to a backend with EXTERNAL.
    {"EXTERNAL",
     [](const ServerParams& sp) {
       return std::unique_ptr<ServerMech>(std::make_unique<ExternalServer>(sp.external_id));
     },
     kNoClient},
    // OAuth 2.0 (sasl/oauth.hpp); server side here, the client side is oauth_client.
    {"OAUTHBEARER", [](const ServerParams&) { return make_oauthbearer_server(); }, kNoClient},
    {"XOAUTH2", [](const ServerParams&) { return make_xoauth2_server(); }, kNoClient},
};

const Mechanism* find_mech(std::string_view name) {
  for (const auto& m : kMechanisms)
    if (core::iequals(name, m.name)) return &m;
  return nullptr;
}
}  // namespace

std::unique_ptr<ServerMech> make_server_mech(std::string_view name, const ServerParams& params) {
  const Mechanism* m = find_mech(name);
  return m ? m->server(params) : nullptr;
}

bool needs_external_id(std::string_view name) { return core::iequals(name, "EXTERNAL"); }

std::unique_ptr<ClientMech> make_client_mech(std::string_view name, std::string_view authzid,
                                             std::string_view authcid, std::string_view password,
                                             const ClientParams& params) {
  // The OAuth clients live in oauth_client.cpp (the token is the "password").
  if (is_oauth_client_mech(name)) return make_oauth_client(name, authcid, password, params);
  const Mechanism* m = find_mech(name);
  return m ? m->client(authzid, authcid, password) : nullptr;
}

bool is_known_mech(std::string_view name) { return find_mech(name) != nullptr; }

bool is_client_mech(std::string_view name) {
  if (is_oauth_client_mech(name)) return true;
  const Mechanism* m = find_mech(name);
  return m && m->client("", "", "") != nullptr;
}

std::vector<std::string_view> known_mech_names() {
  std::vector<std::string_view> out;
  for (const auto& m : kMechanisms) out.push_back(m.name);
  return out;
}

}  // namespace portier::sasl
