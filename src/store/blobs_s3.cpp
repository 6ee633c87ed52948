// The S3 blob backend (see blobs_s3.hpp): URL parsing, one signed libcurl request at a time on the
// blocking pool with bounded retries, and the store, writer and reader built on it.
#include "store/blobs_s3.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <mutex>

#include "core/blocking.hpp"
#include "core/log.hpp"

namespace harmar::store {

namespace {

constexpr std::size_t kMinPartSize = 5 << 20;  // S3's minimum for every part but the last
constexpr std::size_t kMaxPartSize = 64 << 20;
constexpr int kMaxParts = 10000;
constexpr std::size_t kReadWindow = 4 << 20;
constexpr std::size_t kMaxErrorBody = 64 << 10;
constexpr std::size_t kMaxListBody = 8 << 20;  // 1000 keys of 512 bytes with their fields
constexpr int kMaxAttempts = 3;
constexpr const char* kShaMeta = "x-amz-meta-sha256";
constexpr const char* kEmptySha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::shared_ptr<spdlog::logger> logger() { return log::get("store"); }

Error range_not_satisfiable(std::string detail) { return Error{416, "range_not_satisfiable", std::move(detail)}; }
Error unavailable(std::string detail) { return Error{503, "blob_store_unavailable", std::move(detail), {}, 1}; }
Error upstream(std::string code, std::string detail) { return Error{502, std::move(code), std::move(detail)}; }

Error bad_key() {
  return Error::validation("invalid blob key", {{"key", "must be 1-512 characters of [A-Za-z0-9._/-] in "
                                                        "segments that are not empty and do not start with '.'"}});
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

using sigv4::lower;

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// "8MiB", "5242880", "16M" → bytes; 0 when unreadable.
std::size_t parse_size(std::string_view s) {
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || n == 0) return 0;
  std::string unit = lower(std::string_view(end, s.data() + s.size() - end));
  if (unit.empty() || unit == "b") return n;
  if (unit == "k" || unit == "kib" || unit == "kb") return n << 10;
  if (unit == "m" || unit == "mib" || unit == "mb") return n << 20;
  return 0;
}

bool valid_prefix_part(std::string_view p) { return p.empty() || valid_blob_key(p); }

// The text of the first <tag>…</tag> in `xml` (S3 answers are flat enough for this), entities
// decoded; nullopt when absent.
std::optional<std::string> xml_text(std::string_view xml, std::string_view tag, std::size_t* from = nullptr) {
  std::string open = "<" + std::string(tag) + ">", close = "</" + std::string(tag) + ">";
  std::size_t start = xml.find(open, from ? *from : 0);
  if (start == std::string_view::npos) return std::nullopt;
  start += open.size();
  std::size_t end = xml.find(close, start);
  if (end == std::string_view::npos) return std::nullopt;
  if (from) *from = end + close.size();
  std::string_view raw = xml.substr(start, end - start);
  std::string out;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '&') {
      out.push_back(raw[i]);
      continue;
    }
    std::size_t semi = raw.find(';', i);
    std::string_view ent = raw.substr(i, semi == std::string_view::npos ? 1 : semi - i + 1);
    if (ent == "&amp;") out.push_back('&');
    else if (ent == "&lt;") out.push_back('<');
    else if (ent == "&gt;") out.push_back('>');
    else if (ent == "&quot;") out.push_back('"');
    else if (ent == "&apos;") out.push_back('\'');
    else out += ent;
    i += ent.size() - 1;
  }
  return out;
}

