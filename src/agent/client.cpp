#include "agent/client.hpp"

#include <vector>

namespace harmar::agent {
namespace {

struct Sink {
  std::string* out;
  std::size_t max;
  bool truncated = false;
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  std::size_t len = size * n;
  std::size_t room = s->max > s->out->size() ? s->max - s->out->size() : 0;
  if (len > room) s->truncated = true;
  s->out->append(data, std::min(len, room));
  return len;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* h = static_cast<std::string*>(user);
  if (h && h->size() < 64 * 1024) h->append(data, size * n);
  return size * n;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* abort = static_cast<const std::atomic<bool>*>(user);
  return abort && abort->load() ? 1 : 0;
}

}  // namespace

HttpClient::HttpClient(std::string base_url, std::string bearer)
    : base_(std::move(base_url)), bearer_(std::move(bearer)), curl_(curl_easy_init()) {
  while (!base_.empty() && base_.back() == '/') base_.pop_back();
}

HttpClient::~HttpClient() { curl_easy_cleanup(curl_); }

HttpResult HttpClient::raw(const std::string& method, const std::string& url, const std::vector<std::string>& headers,
                           const std::string& body, long timeout_ms, std::size_t max_body,
                           const std::atomic<bool>* abort, std::string* response_headers) {
  HttpResult r;
  CURL* c = curl_;
  curl_easy_reset(c);
  curl_slist* hs = nullptr;
  for (const auto& h : headers) hs = curl_slist_append(hs, h.c_str());
  Sink sink{&r.body, max_body};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, response_headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms, 10'000L));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, abort);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "harmar-agent");
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(hs);
  if (rc != CURLE_OK) {
    r.aborted = rc == CURLE_ABORTED_BY_CALLBACK;
    r.error = curl_easy_strerror(rc);
    r.status = 0;
    return r;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  return r;
}

HttpResult HttpClient::request(const char* method, const std::string& path, const std::string& body, long timeout_ms,
                               const std::atomic<bool>* abort) {
  std::vector<std::string> headers{"Content-Type: application/json", "Accept: application/json"};
  if (!bearer_.empty()) headers.push_back("Authorization: Bearer " + bearer_);
  return raw(method, base_ + path, headers, body, timeout_ms, 16 << 20, abort, nullptr);
}

}  // namespace harmar::agent
