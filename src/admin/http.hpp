#pragma once
// A bounded, incremental HTTP/1.1 request parser for the admin API, on top
// of Debian's http-parser (the Node.js parser, libhttp-parser). Sans-I/O:
// feed() the bytes as they arrive; it stops at the end of each request, so
// pipelined bytes stay for the next one. Limits: the whole request (request
// line, headers, body) at most `max_size` bytes (413), at most 64 headers,
// a body only with Content-Length (chunked bodies are refused with 411).
//
// Owns: the parser state and the request being read. Uses: http-parser.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portier::admin {

struct Request {
  std::string method;  // "GET", "POST"
  std::string target;  // "/doveadm/v1" (query string included)
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  bool keep_alive = false;
  /// The first header named `name` (lower case), or nullptr.
  const std::string* header(std::string_view name) const;
  /// The path part of the target (without "?query").
  std::string_view path() const;
};

class RequestParser {
 public:
  enum class State { NeedMore, Complete, Error };

  explicit RequestParser(size_t max_size);
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  /// Parse `data`; returns how many bytes were used (less than given when a
  /// request completed: the rest belongs to the next one).
  size_t feed(std::string_view data);
  State state() const { return state_; }
  /// After Complete: the request (moved out); then reset() for the next one.
  Request take() { return std::move(req_); }
  /// After Error: the HTTP status to answer (400, 411, 413, 505) and why.
  int error_status() const { return error_status_; }
  const std::string& error_text() const { return error_text_; }
  /// Ready for the next request on the same connection.
  void reset();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Request req_;
  State state_ = State::NeedMore;
  int error_status_ = 0;
  std::string error_text_;
  size_t max_size_;
  size_t used_ = 0;  // bytes of the current request so far
  friend struct Impl;
};

/// "HTTP/1.1 <status> <reason>" + headers + body, with Content-Length.
std::string response(int status, std::string_view content_type, std::string_view body,
                     bool keep_alive, std::string_view extra_headers = {});

}  // namespace portier::admin
