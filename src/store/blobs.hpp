#pragma once
// Blob storage: large objects written and read as streams, never whole in memory.
// Filesystem by default (DATA_DIR/blobs); S3-compatible servers come with the backups work.
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

// Appends chunks, then commit() makes the blob visible atomically under its key. A writer
// dropped without commit() leaves nothing behind.
class BlobWriter {
 public:
  virtual ~BlobWriter() = default;
  virtual asio::awaitable<Status> write(std::string_view chunk) = 0;
  virtual asio::awaitable<Result<BlobInfo>> commit() = 0;
};

class BlobReader {
 public:
  virtual ~BlobReader() = default;
  // Up to `max` bytes; an empty string at the end of the requested range.
  virtual asio::awaitable<Result<std::string>> read(std::size_t max) = 0;
  virtual const BlobInfo& info() const = 0;
};

class BlobStore {
 public:
  virtual ~BlobStore() = default;
  // "" → file://DATA_DIR/blobs; "file:///path" → that directory.
  static Result<std::unique_ptr<BlobStore>> open(const std::string& url, const std::string& data_dir);

  // Keys are relative paths of [A-Za-z0-9._/-], no "..", at most 512 characters.
  virtual asio::awaitable<Result<std::unique_ptr<BlobWriter>>> create(std::string key) = 0;
  // Reads [offset, offset+length) of the blob; length nullopt reads to the end.
  virtual asio::awaitable<Result<std::unique_ptr<BlobReader>>> open(std::string key, int64_t offset = 0,
                                                                    std::optional<int64_t> length = {}) = 0;
  virtual asio::awaitable<Result<BlobInfo>> stat(std::string key) = 0;
  virtual asio::awaitable<Result<bool>> remove(std::string key) = 0;
  virtual asio::awaitable<Result<std::vector<BlobInfo>>> list(std::string prefix, std::size_t limit = 1000) = 0;

  // Whole-object helpers for small blobs.
  asio::awaitable<Result<BlobInfo>> put(std::string key, std::string_view data);
  asio::awaitable<Result<std::string>> get(std::string key);
};

// Whether a blob key is acceptable (see BlobStore::create).
bool valid_blob_key(std::string_view key);

}  // namespace harmar::store
