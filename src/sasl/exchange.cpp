#include "sasl/exchange.hpp"

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "core/strings.hpp"
#include "sasl/oauth.hpp"

namespace portier::sasl {

bool is_cleartext_mech(std::string_view mech) {
  // Dovecot flags the OAuth mechanisms cleartext too: a bearer token is a
  // password equivalent.
  return core::iequals(mech, "PLAIN") || core::iequals(mech, "LOGIN") || is_oauth_mech(mech);
}

bool mech_offered(std::span<const std::string> offered, std::string_view mech) {
  for (const auto& m : offered)
    if (core::iequals(m, mech)) return true;
  return false;
}

Outcome ServerExchange::begin(std::string_view mech, std::optional<std::string_view> ir,
                              const ExchangePolicy& policy, IrSyntax syntax) {
  reset();
  name_ = core::to_upper(mech);
  std::unique_ptr<ServerMech> server;
  if (needs_external_id(name_) && policy.external_id.empty()) return Outcome::Unsupported;
  if (mech_offered(policy.mechanisms, name_))
    server = make_server_mech(name_, ServerParams{policy.external_id});
  if (!server) return Outcome::Unsupported;
  if (is_cleartext_mech(name_) && !policy.cleartext_allowed) return Outcome::CleartextDenied;
  std::optional<std::string> decoded;
  if (ir) {
    if (syntax == IrSyntax::EqualsIsEmpty && *ir == "=") {
      decoded.emplace();
    } else {
      decoded = core::base64_decode(*ir);
      if (!decoded) return Outcome::BadInitialBase64;
    }
  }
  mech_ = std::move(server);
  Step step = decoded ? mech_->start(std::string_view(*decoded)) : mech_->start(std::nullopt);
  if (decoded) core::secure_zero(*decoded);
  return result(step);
}

Outcome ServerExchange::respond(std::string_view text) {
  if (!mech_) return Outcome::Failed;
  if (text == "*") {
    reset();
    return Outcome::Aborted;
  }
  std::optional<std::string> decoded = core::base64_decode(text);
  if (!decoded) {
    reset();
    return Outcome::BadBase64;
  }
  Step step = mech_->step(*decoded);
  core::secure_zero(*decoded);
  return result(step);
}

Outcome ServerExchange::result(const Step& step) {
  switch (step.status) {
    case Status::Continue:
      challenge_ = core::base64_encode(step.challenge);
      return Outcome::Challenge;
    case Status::Done:
      creds_ = mech_->take_credentials();
      mech_.reset();  // wipes the mechanism's own copy
      return Outcome::Done;
    case Status::Failed:
      break;
  }
  reset();
  return Outcome::Failed;
}

void ServerExchange::reset() {
  mech_.reset();
  challenge_.clear();
}

}  // namespace portier::sasl
