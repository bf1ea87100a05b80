#include "protocols/common/frontend_base.hpp"

#include <utility>

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "core/strings.hpp"
#include "login/command_budget.hpp"
#include "sasl/oauth.hpp"

namespace portier::protocols::common {

using login::FrontendEvent;

std::string_view SaslTexts::of(sasl::Outcome o) const {
  switch (o) {
    case sasl::Outcome::Unsupported: return unsupported;
    case sasl::Outcome::CleartextDenied: return cleartext_denied;
    case sasl::Outcome::BadInitialBase64: return bad_initial_base64;
    case sasl::Outcome::BadBase64: return bad_base64;
    case sasl::Outcome::Aborted: return aborted;
    default: return failed;
  }
}

FrontendBase::FrontendBase(const login::FrontendSettings& settings, login::ClientInfo& client,
                           const SaslTexts& sasl_texts, const FailureTexts& failure_texts)
    : settings_(settings),
      client_(client),
      sasl_texts_(sasl_texts),
      failure_texts_(failure_texts) {
  if (settings_.greeting.empty()) settings_.greeting = "portier ready.";
}

void FrontendBase::start() {
  if (client_.tls) client_.end_client_tls = true;
  greet();
}

void FrontendBase::auth_failed(login::AuthFailure kind, std::string_view reason,
                               std::string_view sasl_challenge) {
  login_over();
  if (sasl_challenge.empty())
    refuse_login(kind, reason);
  else
    behind_challenge(sasl_challenge, [&] { refuse_login(kind, reason); });
}

template <class Render>
void FrontendBase::behind_challenge(std::string_view b64, Render render) {
  std::string queued = std::exchange(output_, {});
  render();
  held_reply_ = std::exchange(output_, std::move(queued));
  send_challenge(b64);
  mode_ = Mode::SaslResponse;
  answer_pending_ = true;
}

void FrontendBase::release_held_reply() {
  answer_pending_ = false;
  mode_ = Mode::Commands;
  output_ += held_reply_;
  held_reply_.clear();
}

void FrontendBase::referred(const login::Referral& r) {
  login_over();
  if (refer(r)) {
    set_close_reason("Login with referral");
    closed();
  }
}

void FrontendBase::feed(std::string_view data) {
  if (mode_ == Mode::Closed) return;
  in_.append(data);
}

FrontendEvent FrontendBase::next() {
  for (;;) {
    if (mode_ == Mode::Closed) return FrontendEvent::Close;
    // The login is with the engine; later input stays pending.
    if (mode_ == Mode::AuthPending) return FrontendEvent::NeedInput;
    Event ev = parse();
    in_.forget_line();  // a line may have held PASS or a SASL response
    if (ev) return *ev;
  }
}

namespace {
/// POP3 and Submission: `AUTH OAUTHBEARER|XOAUTH2 <initial response>` may
/// carry a 64 KiB token; every other command keeps the normal line limit.
bool oauth_command_ahead(std::string_view in) {
  if (in.size() < 5 || !core::iequals(in.substr(0, 5), "AUTH ")) return false;
  in.remove_prefix(5);
  const size_t sp = in.find(' ');
  return sp != std::string_view::npos && sasl::is_oauth_mech(in.substr(0, sp));
}
}  // namespace

size_t FrontendBase::sasl_response_limit() const {
  const bool oauth = sasl_.active() && sasl::is_oauth_mech(sasl_.mech_name());
  return oauth ? login::sasl_line_limit(settings_) : login::line_limit(settings_);
}

FrontendBase::Event FrontendBase::parse() {
  const size_t limit = mode_ == Mode::SaslResponse      ? sasl_response_limit()
                       : oauth_command_ahead(in_.avail()) ? login::sasl_line_limit(settings_)
                                                          : login::line_limit(settings_);
  switch (in_.take_line(limit)) {
    case login::PreloginInput::Line::NeedMore:
      return FrontendEvent::NeedInput;
    case login::PreloginInput::Line::TooLong:
      // Bounded: the rest of an over-long line cannot be re-synchronised.
      return line_too_long();
    case login::PreloginInput::Line::Ready:
      break;
  }
  const std::string_view l = in_.line();  // PASS, AUTH initial response or SASL response
  if (mode_ == Mode::SaslResponse) return sasl_respond(l);
  // Dovecot: the verb ends at the first space.
  size_t sp = l.find(' ');
  std::string_view args = sp == std::string_view::npos ? std::string_view{} : l.substr(sp + 1);
  return command_line(l.substr(0, sp), args);
}

sasl::Credentials FrontendBase::take_credentials() {
  login_mech_ = credentials_.mech;
  return std::move(credentials_);
}

std::string FrontendBase::take_pending_input() { return in_.take_rest(); }

void FrontendBase::tls_started() {
  client_.end_client_tls = true;
  in_.wipe();  // nothing read before the handshake may survive it
  on_tls_started();
}

void FrontendBase::proxy_failed(const login::ProxyFailure& f) {
  login_over();
  // Only a client that itself logged in with an OAuth mechanism can answer a
  // relayed OAuth challenge (a PLAIN client whose password went to the
  // backend as a token gets the plain failure).
  if (f.sasl_challenge.empty() || !sasl::is_oauth_mech(login_mech_))
    render_proxy_failure(f);
  else
    behind_challenge(f.sasl_challenge, [&] { render_proxy_failure(f); });
}

void FrontendBase::render_proxy_failure(const login::ProxyFailure& f) {
  using login::FailureType;
  // The one switch that maps a backend failure to the client reply (§3.6,
  // §4.2, §5.4, §6.2); referrals are not followed in v1.
  std::string_view text = failure_texts_.unavailable;
  switch (f.type) {
    case FailureType::Connect:
    case FailureType::Internal:
    case FailureType::Remote:
    case FailureType::Protocol:
    case FailureType::AuthRedirect:
    case FailureType::kCount:
      break;
    case FailureType::InternalConfig:
    case FailureType::RemoteConfig:
    case FailureType::AuthNotReplied:
      if (!failure_texts_.config.empty()) text = failure_texts_.config;
      break;
    case FailureType::AuthTempfail:
    case FailureType::AuthReplied:
    case FailureType::LimitReached:
      // The backend's own reply, as the BackendLogin rendered it.
      if (!f.client_reply.empty()) {
        output_ += f.client_reply;
        return;
      }
      if (f.type == FailureType::AuthReplied)
        text = failure_texts_.auth_failed;
      else if (f.type == FailureType::LimitReached && !failure_texts_.limit.empty())
        text = failure_texts_.limit;
      break;
  }
  failure_reply(text);
}

void FrontendBase::send_challenge(std::string_view b64) {
  output_ += "+ ";
  output_ += b64;
  output_ += "\r\n";
}

FrontendBase::Event FrontendBase::sasl_refused(sasl::Outcome, std::string_view text) {
  reply_line(text);
  return std::nullopt;
}

void FrontendBase::timed_out() {
  std::string_view text = "Disconnected for inactivity.";
  if (mode_ == Mode::AuthPending)
    text = "Timeout while finishing login.";
  else if (mode_ == Mode::SaslResponse && !failure_texts_.sasl_timeout.empty())
    text = failure_texts_.sasl_timeout;
  send_bye(Bye::Timeout, text);
  closed();
}

void FrontendBase::goodbye(std::string_view reason) {
  send_bye(Bye::Goodbye, reason);
  closed();
}

bool FrontendBase::cleartext_allowed() const {
  return client_.secured() || settings_.allow_cleartext;
}

bool FrontendBase::mech_advertised(std::string_view mech) const {
  if (sasl::is_cleartext_mech(mech) && !cleartext_allowed()) return false;
  // EXTERNAL only after a verified client certificate that names a user.
  if (sasl::needs_external_id(mech) && client_.cert_user.empty()) return false;
  return sasl::mech_offered(settings_.mechanisms, mech);
}

FrontendBase::Event FrontendBase::sasl_begin(std::string_view mech,
                                             std::optional<std::string_view> ir,
                                             sasl::IrSyntax syntax) {
  const sasl::ExchangePolicy policy{settings_.mechanisms, cleartext_allowed(), client_.cert_user};
  return sasl_outcome(sasl_.begin(mech, ir, policy, syntax));
}

FrontendBase::Event FrontendBase::sasl_respond(std::string_view text) {
  // RFC 7628: the answer to a failure challenge is ^A (XOAUTH2: empty) or
  // "*"; whatever it is, the failure follows.
  if (answer_pending_) {
    release_held_reply();
    return std::nullopt;
  }
  return sasl_outcome(sasl_.respond(text));
}

FrontendBase::Event FrontendBase::sasl_outcome(sasl::Outcome o) {
  switch (o) {
    case sasl::Outcome::Challenge:
      send_challenge(sasl_.challenge());
      mode_ = Mode::SaslResponse;
      return std::nullopt;
    case sasl::Outcome::Done:
      credentials_ = sasl_.take_credentials();
      mode_ = Mode::AuthPending;
      return FrontendEvent::Authenticate;
    default:
      break;
  }
  mode_ = Mode::Commands;
  if (o == sasl::Outcome::Failed && sasl::is_oauth_mech(sasl_.mech_name())) {
    // RFC 7628 §3.2.2, as Dovecot: a malformed OAuth message is answered
    // with the failure JSON (invalid_request) first.
    sasl::OAuthFailureInfo info;
    info.status = "invalid_request";
    const std::string b64 = core::base64_encode(sasl::oauth_failure_json(sasl_.mech_name(), info));
    behind_challenge(b64, [&] { sasl_refused(o, sasl_texts_.of(o)); });
    return std::nullopt;
  }
  return sasl_refused(o, sasl_texts_.of(o));
}

void FrontendBase::sasl_cancel() {
  sasl_.reset();
  mode_ = Mode::Commands;
  if (answer_pending_) release_held_reply();
}

FrontendBase::Event FrontendBase::authenticate(std::string user, std::string_view password) {
  credentials_ = sasl::Credentials{};
  credentials_.mech = "PLAIN";
  credentials_.authcid = std::move(user);
  credentials_.password.assign(password);
  mode_ = Mode::AuthPending;
  return FrontendEvent::Authenticate;
}

void FrontendBase::login_over() {
  credentials_ = sasl::Credentials{};
  mode_ = Mode::Commands;
}

FrontendBase::Event FrontendBase::closed() {
  mode_ = Mode::Closed;
  answer_pending_ = false;
  core::secure_zero(held_reply_);
  sasl_.reset();
  in_.wipe();
  return FrontendEvent::Close;
}

FrontendBase::Event FrontendBase::close_lines(std::string_view lines,
                                              std::string_view bye_prefix) {
  // The log says what Dovecot's does, whatever the protocol's wording.
  if (lines.find("Too many invalid") != std::string_view::npos)
    set_close_reason("Too many invalid commands");
  else if (lines.starts_with(bye_prefix))
    set_close_reason(lines.substr(bye_prefix.size()));
  output_ += lines;
  return closed();
}

bool FrontendBase::invalid_limit_reached() {
  return settings_.max_invalid_commands > 0 &&
         ++invalid_commands_ >= settings_.max_invalid_commands;
}

}  // namespace portier::protocols::common
