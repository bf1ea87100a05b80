#include "admin/http.hpp"

#include <http_parser.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace portier::admin {

namespace {
constexpr size_t kMaxHeaders = 64;

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
  }
}
}  // namespace

const std::string* Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return &v;
  return nullptr;
}

std::string_view Request::path() const {
  std::string_view t = target;
  return t.substr(0, t.find('?'));
}

struct RequestParser::Impl {
  http_parser parser;
  http_parser_settings settings;
  RequestParser* self = nullptr;
  bool in_value = false;  // the last header callback was a value

  static RequestParser& of(http_parser* p) { return *static_cast<Impl*>(p->data)->self; }
  static Impl& impl(http_parser* p) { return *static_cast<Impl*>(p->data); }

  static int on_url(http_parser* p, const char* at, size_t n) {
    of(p).req_.target.append(at, n);
    return 0;
  }
  static int on_header_field(http_parser* p, const char* at, size_t n) {
    auto& r = of(p).req_;
    if (impl(p).in_value || r.headers.empty()) {
      if (r.headers.size() >= kMaxHeaders) return fail(p, 413, "too many headers");
      r.headers.emplace_back();
    }
    impl(p).in_value = false;
    r.headers.back().first += lower(std::string_view(at, n));
    return 0;
  }
  static int on_header_value(http_parser* p, const char* at, size_t n) {
    auto& r = of(p).req_;
    if (r.headers.empty()) return fail(p, 400, "header value without a name");
    impl(p).in_value = true;
    r.headers.back().second.append(at, n);
    return 0;
  }
  static int on_headers_complete(http_parser* p) {
    auto& self = of(p);
    if (p->http_major != 1) return fail(p, 505, "only HTTP/1.x");
    if (p->flags & F_CHUNKED) return fail(p, 411, "chunked bodies are not accepted");
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > self.max_size_)
      return fail(p, 413, "body too large");
    self.req_.method = http_method_str(static_cast<http_method>(p->method));
    return 0;
  }
  static int on_body(http_parser* p, const char* at, size_t n) {
    of(p).req_.body.append(at, n);
    return 0;
  }
  static int on_message_complete(http_parser* p) {
    auto& self = of(p);
    self.req_.keep_alive = http_should_keep_alive(p) != 0;
    self.state_ = State::Complete;
    http_parser_pause(p, 1);  // stop here: what follows is the next request
    return 0;
  }
  static int fail(http_parser* p, int status, std::string text) {
    auto& self = of(p);
    self.error_status_ = status;
    self.error_text_ = std::move(text);
    return -1;  // aborts http_parser_execute (on_headers_complete: 1 would mean "no body")
  }
};

RequestParser::RequestParser(size_t max_size) : impl_(std::make_unique<Impl>()), max_size_(max_size) {
  impl_->self = this;
  http_parser_settings_init(&impl_->settings);
  impl_->settings.on_url = &Impl::on_url;
  impl_->settings.on_header_field = &Impl::on_header_field;
  impl_->settings.on_header_value = &Impl::on_header_value;
  impl_->settings.on_headers_complete = &Impl::on_headers_complete;
  impl_->settings.on_body = &Impl::on_body;
  impl_->settings.on_message_complete = &Impl::on_message_complete;
  reset();
}

RequestParser::~RequestParser() = default;

void RequestParser::reset() {
  http_parser_init(&impl_->parser, HTTP_REQUEST);
  impl_->parser.data = impl_.get();
  impl_->in_value = false;
  req_ = Request{};
  state_ = State::NeedMore;
  error_status_ = 0;
  error_text_.clear();
  used_ = 0;
}

size_t RequestParser::feed(std::string_view data) {
  if (state_ != State::NeedMore || data.empty()) return 0;
  // Never look at more than the request may still take: a request that
  // needs more is too large, whatever the parser would say of it.
  const size_t room = max_size_ - used_;
  const bool over = data.size() > room;
  if (room == 0) {  // (a zero-length execute would mean end of stream to the parser)
    state_ = State::Error;
    error_status_ = 413;
    error_text_ = "request too large";
    return 0;
  }
  if (over) data = data.substr(0, room);
  size_t n = http_parser_execute(&impl_->parser, &impl_->settings, data.data(), data.size());
  used_ += n;
  auto err = HTTP_PARSER_ERRNO(&impl_->parser);
  if (state_ == State::Complete) return n;  // paused at the end of a request
  if (err != HPE_OK) {
    state_ = State::Error;
    if (error_status_ == 0) {
      error_status_ = err == HPE_HEADER_OVERFLOW ? 413 : 400;
      error_text_ = http_errno_description(err);
    }
    return n;
  }
  if (over) {
    state_ = State::Error;
    error_status_ = 413;
    error_text_ = "request too large";
  }
  return n;
}

std::string response(int status, std::string_view content_type, std::string_view body,
                     bool keep_alive, std::string_view extra_headers) {
  return fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n"
      "Connection: {}\r\n{}\r\n{}",
      status, reason_phrase(status), content_type, body.size(), keep_alive ? "keep-alive" : "close",
      extra_headers, body);
}

}  // namespace portier::admin