// "2013-09-17T18:07:53.000Z" → Unix ms; 0 when unreadable.
int64_t parse_iso8601_ms(std::string_view s) {
  std::tm tm{};
  int ms = 0;
  std::string str(s);
  const char* rest = strptime(str.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return 0;
  if (*rest == '.') ms = std::atoi(std::string(rest + 1, std::min<std::size_t>(3, std::strlen(rest + 1))).c_str());
  return int64_t{timegm(&tm)} * 1000 + ms;
}

// "Wed, 12 Oct 2009 17:50:00 GMT" → Unix ms; 0 when unreadable.
int64_t parse_http_date_ms(std::string_view s) {
  std::tm tm{};
  std::string str(s);
  if (!strptime(str.c_str(), "%a, %d %b %Y %H:%M:%S", &tm)) return 0;
  return int64_t{timegm(&tm)} * 1000;
}

// --- one request --------------------------------------------------------------------------------

using Headers = std::vector<std::pair<std::string, std::string>>;

struct S3Call {
  std::string method = "GET";
  std::string object;  // the full object key; "" for the bucket
  Headers query;
  Headers headers;        // signed, besides host and the x-amz-* ones added here
  std::string_view body;  // must outlive the call
  std::string payload_hash;  // computed from body when empty
  std::size_t max_response = kMaxErrorBody;
  // Where a 2xx body goes instead of S3Response::body: a buffer its owner reuses, so reading a
  // large blob does not allocate a window per request (on whichever pool thread runs it, where
  // glibc would keep each freed window in that thread's arena).
  std::string* sink = nullptr;
  bool retry = true;  // idempotent: retried on 5xx and transport errors
};

struct S3Response {
  int status = 0;
  Headers headers;  // names lower-cased
  std::string body;
  std::string header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (k == name) return v;
    return {};
  }
  std::string error_code() const { return xml_text(body, "Code").value_or(""); }
};

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// One easy handle per blocking-pool thread, so connections to the server are kept alive.
CURL* thread_handle() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  thread_local std::unique_ptr<CURL, CurlDeleter> handle(curl_easy_init());
  if (handle) curl_easy_reset(handle.get());
  return handle.get();
}

struct BodySink {
  std::string* out;
  std::size_t max;
  bool too_large = false;
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<BodySink*>(user);
  size_t len = size * n;
  if (sink->out->size() + len > sink->max) {
    sink->too_large = true;
    return 0;
  }
  sink->out->append(data, len);
  return len;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<S3Response*>(user);
  size_t len = size * n;
  std::string_view line(data, len);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  if (line.rfind("HTTP/", 0) == 0) {
    r->headers.clear();  // after a 100 Continue
    return len;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos || r->headers.size() >= 100) return len;
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  r->headers.emplace_back(lower(line.substr(0, colon)), std::string(value));
  return len;
}

std::string describe(const S3Options& o) { return "S3 bucket '" + o.bucket + "' at " + o.host; }

// Performs `call` once, synchronously (on the blocking pool).
Result<S3Response> perform_once(const S3Options& o, const S3Call& call) {
  S3Target target = s3_target(o, call.object);
  std::string payload_hash = call.payload_hash.empty() ? sigv4::sha256_hex(call.body) : call.payload_hash;
  std::string date = sigv4::amz_date(std::chrono::system_clock::now());
  sigv4::Request req;
  req.method = call.method;
  req.canonical_uri = target.canonical_uri;
  req.query = call.query;
  req.headers = call.headers;
  req.headers.emplace_back("host", target.host);
  req.headers.emplace_back("x-amz-date", date);
  req.headers.emplace_back("x-amz-content-sha256", payload_hash);
  if (!o.creds.session_token.empty()) req.headers.emplace_back("x-amz-security-token", o.creds.session_token);
  req.payload_hash = payload_hash;
  sigv4::Signature sig = sigv4::sign(req, o.creds, o.region, "s3", date);

  std::string url = target.url;
  for (std::size_t i = 0; i < call.query.size(); ++i) {
    url += i == 0 ? "?" : "&";
    url += sigv4::uri_encode(call.query[i].first, false) + "=" + sigv4::uri_encode(call.query[i].second, false);
  }
  std::unique_ptr<curl_slist, SlistDeleter> list;
  auto add = [&](const std::string& line) {
    curl_slist* head = curl_slist_append(list.get(), line.c_str());
    if (head && !list) list.reset(head);
  };
  for (const auto& [k, v] : req.headers) add(k + ": " + v);
  add("Authorization: " + sig.authorization);
  add("Expect:");  // no 100-continue round trip
  bool has_type = std::any_of(call.headers.begin(), call.headers.end(),
                              [](const auto& h) { return lower(h.first) == "content-type"; });
  if (!has_type) add("Content-Type: application/octet-stream");

  CURL* c = thread_handle();
  if (!c) return Error::internal("curl_easy_init failed");
  S3Response resp;
  if (call.sink) call.sink->clear();  // a retry starts over
  BodySink sink{call.sink ? call.sink : &resp.body, call.max_response};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(o.timeout.count()));
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &resp);
  if (call.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (call.method == "PUT" || call.method == "POST") {
    // POSTFIELDS does not copy: the body is sent from the caller's buffer.
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, call.body.empty() ? "" : call.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(call.body.size()));
    if (call.method == "PUT") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
  } else if (call.method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, call.method.c_str());
  }
  CURLcode rc = curl_easy_perform(c);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  if (rc != CURLE_OK) {
    if (sink.too_large) return upstream("blob_store_error", describe(o) + " sent a larger answer than expected");
    if (rc == CURLE_OPERATION_TIMEDOUT) return unavailable(describe(o) + " did not answer in time");
    return unavailable("cannot reach " + describe(o) + ": " + curl_easy_strerror(rc));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  resp.status = static_cast<int>(status);
  if (call.sink && (resp.status < 200 || resp.status > 299)) resp.body = std::move(*call.sink);  // an error to read
  return resp;
}

