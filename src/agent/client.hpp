#pragma once
// The agent's HTTP client: libcurl easy, blocking, one per thread (keep-alive reuses its
// connection). A call can be abandoned from another thread through `abort`.
#include <curl/curl.h>

#include <atomic>
#include <optional>
#include <string>

namespace harmar::agent {

struct HttpResult {
  long status = 0;        // 0: no HTTP answer (connection refused, timeout, aborted)
  std::string body;
  std::string error;      // transport failure, when status == 0
  bool aborted = false;
  bool ok() const { return status >= 200 && status < 300; }
};

class HttpClient {
 public:
  HttpClient(std::string base_url, std::string bearer);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  void set_bearer(std::string bearer) { bearer_ = std::move(bearer); }
  // `path` starts with "/". A JSON body when non-empty. Stops early when *abort becomes true.
  HttpResult request(const char* method, const std::string& path, const std::string& body, long timeout_ms,
                     const std::atomic<bool>* abort = nullptr);
  // Any URL, any headers (the http task type): headers as "Name: value" lines.
  HttpResult raw(const std::string& method, const std::string& url, const std::vector<std::string>& headers,
                 const std::string& body, long timeout_ms, std::size_t max_body, const std::atomic<bool>* abort,
                 std::string* response_headers);

 private:
  std::string base_;
  std::string bearer_;
  CURL* curl_;
};

}  // namespace harmar::agent
