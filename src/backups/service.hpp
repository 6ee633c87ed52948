#pragma once
// The rules of config backups (docs/backups.md):
//  - Only a device uploads, and only its own configuration; the backup belongs to the device's
//    user. The user lists, downloads, restores and deletes the backups of all their devices; a
//    device lists and downloads its own (the restore task tells it which one to fetch).
//  - An upload is streamed to blob storage while its sha256 is computed; it becomes visible (a
//    row) only once the blob is committed and the user's quota admits it. An upload that fails
//    midway (client gone, too large, over quota, storage error) leaves nothing behind.
//  - Quota: backups.quota_bytes and backups.max_per_user per user; exceeding either is 409
//    `backup_quota_exceeded` (retrying can succeed once backups are deleted), while a single
//    upload over backups.max_upload_bytes is 413 `payload_too_large` (it never can).
//  - A device sends at most backups.max_parallel_uploads at once (on one node; 429
//    `too_many_uploads` beyond), which bounds the temporary blob space one device can hold.
//  - Someone else's backup (or a missing one) is 404 `not_found`.
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "backups/model.hpp"
#include "core/principal.hpp"
#include "core/result.hpp"
#include "net/http.hpp"
#include "platform/module.hpp"
#include "store/blobs.hpp"

namespace harmar::backups {

namespace asio = boost::asio;

struct Options {
  int64_t max_upload_bytes = 100 << 20;
  int64_t quota_bytes = 1LL << 30;
  int64_t max_per_user = 1000;
  int64_t max_parallel_uploads = 2;  // per device, on one node
  static Options from(const config::Config& c);
};

struct UploadInput {
  std::string name = "config";
  std::string content_type = "application/octet-stream";
  std::optional<std::string> expected_sha256;  // X-Checksum-Sha256, lowercase hex
};

struct RestoreOutcome {
  std::string task_id;
  std::string task_status;
};

class Service {
 public:
  Service(platform::Services& s, Options o) : s_(s), opts_(o) {}

  const Options& options() const { return opts_; }

  asio::awaitable<Result<Backup>> upload(const Principal& device, net::BodySource& body, UploadInput in);
  asio::awaitable<Result<std::vector<Backup>>> list(const Principal& who, const std::optional<std::string>& device_id,
                                                    const std::optional<std::string>& before, int limit);
  // The backup `who` may see, or 404.
  asio::awaitable<Result<Backup>> get(const Principal& who, const std::string& id);
  // Opens [offset, offset+length) of a backup already looked up with get().
  asio::awaitable<Result<std::unique_ptr<store::BlobReader>>> open(const Backup& b, int64_t offset,
                                                                   std::optional<int64_t> length);
  asio::awaitable<Result<RestoreOutcome>> restore(const Principal& user, const std::string& id);
  asio::awaitable<Status> remove(const Principal& user, const std::string& id);
  asio::awaitable<Result<Usage>> usage(const Principal& user);

 private:
  // Refused when `extra` more bytes (and one more backup) would not fit the user's quota.
  Status check_quota(const Usage& u, int64_t extra) const;
  // Inserts the row in a transaction that re-checks the quota under a per-user lock.
  asio::awaitable<Status> insert_within_quota(const Backup& b);
  // A hold on one of the device's parallel upload slots (released when dropped), or nullptr.
  std::shared_ptr<void> take_upload_slot(const std::string& device_id);

  platform::Services& s_;
  Options opts_;
  std::mutex mu_;
  std::unordered_map<std::string, int64_t> uploading_;  // device id → uploads in progress
};

}  // namespace harmar::backups
