#pragma once
// AWS Signature Version 4 (the signing S3 and S3-compatible servers accept), computed with
// OpenSSL's SHA-256 and HMAC. Only the header form ("Authorization: AWS4-HMAC-SHA256 ..."), which is
// what the S3 blob backend sends; presigned URLs are not needed yet.
//
// Reference: https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html and the
// S3 examples in https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html.
#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace harmar::store::sigv4 {

struct Credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // sent as x-amz-security-token when set (temporary credentials)
};

struct Request {
  std::string method;
  std::string canonical_uri;  // the path as sent, already percent-encoded (see uri_encode)
  std::vector<std::pair<std::string, std::string>> query;    // raw names and values, any order
  std::vector<std::pair<std::string, std::string>> headers;  // every header to sign; must hold host
  std::string payload_hash;  // lowercase hex sha256 of the body, or "UNSIGNED-PAYLOAD"
};

struct Signature {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;  // "host;x-amz-date"
  std::string signature;       // lowercase hex
  std::string authorization;   // the Authorization header's value
};

// Signs `req` at `amz_date` ("YYYYMMDDTHHMMSSZ", the value of its x-amz-date header).
Signature sign(const Request& req, const Credentials& creds, std::string_view region, std::string_view service,
               std::string_view amz_date);

// "YYYYMMDDTHHMMSSZ" in UTC.
std::string amz_date(std::chrono::system_clock::time_point t);

// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters stay, every other byte is
// %XX (upper case); '/' stays when `keep_slash` (object key paths).
std::string uri_encode(std::string_view s, bool keep_slash);

std::string sha256_hex(std::string_view data);
// Incremental sha256 (OpenSSL EVP), for bodies hashed as they stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view data);
  std::string hex();  // lowercase; once, at the end

 private:
  void* ctx_;  // EVP_MD_CTX
};
std::string lower(std::string_view s);  // ASCII
std::string hmac_sha256(std::string_view key, std::string_view data);  // raw 32 bytes
std::string hex(std::string_view bytes);

}  // namespace harmar::store::sigv4