// The error an unexpected answer stands for; never quotes credentials or signatures.
Error answer_error(const S3Options& o, const S3Response& r, std::string_view what, std::string_view key) {
  std::string code = r.error_code();
  std::string message = xml_text(r.body, "Message").value_or("");
  std::string told = code.empty() ? "HTTP " + std::to_string(r.status) : code;
  if (!message.empty()) told += ": " + message;
  if (r.status == 404 && code == "NoSuchBucket") {
    return upstream("blob_store_misconfigured", "the " + describe(o) + " does not exist");
  }
  if (r.status == 404 && code != "NoSuchUpload") return Error::not_found("no blob " + std::string(key));
  if (r.status == 403 || r.status == 401) {
    return upstream("blob_store_auth_failed", "the " + describe(o) + " refused our credentials (" + told +
                                                  "): check the access key and secret of the blobs URL");
  }
  if (r.status == 412) return Error::conflict("blob " + std::string(key) + " changed while it was read", "blob_changed");
  if (r.status == 416) return range_not_satisfiable("the range is past the end of blob " + std::string(key));
  if (r.status >= 500) return unavailable("the " + describe(o) + " failed to " + std::string(what) + " (" + told + ")");
  return upstream("blob_store_error", "the " + describe(o) + " refused to " + std::string(what) + " (" + told + ")");
}

// The shared part of the store, writers and readers: options and the request loop.
class S3Client : public std::enable_shared_from_this<S3Client> {
 public:
  explicit S3Client(S3Options opts) : opts_(std::move(opts)) {}
  const S3Options& opts() const { return opts_; }
  std::string object(std::string_view key) const { return opts_.prefix + std::string(key); }

