// POP3 plug-in text helpers.

#include "protocols/pop3/text.hpp"

namespace portier::protocols::pop3 {

bool xclient_value_ok(std::string_view v) {
  return !v.empty() && core::visible_ascii(v);
}

}  // namespace portier::protocols::pop3
