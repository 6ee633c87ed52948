// Routes of config backups (shared/API.md "Config backups", docs/backups.md).
#include <boost/json.hpp>

#include <charconv>

#include "backups/service.hpp"
#include "platform/api.hpp"
#include "platform/idempotency.hpp"

namespace harmar::backups {

namespace js = boost::json;
using net::Auth;
using net::Request;
using net::Response;
using Svc = std::shared_ptr<Service>;

namespace {

constexpr std::size_t kReadPiece = 64 * 1024;

// A file name as the device names it: printable ASCII without quotes, slashes or backslashes
// (it comes back in Content-Disposition), 1..200 characters.
bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 200) return false;
  for (char c : s)
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '/') return false;
  return true;
}

bool valid_content_type(std::string_view s) {
  if (s.empty() || s.size() > 127) return false;
  for (char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

std::optional<std::string> sha256_hex(std::string_view s) {
  if (s.size() != 64) return std::nullopt;
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c + 32);
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  }
  return out;
}

asio::awaitable<Response> upload(Svc svc, Request& req) {
  if (!req.body_source)  // only HTTP/2 gets here without one, and the server refuses that first
    co_return Error{505, "http1_required", "uploads are streamed over HTTP/1.1"};
  UploadInput in;
  std::vector<FieldError> errors;
  if (auto name = req.query_param("name")) {
    if (valid_name(*name))
      in.name = *name;
    else
      errors.push_back({"name", "1..200 printable ASCII characters, without quotes, slashes or backslashes"});
  }
  if (auto type = req.header("Content-Type"); !type.empty()) {
    if (valid_content_type(type))
      in.content_type = std::string(type);
    else
      errors.push_back({"Content-Type", "at most 127 printable ASCII characters"});
  }
  if (auto sum = req.header("X-Checksum-Sha256"); !sum.empty()) {
    in.expected_sha256 = sha256_hex(sum);
    if (!in.expected_sha256) errors.push_back({"X-Checksum-Sha256", "64 hexadecimal digits"});
  }
  if (!errors.empty()) co_return Error::validation("invalid upload parameters", std::move(errors));
  auto b = co_await svc->upload(platform::principal(req), *req.body_source, std::move(in));
  if (!b) co_return b.error();
  Response resp = Response::json(201, to_json(*b));
  resp.header("Location", "/v1/config/backups/" + b->id);
  resp.header("ETag", "\"" + b->sha256 + "\"");
  co_return resp;
}

asio::awaitable<Response> list(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto page, platform::page_params(req));
  auto device_id = req.query_param("device_id");
  if (device_id && (device_id->empty() || device_id->size() > 64))
    co_return Error::validation("device_id is not a device id", {{"device_id", "1..64 characters"}});
  auto items = co_await svc->list(platform::principal(req), device_id, page.after, page.limit + 1);
  if (!items) co_return items.error();
  co_return platform::page_response(*items, page.limit, [](const Backup& b) { return to_json(b); },
                                    [](const Backup& b) { return b.id; });
}

// Range: bytes=A-B | A- | -N, one range (RFC 9110 §14). Several ranges, or a header we cannot
// read, are ignored: the whole file is sent, as the RFC allows.
struct ByteRange {
  enum Kind { None, Satisfiable, Unsatisfiable } kind = None;
  int64_t first = 0, last = 0;  // inclusive
};

std::optional<int64_t> parse_count(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

ByteRange parse_range(std::string_view h, int64_t size) {
  ByteRange r;
  if (h.substr(0, 6) != "bytes=") return r;
  std::string_view spec = h.substr(6);
  while (!spec.empty() && spec.front() == ' ') spec.remove_prefix(1);
  while (!spec.empty() && spec.back() == ' ') spec.remove_suffix(1);
  if (spec.find(',') != std::string_view::npos) return r;
  auto dash = spec.find('-');
  if (dash == std::string_view::npos) return r;
  std::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);
  if (a.empty()) {
    auto n = parse_count(b);
    if (!n) return r;
    if (*n == 0 || size == 0) {
      r.kind = ByteRange::Unsatisfiable;
      return r;
    }
    r.kind = ByteRange::Satisfiable;
    r.first = std::max<int64_t>(0, size - *n);
    r.last = size - 1;
    return r;
  }
  auto first = parse_count(a);
  if (!first) return r;
  int64_t last = size - 1;
  if (!b.empty()) {
    auto l = parse_count(b);
    if (!l || *l < *first) return r;
    last = std::min(*l, size - 1);
  }
  if (*first >= size) {
    r.kind = ByteRange::Unsatisfiable;
    return r;
  }
  r.kind = ByteRange::Satisfiable;
  r.first = *first;
  r.last = last;
  return r;
}

