#include "backups/service.hpp"

#include <openssl/evp.h>

#include "backups/repo.hpp"
#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "tasks/tasks.hpp"

namespace harmar::backups {

namespace {

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view data) { EVP_DigestUpdate(ctx_, data.data(), data.size()); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md, &n);
    static const char* kHex = "0123456789abcdef";
    std::string out;
    out.reserve(n * 2);
    for (unsigned int i = 0; i < n; ++i) {
      out += kHex[md[i] >> 4];
      out += kHex[md[i] & 15];
    }
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

// Blob keys: one folder per user, so an operator can see (and an S3 lifecycle rule can target)
// a user's backups by prefix.
std::string blob_key(const std::string& user_id, const std::string& id) { return "config-backups/" + user_id + "/" + id; }

bool may_see(const Principal& who, const Backup& b) {
  if (who.kind == Principal::Kind::Device) return b.device_id == who.id && b.user_id == who.user_id;
  return b.user_id == who.user_id;
}

}  // namespace

Options Options::from(const config::Config& c) {
  Options o;
  o.max_upload_bytes = c.get_size("backups.max_upload_bytes");
  o.quota_bytes = c.get_size("backups.quota_bytes");
  o.max_per_user = c.get_int("backups.max_per_user");
  o.max_parallel_uploads = c.get_int("backups.max_parallel_uploads");
  return o;
}

std::shared_ptr<void> Service::take_upload_slot(const std::string& device_id) {
  std::lock_guard lock(mu_);
  int64_t& n = uploading_[device_id];
  if (n >= opts_.max_parallel_uploads) return nullptr;
  ++n;
  return std::shared_ptr<void>(static_cast<void*>(this), [this, device_id](void*) {
    std::lock_guard l(mu_);
    auto it = uploading_.find(device_id);
    if (it != uploading_.end() && --it->second <= 0) uploading_.erase(it);
  });
}

Status Service::check_quota(const Usage& u, int64_t extra) const {
  if (u.count + 1 > opts_.max_per_user)
    return Error::conflict("this account holds " + std::to_string(u.count) + " backups, the most it may (" +
                               std::to_string(opts_.max_per_user) + "); delete some first",
                           "backup_quota_exceeded");
  if (u.bytes + extra > opts_.quota_bytes)
    return Error::conflict("this backup (" + std::to_string(extra) + " bytes) does not fit the account's quota: " +
                               std::to_string(u.bytes) + " of " + std::to_string(opts_.quota_bytes) +
                               " bytes are used; delete some backups first",
                           "backup_quota_exceeded");
  return Status{};
}

asio::awaitable<Result<Backup>> Service::upload(const Principal& device, net::BodySource& body, UploadInput in) {
  if (device.kind != Principal::Kind::Device) co_return Error::forbidden("only a device uploads its config backups");
  std::shared_ptr<void> slot = take_upload_slot(device.id);
  if (!slot) {
    Error busy = Error::rate_limited(1, "this device is already sending " + std::to_string(opts_.max_parallel_uploads) +
                                            " backups; send the next when one has finished");
    busy.code = "too_many_uploads";
    co_return busy;
  }
  std::optional<int64_t> declared = body.length();
  if (declared && *declared == 0) co_return Error::validation("the backup is empty", {{"body", "is empty"}});
  // Refuse before reading the body when its declared length already does not fit.
  HARMAR_CO_TRY(Usage before, co_await repo::usage(s_.db, device.user_id));
  auto fits = check_quota(before, declared.value_or(1));
  if (!fits) co_return std::move(fits).error();

  Backup b;
  b.id = new_id();
  b.user_id = device.user_id;
  b.device_id = device.id;
  b.name = std::move(in.name);
  b.content_type = std::move(in.content_type);
  b.blob_key = blob_key(b.user_id, b.id);
  HARMAR_CO_TRY(auto writer, co_await s_.blobs.create(b.blob_key));
  Sha256 sha;
  int64_t size = 0;
  for (;;) {
    HARMAR_CO_TRY(std::string_view piece, co_await body.read());
    if (piece.empty()) break;
    size += static_cast<int64_t>(piece.size());
    // A chunked upload has no declared length: stop as soon as it no longer fits.
    if (before.bytes + size > opts_.quota_bytes) {
      auto over = check_quota(before, size);
      co_return std::move(over).error();  // the writer is dropped uncommitted: nothing stays
    }
    sha.update(piece);
    auto written = co_await writer->write(piece);
    if (!written) co_return std::move(written).error();
  }
  if (size == 0) co_return Error::validation("the backup is empty", {{"body", "is empty"}});
  b.size = size;
  b.sha256 = sha.hex();
  if (in.expected_sha256 && *in.expected_sha256 != b.sha256)
    co_return Error{422, "checksum_mismatch",
                    "the body's sha256 is " + b.sha256 + ", not the X-Checksum-Sha256 given (" + *in.expected_sha256 +
                        "); nothing was stored"};
  HARMAR_CO_TRY(auto info, co_await writer->commit());
  (void)info;
  b.created_at = now_ms();

  // The row is what makes the backup exist: inserted only if the quota still admits it (other
  // uploads of this user may have finished meanwhile). On any failure the blob goes again.
  auto inserted = co_await insert_within_quota(b);
  if (!inserted) {
    auto removed = co_await s_.blobs.remove(b.blob_key);
    if (!removed)
      log::get("backups")->warn(log::fields({{"msg", "an uncommitted backup's blob could not be removed"},
                                             {"key", b.blob_key},
                                             {"error", removed.error().detail}}));
    co_return std::move(inserted).error();
  }
  platform::DomainEvent e;
  e.type = "backup.created";
  e.user_id = b.user_id;
  e.subject = b.id;
  e.data = {{"device_id", b.device_id}, {"size", b.size}, {"sha256", b.sha256}};
  co_await s_.events.publish(std::move(e));
  co_return b;
}