  // Performs `call` on the blocking pool; idempotent calls are tried up to kMaxAttempts times
  // on 5xx answers and transport failures, 200 ms then 800 ms apart.
  asio::awaitable<Result<S3Response>> request(const S3Call& call) {
    for (int attempt = 1;; ++attempt) {
      auto once = [this, &call] { return perform_once(opts_, call); };
      Result<S3Response> r = co_await run_blocking(once);
      bool transient = r.ok() ? r->status >= 500 : r.error().status == 503;
      if (!transient || !call.retry || attempt >= kMaxAttempts) co_return r;
      asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(200 << (2 * (attempt - 1))));
      co_await timer.async_wait(asio::use_awaitable);
    }
  }

  Result<S3Response> request_sync(const S3Call& call) { return perform_once(opts_, call); }

  // HEAD: the blob's info and ETag.
  asio::awaitable<Result<std::pair<BlobInfo, std::string>>> head(std::string key) {
    S3Call call;
    call.method = "HEAD";
    call.object = object(key);
    HARMAR_CO_TRY(S3Response r, co_await request(call));
    if (r.status != 200) co_return answer_error(opts_, r, "stat a blob", key);
    BlobInfo info;
    info.key = key;
    info.size = std::atoll(r.header("content-length").c_str());
    info.sha256 = r.header(kShaMeta);
    if (info.sha256.size() != 64) info.sha256.clear();
    info.modified_ms = parse_http_date_ms(r.header("last-modified"));
    co_return std::make_pair(std::move(info), r.header("etag"));
  }

  // Fire and forget from a destructor: the multipart upload's parts are dropped on the server.
  void abort_in_background(std::string object, std::string upload_id) {
    asio::post(blocking_pool(), [self = shared_from_this(), object = std::move(object), id = std::move(upload_id)] {
      S3Call call;
      call.method = "DELETE";
      call.object = object;
      call.query = {{"uploadId", id}};
      auto r = self->request_sync(call);
      if (!r.ok() || (r->status != 204 && r->status != 200 && r->status != 404)) {
        logger()->warn("cannot abort the multipart upload of blob {}: {}", object,
                       r.ok() ? "HTTP " + std::to_string(r->status) + " " + r->error_code() : r.error().detail);
      }
    });
  }

 private:
  S3Options opts_;
};

// --- writer -------------------------------------------------------------------------------------

class S3BlobWriter final : public BlobWriter {
 public:
  S3BlobWriter(std::shared_ptr<S3Client> client, std::string key)
      : client_(std::move(client)), key_(std::move(key)), object_(client_->object(key_)) {}

  ~S3BlobWriter() override {
    if (!upload_id_.empty()) client_->abort_in_background(object_, upload_id_);
  }

  asio::awaitable<Status> write(std::string_view chunk) override {
    if (auto st = usable(); !st.ok()) co_return st;
    const std::size_t part = client_->opts().part_size;
    size_ += static_cast<int64_t>(chunk.size());
    while (!chunk.empty()) {
      if (buffer_.capacity() < part) buffer_.reserve(part);
      std::size_t take = std::min(chunk.size(), part - buffer_.size());
      buffer_.append(chunk.substr(0, take));
      chunk.remove_prefix(take);
      if (buffer_.size() == part) {
        Status st = co_await send_part();
        if (!st.ok()) co_return fail(std::move(st).error());
      }
    }
    co_return Status{};
  }

  asio::awaitable<Result<BlobInfo>> commit() override {
    if (auto st = usable(); !st.ok()) co_return st.error();
    Result<BlobInfo> r = Error::internal();
    if (upload_id_.empty()) {
      r = co_await put_whole();
    } else {
      r = co_await complete();
    }
    if (!r.ok()) co_return fail(std::move(r).error());
    committed_ = true;
    co_return r;
  }

 private:
  // Hashes the buffer into the blob's sha256 and returns the buffer's own sha256, off the loop.
  asio::awaitable<std::string> hash_buffer() {
    auto hash = [this] {
      sha_.update(buffer_);
      return sigv4::sha256_hex(buffer_);
    };
    co_return co_await run_blocking(hash);
  }

  asio::awaitable<Status> send_part() {
    if (upload_id_.empty()) {
      S3Call create;
      create.method = "POST";
      create.object = object_;
      create.query = {{"uploads", ""}};
      create.retry = false;
      HARMAR_CO_TRY(S3Response r, co_await client_->request(create));
      std::optional<std::string> id = xml_text(r.body, "UploadId");
      if (r.status != 200 || !id || id->empty()) co_return answer_error(client_->opts(), r, "start an upload", key_);
      upload_id_ = *id;
    }
    if (etags_.size() >= static_cast<std::size_t>(kMaxParts)) {
      co_return Error::payload_too_large("blob " + key_ + " has more than " + std::to_string(kMaxParts) + " parts");
    }
    std::string part_sha = co_await hash_buffer();
    S3Call call;
    call.method = "PUT";
    call.object = object_;
    call.query = {{"partNumber", std::to_string(etags_.size() + 1)}, {"uploadId", upload_id_}};
    call.body = buffer_;
    call.payload_hash = part_sha;
    HARMAR_CO_TRY(S3Response r, co_await client_->request(call));
    if (r.status != 200 || r.header("etag").empty()) co_return answer_error(client_->opts(), r, "store a part", key_);
    etags_.push_back(r.header("etag"));
    buffer_.clear();
    co_return Status{};
  }

