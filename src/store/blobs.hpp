#pragma once
// Blob storage: large objects written and read as streams, never whole in memory.
// Filesystem by default (DATA_DIR/blobs), or any S3-compatible server (blobs_s3.hpp).
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace harmar::store {

namespace asio = boost::asio;

struct BlobInfo {
  std::string key;
  int64_t size = 0;
  std::string sha256;  // lowercase hex; empty if the backend does not know it
  int64_t modified_ms = 0;
};

// Appends chunks, then commit() makes the blob visible atomically under its key (replacing any
// blob with that key). A writer dropped without commit() leaves nothing behind (its temporary
// data is removed in the background). One coroutine at a time per writer or reader.
class BlobWriter {
 public:
  virtual ~BlobWriter() = default;
  virtual asio::awaitable<Status> write(std::string_view chunk) = 0;
  virtual asio::awaitable<Result<BlobInfo>> commit() = 0;

 protected:
  // What every backend's writer keeps: after commit it takes nothing more (409), after a failure
  // nothing at all (500).
  Status usable() const {
    if (committed_) return Error::conflict("blob writer already committed");
    if (failed_) return Error::internal("blob writer failed earlier");
    return {};
  }
  Error fail(Error e) {
    failed_ = true;
    return e;
  }
  bool committed_ = false;
  bool failed_ = false;
};

class BlobReader {
 public:
  virtual ~BlobReader() = default;
  // Up to `max` (> 0) bytes; an empty string at the end of the requested range.
  virtual asio::awaitable<Result<std::string>> read(std::size_t max) = 0;
  // The whole blob's info (size is the blob's, not the range's).
  virtual const BlobInfo& info() const = 0;
};

// Errors: 422 for a bad key or argument, 404 for a missing blob, 416 `range_not_satisfiable` for an
// offset past the end, 409 when a key collides with a "directory" of other keys on the filesystem
// backend ("a" and "a/b" cannot both exist there), 500 for I/O errors.
class BlobStore {
 public:
  static constexpr std::size_t kMaxListLimit = 10000;
  static constexpr std::size_t kMaxGetBytes = 32 << 20;

  virtual ~BlobStore() = default;
  // "" → file://DATA_DIR/blobs; "file:///path" → that directory (created if missing; this runs
  // synchronously, at startup); "s3://…" → an S3 bucket (see blobs_s3.hpp; one synchronous
  // request checks the bucket and the credentials). Other schemes are 422.
  static Result<std::unique_ptr<BlobStore>> open(const std::string& url, const std::string& data_dir);

  // Keys are relative paths of [A-Za-z0-9._/-], at most 512 characters, whose segments are
  // non-empty and do not start with '.' (so no "." or "..": hidden names are the store's own).
  virtual asio::awaitable<Result<std::unique_ptr<BlobWriter>>> create(std::string key) = 0;
  // Reads [offset, offset+length) of the blob; length nullopt reads to the end. A range reaching
  // past the end is cut at the end; an offset past the end is 416 (offset == size is an empty read).
  virtual asio::awaitable<Result<std::unique_ptr<BlobReader>>> open(std::string key, int64_t offset = 0,
                                                                    std::optional<int64_t> length = {}) = 0;
  virtual asio::awaitable<Result<BlobInfo>> stat(std::string key) = 0;
  // True if the blob existed.
  virtual asio::awaitable<Result<bool>> remove(std::string key) = 0;
  // Blobs whose key starts with `prefix` (a plain string prefix, not only whole segments) and
  // sorts after `start_after`, in byte order of their keys, at most min(limit, kMaxListLimit).
  // Page through a large listing by passing the last key seen as `start_after`.
  virtual asio::awaitable<Result<std::vector<BlobInfo>>> list(std::string prefix, std::size_t limit = 1000,
                                                              std::string start_after = {}) = 0;

  // Whole-object helpers for small blobs; get() refuses blobs over kMaxGetBytes (413).
  asio::awaitable<Result<BlobInfo>> put(std::string key, std::string_view data);
  asio::awaitable<Result<std::string>> get(std::string key);
};

// Whether a blob key is acceptable (see BlobStore::create).
bool valid_blob_key(std::string_view key);

}  // namespace harmar::store