asio::awaitable<Status> Service::insert_within_quota(const Backup& b) {
  HARMAR_CO_TRY(auto tx, co_await s_.db.begin());
  auto locked = co_await repo::lock_user(*tx, s_.db.backend(), b.user_id);
  if (!locked) co_return locked;
  HARMAR_CO_TRY(Usage now, co_await repo::usage(*tx, b.user_id));
  auto fits = check_quota(now, b.size);
  if (!fits) co_return fits;
  auto st = co_await repo::insert(*tx, b);
  if (!st) co_return st;
  co_return co_await tx->commit();
}

asio::awaitable<Result<std::vector<Backup>>> Service::list(const Principal& who, const std::optional<std::string>& device_id,
                                                           const std::optional<std::string>& before, int limit) {
  std::optional<std::string> device = device_id;
  if (who.kind == Principal::Kind::Device) {
    if (device && *device != who.id) co_return std::vector<Backup>{};  // another device's: none visible
    device = who.id;
  }
  co_return co_await repo::list(s_.db, who.user_id, device, before, limit);
}

asio::awaitable<Result<Backup>> Service::get(const Principal& who, const std::string& id) {
  HARMAR_CO_TRY(auto found, co_await repo::get(s_.db, id));
  if (!found || !may_see(who, *found)) co_return Error::not_found("no backup " + id);
  co_return std::move(*found);
}

asio::awaitable<Result<std::unique_ptr<store::BlobReader>>> Service::open(const Backup& b, int64_t offset,
                                                                          std::optional<int64_t> length) {
  co_return co_await s_.blobs.open(b.blob_key, offset, length);
}

asio::awaitable<Result<RestoreOutcome>> Service::restore(const Principal& user, const std::string& id) {
  HARMAR_CO_TRY(Backup b, co_await get(user, id));
  auto tasks = s_.find<tasks::Submitter>();
  if (!tasks) co_return Error::unavailable("the tasks module is not running on this server");
  boost::json::object payload{{"backup_id", b.id},
                              {"url", "/v1/config/backups/" + b.id},
                              {"name", b.name},
                              {"content_type", b.content_type},
                              {"size", b.size},
                              {"sha256", b.sha256}};
  auto sent = co_await tasks->submit(user, "restore", std::move(payload), b.device_id);
  if (!sent) {
    if (sent.error().status == 422)
      co_return Error::conflict("the device this backup came from no longer exists", "device_gone");
    co_return std::move(sent).error();
  }
  co_return RestoreOutcome{sent->id, sent->status};
}

asio::awaitable<Status> Service::remove(const Principal& user, const std::string& id) {
  HARMAR_CO_TRY(Backup b, co_await get(user, id));
  // Row first: once it is gone nobody can reach the blob, so a failed blob removal leaves an
  // unreachable file (logged), never a listed backup without its data.
  HARMAR_CO_TRY(bool existed, co_await repo::remove(s_.db, b.id));
  if (!existed) co_return Error::not_found("no backup " + id);
  auto removed = co_await s_.blobs.remove(b.blob_key);
  if (!removed)
    log::get("backups")->warn(log::fields(
        {{"msg", "a deleted backup's blob could not be removed"}, {"key", b.blob_key}, {"error", removed.error().detail}}));
  co_return Status{};
}

asio::awaitable<Result<Usage>> Service::usage(const Principal& user) { co_return co_await repo::usage(s_.db, user.user_id); }

}  // namespace harmar::backups
