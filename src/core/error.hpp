#pragma once
// Expected failures as values. An Error becomes an RFC 9457 problem+json at the HTTP edge; its
// `code` is the stable word clients switch on (see shared/API.md).
#include <string>
#include <vector>

namespace harmar {

struct FieldError {
  std::string field;
  std::string message;
};

struct Error {
  int status = 500;
  std::string code = "internal";
  std::string detail;
  std::vector<FieldError> errors;
  int retry_after_s = 0;  // > 0 adds Retry-After (429, 503)

  static Error validation(std::string detail, std::vector<FieldError> errors = {});
  static Error bad_request(std::string code, std::string detail);
  static Error unauthorized(std::string detail = "authentication required", std::string code = "unauthorized");
  static Error forbidden(std::string detail = "not allowed");
  static Error not_found(std::string detail = "not found");
  static Error conflict(std::string detail, std::string code = "conflict");
  static Error precondition_failed(std::string detail);
  static Error payload_too_large(std::string detail);
  static Error rate_limited(int retry_after_s, std::string detail = "too many requests");
  static Error unavailable(std::string detail, int retry_after_s = 1);
  static Error internal(std::string detail = "internal error");
};

// The RFC 9110 reason phrase, used as the problem `title`; "Unknown" for codes we never send.
const char* status_title(int status);

// Serialises an Error as the problem+json body.
std::string problem_json(const Error& e);

}  // namespace harmar