  asio::awaitable<Result<BlobInfo>> put_whole() {
    std::string sha = co_await hash_buffer();
    S3Call call;
    call.method = "PUT";
    call.object = object_;
    call.headers = {{kShaMeta, sha}};
    call.body = buffer_;
    call.payload_hash = sha;
    HARMAR_CO_TRY(S3Response r, co_await client_->request(call));
    if (r.status != 200) co_return answer_error(client_->opts(), r, "store a blob", key_);
    release_buffer();
    co_return BlobInfo{key_, size_, sha, now_ms()};
  }

  asio::awaitable<Result<BlobInfo>> complete() {
    if (!buffer_.empty()) {
      Status st = co_await send_part();
      if (!st.ok()) co_return std::move(st).error();
    }
    release_buffer();
    std::string sha = sha_.hex();
    std::string xml = "<CompleteMultipartUpload>";
    for (std::size_t i = 0; i < etags_.size(); ++i) {
      xml += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" + etags_[i] + "</ETag></Part>";
    }
    xml += "</CompleteMultipartUpload>";
    S3Call call;
    call.method = "POST";
    call.object = object_;
    call.query = {{"uploadId", upload_id_}};
    call.headers = {{"content-type", "application/xml"}};
    call.body = xml;
    call.retry = false;
    HARMAR_CO_TRY(S3Response r, co_await client_->request(call));
    // S3 may answer 200 and report the failure in the body.
    if (r.status != 200 || r.body.find("<Error>") != std::string::npos) {
      co_return answer_error(client_->opts(), r, "complete an upload", key_);
    }
    upload_id_.clear();  // nothing left to abort
    co_await record_sha(sha);
    co_return BlobInfo{key_, size_, sha, now_ms()};
  }

  // The sha256 of a multipart blob is known only at the end, after its metadata was written: a
  // copy onto itself replaces the metadata. Best effort: without it stat() reports no sha256.
  asio::awaitable<void> record_sha(const std::string& sha) {
    const S3Options& o = client_->opts();
    S3Call copy;
    copy.method = "PUT";
    copy.object = object_;
    copy.headers = {{"x-amz-copy-source", "/" + o.bucket + "/" + sigv4::uri_encode(object_, true)},
                    {"x-amz-metadata-directive", "REPLACE"},
                    {kShaMeta, sha}};
    copy.payload_hash = kEmptySha;
    auto r = co_await client_->request(copy);
    if (!r.ok() || r->status != 200 || r->body.find("<Error>") != std::string::npos) {
      logger()->warn("blob {} is stored but its sha256 could not be recorded: {}", key_,
                     r.ok() ? "HTTP " + std::to_string(r->status) + " " + r->error_code() : r.error().detail);
    }
  }

  void release_buffer() {
    buffer_.clear();
    buffer_.shrink_to_fit();
  }

  std::shared_ptr<S3Client> client_;
  std::string key_;
  std::string object_;
  std::string buffer_;  // at most one part
  sigv4::Sha256 sha_;
  int64_t size_ = 0;
  std::string upload_id_;
  std::vector<std::string> etags_;
};

// --- reader -------------------------------------------------------------------------------------

class S3BlobReader final : public BlobReader {
 public:
  S3BlobReader(std::shared_ptr<S3Client> client, BlobInfo info, std::string etag, int64_t offset, int64_t end)
      : client_(std::move(client)), info_(std::move(info)), etag_(std::move(etag)), pos_(offset), end_(end) {}

  asio::awaitable<Result<std::string>> read(std::size_t max) override {
    if (max == 0) co_return Error::validation("blob read size must be positive");
    if (taken_ == window_.size()) {
      if (pos_ >= end_) co_return std::string();
      Status st = co_await fetch();
      if (!st.ok()) co_return std::move(st).error();
    }
    std::size_t n = std::min(max, window_.size() - taken_);
    std::string out = window_.substr(taken_, n);
    taken_ += n;
    co_return out;
  }