class BlobBody final : public net::BodyStream {
 public:
  explicit BlobBody(std::unique_ptr<store::BlobReader> r) : r_(std::move(r)) {}
  asio::awaitable<Result<std::string>> read() override { co_return co_await r_->read(kReadPiece); }

 private:
  std::unique_ptr<store::BlobReader> r_;
};

// An entity tag list (If-None-Match / If-Range) names `etag`, or is "*".
bool names_etag(std::string_view list, std::string_view etag) {
  if (list == "*") return true;
  std::size_t pos = 0;
  while (pos < list.size()) {
    std::size_t comma = list.find(',', pos);
    std::string_view item = list.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.substr(0, 2) == "W/") item.remove_prefix(2);
    if (item == etag) return true;
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return false;
}

asio::awaitable<Response> download(Svc svc, Request& req) {
  std::string id(req.param("id"));
  HARMAR_CO_TRY(Backup b, co_await svc->get(platform::principal(req), id));
  std::string etag = "\"" + b.sha256 + "\"";
  auto common = [&](Response& r) {
    r.header("ETag", etag);
    r.header("Accept-Ranges", "bytes");
    r.header("Cache-Control", "private, no-cache");
  };
  if (auto inm = req.header("If-None-Match"); !inm.empty() && names_etag(inm, etag)) {
    Response r(304, {}, nullptr);
    common(r);
    co_return r;
  }
  ByteRange range;
  if (auto h = req.header("Range"); !h.empty()) {
    auto if_range = req.header("If-Range");
    if (if_range.empty() || if_range == etag) range = parse_range(h, b.size);
  }
  if (range.kind == ByteRange::Unsatisfiable) {
    Response r(Error{416, "range_not_satisfiable", "the backup has " + std::to_string(b.size) + " bytes"});
    r.header("Content-Range", "bytes */" + std::to_string(b.size));
    common(r);
    co_return r;
  }
  bool partial = range.kind == ByteRange::Satisfiable;
  int64_t first = partial ? range.first : 0;
  int64_t length = partial ? range.last - range.first + 1 : b.size;
  HARMAR_CO_TRY(auto reader, co_await svc->open(b, first, length));
  Response r(partial ? 206 : 200, {}, nullptr);
  r.header("Content-Type", b.content_type);
  r.header("Content-Disposition", "attachment; filename=\"" + b.name + "\"");
  r.header("X-Checksum-Sha256", b.sha256);
  if (partial)
    r.header("Content-Range", "bytes " + std::to_string(range.first) + "-" + std::to_string(range.last) + "/" +
                                  std::to_string(b.size));
  common(r);
  r.stream = std::make_shared<BlobBody>(std::move(reader));
  r.stream_size = length;
  co_return r;
}

asio::awaitable<Response> restore(Svc svc, Request& req) {
  std::string id(req.param("id"));
  HARMAR_CO_TRY(auto out, co_await svc->restore(platform::principal(req), id));
  Response r = Response::json(202, js::object{{"backup_id", id}, {"task_id", out.task_id}, {"status", out.task_status}});
  r.header("Location", "/v1/tasks/" + out.task_id);
  co_return r;
}

asio::awaitable<Response> remove(Svc svc, Request& req) {
  std::string id(req.param("id"));
  auto st = co_await svc->remove(platform::principal(req), id);
  if (!st) co_return st.error();
  co_return Response::no_content();
}

}  // namespace

void install_routes(net::Router& router, platform::Services& services, Svc svc) {
  router.post("/v1/config/backup", [svc](Request& r) { return upload(svc, r); },
              {.auth = Auth::Device, .body_limit = svc->options().max_upload_bytes, .stream_body = true});
  router.get("/v1/config/backups", [svc](Request& r) { return list(svc, r); }, {.auth = Auth::Any});
  router.get("/v1/config/backups/{id}", [svc](Request& r) { return download(svc, r); }, {.auth = Auth::Any});
  router.del("/v1/config/backups/{id}", [svc](Request& r) { return remove(svc, r); }, {.auth = Auth::User});
  router.post("/v1/config/restore/{id}", [svc](Request& r) { return restore(svc, r); },
              {.auth = Auth::User, .middleware = {platform::idempotent(services)}});
}

}  // namespace harmar::backups
