#include "core/error.hpp"

#include <boost/json.hpp>

namespace harmar {

Error Error::validation(std::string detail, std::vector<FieldError> errors) {
  return {422, "validation_failed", std::move(detail), std::move(errors)};
}
Error Error::bad_request(std::string code, std::string detail) { return {400, std::move(code), std::move(detail)}; }
Error Error::unauthorized(std::string detail, std::string code) { return {401, std::move(code), std::move(detail)}; }
Error Error::forbidden(std::string detail) { return {403, "forbidden", std::move(detail)}; }
Error Error::not_found(std::string detail) { return {404, "not_found", std::move(detail)}; }
Error Error::conflict(std::string detail, std::string code) { return {409, std::move(code), std::move(detail)}; }
Error Error::precondition_failed(std::string detail) { return {412, "precondition_failed", std::move(detail)}; }
Error Error::payload_too_large(std::string detail) { return {413, "payload_too_large", std::move(detail)}; }
Error Error::rate_limited(int retry_after_s, std::string detail) {
  Error e{429, "rate_limited", std::move(detail)};
  e.retry_after_s = retry_after_s > 0 ? retry_after_s : 1;
  return e;
}
Error Error::unavailable(std::string detail, int retry_after_s) {
  Error e{503, "unavailable", std::move(detail)};
  e.retry_after_s = retry_after_s > 0 ? retry_after_s : 1;
  return e;
}
Error Error::internal(std::string detail) { return {500, "internal", std::move(detail)}; }

const char* status_title(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string problem_json(const Error& e) {
  boost::json::object o;
  o["type"] = "about:blank";
  o["title"] = status_title(e.status);
  o["status"] = e.status;
  o["detail"] = e.detail;
  o["code"] = e.code;
  if (!e.errors.empty()) {
    boost::json::array a;
    for (const auto& f : e.errors) a.push_back(boost::json::object{{"field", f.field}, {"message", f.message}});
    o["errors"] = std::move(a);
  }
  return boost::json::serialize(o);
}

}  // namespace harmar