  const BlobInfo& info() const override { return info_; }

 private:
  // The next window of the range, only from the version of the blob seen at open.
  asio::awaitable<Status> fetch() {
    std::size_t n = static_cast<std::size_t>(std::min<int64_t>(kReadWindow, end_ - pos_));
    taken_ = 0;
    S3Call call;
    call.object = client_->object(info_.key);
    // s3rver answers "bytes=0-0" with the whole blob: ask for two bytes and keep one.
    std::size_t asked = pos_ == 0 && n == 1 && info_.size > 1 ? 2 : n;
    call.headers = {{"range", "bytes=" + std::to_string(pos_) + "-" + std::to_string(pos_ + static_cast<int64_t>(asked) - 1)}};
    if (!etag_.empty()) call.headers.emplace_back("if-match", etag_);
    call.max_response = std::max(asked, kMaxErrorBody);
    window_.reserve(asked);  // once: later windows reuse it
    call.sink = &window_;
    auto got = co_await client_->request(call);
    if (!got.ok()) {
      window_.clear();
      co_return std::move(got).error();
    }
    S3Response& r = *got;
    if (r.status != 206 && !(r.status == 200 && pos_ == 0 && static_cast<int64_t>(n) == info_.size)) {
      window_.clear();
      co_return answer_error(client_->opts(), r, "read a blob", info_.key);
    }
    if (asked != n && window_.size() == asked) window_.resize(n);
    // Servers without If-Match (s3rver) still tell a replaced blob by its ETag.
    if (window_.size() != n || (!etag_.empty() && !r.header("etag").empty() && r.header("etag") != etag_)) {
      window_.clear();
      co_return Error::conflict("blob " + info_.key + " changed while it was read", "blob_changed");
    }
    pos_ += static_cast<int64_t>(n);
    co_return Status{};
  }

  std::shared_ptr<S3Client> client_;
  BlobInfo info_;
  std::string etag_;
  int64_t pos_;
  int64_t end_;
  std::string window_;
  std::size_t taken_ = 0;
};

// --- store --------------------------------------------------------------------------------------

class S3BlobStore final : public BlobStore {
 public:
  explicit S3BlobStore(std::shared_ptr<S3Client> client) : client_(std::move(client)) {}

  asio::awaitable<Result<std::unique_ptr<BlobWriter>>> create(std::string key) override {
    if (!valid_blob_key(key)) co_return bad_key();
    co_return std::unique_ptr<BlobWriter>(std::make_unique<S3BlobWriter>(client_, std::move(key)));
  }

  asio::awaitable<Result<std::unique_ptr<BlobReader>>> open(std::string key, int64_t offset,
                                                            std::optional<int64_t> length) override {
    if (!valid_blob_key(key)) co_return bad_key();
    if (offset < 0 || (length && *length < 0)) co_return Error::validation("blob range must not be negative");
    HARMAR_CO_TRY(auto head, co_await client_->head(key));
    BlobInfo& info = head.first;
    if (offset > info.size) {
      co_return range_not_satisfiable("offset " + std::to_string(offset) + " is past the end of blob " + key);
    }
    int64_t end = length && *length < info.size - offset ? offset + *length : info.size;
    co_return std::unique_ptr<BlobReader>(
        std::make_unique<S3BlobReader>(client_, std::move(info), std::move(head.second), offset, end));
  }

  asio::awaitable<Result<BlobInfo>> stat(std::string key) override {
    if (!valid_blob_key(key)) co_return bad_key();
    HARMAR_CO_TRY(auto head, co_await client_->head(key));
    co_return std::move(head.first);
  }

  asio::awaitable<Result<bool>> remove(std::string key) override {
    if (!valid_blob_key(key)) co_return bad_key();
    // DELETE answers 204 whether or not the object existed: ask first.
    auto existed = co_await client_->head(key);
    if (!existed.ok() && existed.error().status != 404) co_return std::move(existed).error();
    S3Call call;
    call.method = "DELETE";
    call.object = client_->object(key);
    HARMAR_CO_TRY(S3Response r, co_await client_->request(call));
    if (r.status != 204 && r.status != 200 && r.status != 404) {
      co_return answer_error(client_->opts(), r, "remove a blob", key);
    }
    co_return existed.ok();
  }

  asio::awaitable<Result<std::vector<BlobInfo>>> list(std::string prefix, std::size_t limit,
                                                      std::string start_after) override {
    if (!(prefix.empty() || valid_blob_key(prefix) || valid_blob_key(prefix + "x"))) {
      co_return Error::validation("invalid blob key prefix '" + prefix + "'");
    }
    if (start_after.size() > 1024) co_return Error::validation("start_after is too long");
    limit = std::min(limit, kMaxListLimit);
    std::vector<BlobInfo> out;
    const std::string& base = client_->opts().prefix;
    std::string token;
    while (out.size() < limit) {
      S3Call call;
      call.object = "";
      call.query = {{"list-type", "2"},
                    {"prefix", base + prefix},
                    {"max-keys", std::to_string(std::min<std::size_t>(1000, limit - out.size()))}};
      if (!token.empty()) {
        call.query.emplace_back("continuation-token", token);
      } else if (!start_after.empty()) {
        call.query.emplace_back("start-after", base + start_after);
      }
      call.max_response = kMaxListBody;
      HARMAR_CO_TRY(S3Response r, co_await client_->request(call));
      if (r.status != 200) co_return answer_error(client_->opts(), r, "list blobs", prefix);
      std::size_t from = 0;
      while (auto contents = xml_text(r.body, "Contents", &from)) {
        std::string object = xml_text(*contents, "Key").value_or("");
        if (!object.starts_with(base)) continue;
        std::string key = object.substr(base.size());
        if (!valid_blob_key(key)) continue;  // not one of ours
        if (out.size() >= limit) break;
        BlobInfo info;
        info.key = std::move(key);
        info.size = std::atoll(xml_text(*contents, "Size").value_or("0").c_str());
        info.modified_ms = parse_iso8601_ms(xml_text(*contents, "LastModified").value_or(""));
        out.push_back(std::move(info));  // a listing carries no metadata: sha256 stays empty
      }
      token = xml_text(r.body, "NextContinuationToken").value_or("");
      if (xml_text(r.body, "IsTruncated").value_or("false") != "true" || token.empty()) break;
    }
    co_return out;
  }

 private:
  std::shared_ptr<S3Client> client_;
};

}  // namespace

Result<S3Options> parse_s3_url(std::string_view url) {
  auto bad = [](std::string what) { return Error::validation("invalid S3 blob URL: " + what); };
  if (!url.starts_with("s3://")) return bad("it must start with s3://");
  std::string_view rest = url.substr(5);
  std::string_view query;
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  S3Options o;
  std::string_view authority = rest.substr(0, rest.find('/'));
  std::string_view path = authority.size() < rest.size() ? rest.substr(authority.size() + 1) : std::string_view();
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view user = authority.substr(0, at);
    authority = authority.substr(at + 1);
    auto colon = user.find(':');
    if (colon == std::string_view::npos) return bad("the user info must be ACCESS_KEY:SECRET");
    o.creds.access_key = percent_decode(user.substr(0, colon));
    o.creds.secret_key = percent_decode(user.substr(colon + 1));
  }
  if (auto colon = authority.rfind(':'); colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
    std::string_view port = authority.substr(colon + 1);
    int p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p <= 0 || p > 65535) return bad("bad port");
    o.port = p;
    authority = authority.substr(0, colon);
  }
  if (authority.empty()) return bad("it names no host");
  o.host = std::string(authority);
  std::string_view bucket = path.substr(0, path.find('/'));
  if (bucket.size() < 3 || bucket.size() > 63 ||
      !std::all_of(bucket.begin(), bucket.end(), [](char c) {
        return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' ||
               c == '.';
      })) {
    return bad("the path must start with a bucket name (3-63 characters of [a-z0-9.-])");
  }
  o.bucket = std::string(bucket);
  std::string_view prefix = bucket.size() < path.size() ? path.substr(bucket.size() + 1) : std::string_view();
  while (prefix.ends_with('/')) prefix.remove_suffix(1);
  if (!valid_prefix_part(prefix)) return bad("the key prefix after the bucket must be a valid blob key");
  if (!prefix.empty()) o.prefix = std::string(prefix) + "/";

  while (!query.empty()) {
    std::string_view pair = query.substr(0, query.find('&'));
    query.remove_prefix(std::min(query.size(), pair.size() + 1));
    auto eq = pair.find('=');
    std::string name(pair.substr(0, eq));
    std::string value = eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1));
    if (name == "region") {
      if (value.empty() || value.size() > 64) return bad("region must not be empty");
      o.region = value;
    } else if (name == "tls") {
      if (value != "0" && value != "1") return bad("tls must be 0 or 1");
      o.tls = value == "1";
    } else if (name == "style") {
      if (value != "path" && value != "virtual") return bad("style must be path or virtual");
      o.path_style = value == "path";
    } else if (name == "part_size") {
      o.part_size = parse_size(value);
      if (o.part_size < kMinPartSize || o.part_size > kMaxPartSize) return bad("part_size must be 5MiB..64MiB");
    } else if (name == "timeout_s") {
      int s = std::atoi(value.c_str());
      if (s < 1 || s > 3600) return bad("timeout_s must be 1..3600");
      o.timeout = std::chrono::seconds(s);
    } else if (name == "check") {
      if (value != "0" && value != "1") return bad("check must be 0 or 1");
      o.check = value == "1";
    } else {
      return bad("unknown parameter '" + name + "' (known: region, tls, style, part_size, timeout_s, check)");
    }
  }
  if (o.creds.access_key.empty()) {
    const char* key = std::getenv("AWS_ACCESS_KEY_ID");
    const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
    const char* token = std::getenv("AWS_SESSION_TOKEN");
    if (key && secret) {
      o.creds.access_key = key;
      o.creds.secret_key = secret;
      if (token) o.creds.session_token = token;
    }
  }
  if (o.creds.access_key.empty() || o.creds.secret_key.empty()) {
    return bad("no credentials: give s3://ACCESS_KEY:SECRET@host/bucket or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
  }
  return o;
}

std::string redact_blob_url(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  std::size_t start = scheme + 3;
  std::size_t end = url.find_first_of("/?#", start);
  std::string_view authority = url.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
  auto at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  auto colon = authority.find(':');
  if (colon == std::string_view::npos || colon > at) return std::string(url);
  return std::string(url.substr(0, start + colon + 1)) + "***" + std::string(url.substr(start + at));
}

S3Target s3_target(const S3Options& o, std::string_view object_key) {
  bool default_port = o.port == 0 || o.port == (o.tls ? 443 : 80);
  std::string host = o.path_style ? o.host : o.bucket + "." + o.host;
  if (!default_port) host += ":" + std::to_string(o.port);
  std::string path = o.path_style ? "/" + o.bucket : "";
  if (!object_key.empty() || !o.path_style) path += "/" + sigv4::uri_encode(object_key, true);
  return S3Target{std::string(o.tls ? "https://" : "http://") + host + path, host, path};
}

Result<std::unique_ptr<BlobStore>> open_s3_blob_store(S3Options opts) {
  if (opts.part_size < kMinPartSize || opts.part_size > kMaxPartSize) {
    return Error::validation("S3 part size must be 5MiB..64MiB");
  }
  auto client = std::make_shared<S3Client>(std::move(opts));
  if (client->opts().check) {
    S3Call call;
    call.query = {{"list-type", "2"}, {"max-keys", "1"}, {"prefix", client->opts().prefix}};
    call.max_response = kMaxListBody;
    Result<S3Response> r = client->request_sync(call);
    if (!r.ok()) return std::move(r).error();
    if (r->status != 200) return answer_error(client->opts(), *r, "list the bucket", "");
  }
  return std::unique_ptr<BlobStore>(std::make_unique<S3BlobStore>(std::move(client)));
}

}  // namespace harmar::store
