// BlobStore: the filesystem backend, the whole-object helpers and key validation.
//
// Layout: the blob "a/b/c" is the file ROOT/a/b/c. A writer streams into a hidden temporary file
// (".tmp.<random>") in the blob's directory, hashing as it goes; commit() fsyncs it, records the
// sha256 in the extended attribute user.harmar.sha256 (best effort: stat() reports an empty
// sha256 on filesystems without user xattrs), renames it over the key and fsyncs the directory.
// Every filesystem call runs on the blocking pool (run_blocking), never on the caller's thread.
#include "store/blobs.hpp"

#include <boost/asio/post.hpp>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <random>
#include <system_error>

#include "core/blocking.hpp"
#include "store/blobs_s3.hpp"

namespace harmar::store {

namespace {

constexpr std::size_t kMaxKeyBytes = 512;
constexpr std::size_t kMaxReadChunk = 8 << 20;
constexpr std::size_t kPutChunk = 1 << 20;
constexpr const char* kShaXattr = "user.harmar.sha256";
constexpr std::string_view kTempPrefix = ".tmp.";

std::string errno_text(int err) { return std::generic_category().message(err); }

Error io_error(const std::string& what, int err) { return Error::internal(what + ": " + errno_text(err)); }

Error range_not_satisfiable(std::string detail) { return Error{416, "range_not_satisfiable", std::move(detail)}; }

bool valid_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '/';
}

std::string to_hex(const unsigned char* p, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
  return out;
}

std::string temp_name() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t r = rng();
  return std::string(kTempPrefix) + to_hex(reinterpret_cast<const unsigned char*>(&r), sizeof r);
}

int64_t mtime_ms(const struct stat& st) { return int64_t{st.st_mtim.tv_sec} * 1000 + st.st_mtim.tv_nsec / 1000000; }

// The sha256 recorded at commit, or "" if the filesystem kept none.
std::string read_sha(int fd, const std::string& path) {
  char buf[65];
  ssize_t n = fd >= 0 ? ::fgetxattr(fd, kShaXattr, buf, 64) : ::getxattr(path.c_str(), kShaXattr, buf, 64);
  return n == 64 ? std::string(buf, 64) : std::string();
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::string parent_of(const std::string& path) { return path.substr(0, path.rfind('/')); }

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Closes (and, for an abandoned writer, deletes) on the blocking pool: destructors may run on an
// event-loop thread.
void close_in_background(int fd, std::string unlink_path = {}) {
  if (fd < 0) return;
  asio::post(blocking_pool(), [fd, path = std::move(unlink_path)] {
    ::close(fd);
    if (!path.empty()) ::unlink(path.c_str());
  });
}

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
    return to_hex(md, n);
  }

 private:
  EVP_MD_CTX* ctx_;
};

// --- writer -----------------------------------------------------------------------------------

class FsBlobWriter final : public BlobWriter {
 public:
  FsBlobWriter(std::string key, std::string path, std::string temp_path, int fd)
      : key_(std::move(key)), path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd) {}

  ~FsBlobWriter() override { close_in_background(fd_, temp_path_); }

  asio::awaitable<Status> write(std::string_view chunk) override {
    if (auto st = usable(); !st.ok()) co_return st;
    co_return co_await run_blocking([&]() -> Status {
      if (!write_all(fd_, chunk)) return fail(io_error("cannot write blob " + key_, errno));
      sha_.update(chunk);
      size_ += static_cast<int64_t>(chunk.size());
      return {};
    });
  }

  asio::awaitable<Result<BlobInfo>> commit() override {
    if (auto st = usable(); !st.ok()) co_return st.error();
    co_return co_await run_blocking([&]() -> Result<BlobInfo> {
      BlobInfo info{key_, size_, sha_.hex(), 0};
      ::fsetxattr(fd_, kShaXattr, info.sha256.data(), info.sha256.size(), 0);  // best effort
      if (::fsync(fd_) != 0) return fail(io_error("cannot fsync blob " + key_, errno));
      struct stat st {};
      ::fstat(fd_, &st);
      info.modified_ms = mtime_ms(st);
      if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
        int err = errno;
        if (err == EISDIR || err == ENOTEMPTY || err == EEXIST) {
          return fail(Error::conflict("blob key '" + key_ + "' is a prefix of other keys"));
        }
        return fail(io_error("cannot rename blob " + key_, err));
      }
      ::close(fd_);
      fd_ = -1;
      committed_ = true;
      fsync_dir(parent_of(path_));
      return info;
    });
  }

 private:
  std::string key_;
  std::string path_;
  std::string temp_path_;
  int fd_;
  Sha256 sha_;
  int64_t size_ = 0;
};

// --- reader -----------------------------------------------------------------------------------

class FsBlobReader final : public BlobReader {
 public:
  FsBlobReader(BlobInfo info, int fd, int64_t offset, int64_t end)
      : info_(std::move(info)), fd_(fd), pos_(offset), end_(end) {}
  ~FsBlobReader() override { close_in_background(fd_); }

  asio::awaitable<Result<std::string>> read(std::size_t max) override {
    if (max == 0) co_return Error::validation("blob read size must be positive");
    if (pos_ >= end_) co_return std::string();
    std::size_t n = std::min<std::size_t>({max, kMaxReadChunk, static_cast<std::size_t>(end_ - pos_)});
    co_return co_await run_blocking([&]() -> Result<std::string> {
      std::string buf(n, '\0');
      std::size_t got = 0;
      while (got < n) {
        ssize_t r = ::pread(fd_, buf.data() + got, n - got, pos_ + static_cast<int64_t>(got));
        if (r < 0) {
          if (errno == EINTR) continue;
          return io_error("cannot read blob " + info_.key, errno);
        }
        if (r == 0) return Error::internal("blob " + info_.key + " is shorter than its size");
        got += static_cast<std::size_t>(r);
      }
      pos_ += static_cast<int64_t>(n);
      return buf;
    });
  }

  const BlobInfo& info() const override { return info_; }

 private:
  BlobInfo info_;
  int fd_;
  int64_t pos_;
  int64_t end_;
};

// --- store ------------------------------------------------------------------------------------

bool valid_prefix(const std::string& prefix) {
  return prefix.empty() || valid_blob_key(prefix) || valid_blob_key(prefix + "x");
}

class FsBlobStore final : public BlobStore {
 public:
  explicit FsBlobStore(std::string root) : root_(std::move(root)) {}

  asio::awaitable<Result<std::unique_ptr<BlobWriter>>> create(std::string key) override {
    if (!valid_blob_key(key)) co_return bad_key(key);
    co_return co_await run_blocking([&]() -> Result<std::unique_ptr<BlobWriter>> {
      std::string path = path_of(key);
      std::string dir = parent_of(path);
      struct stat st {};
      if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        return Error::conflict("blob key '" + key + "' is a prefix of other keys");
      }
      // A concurrent remove() may prune the directory between mkdir and open: try again.
      for (int attempt = 0;; ++attempt) {
        if (auto made = make_dirs(key); !made.ok()) return made.error();
        std::string temp = dir + "/" + temp_name();
        int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) return std::unique_ptr<BlobWriter>(std::make_unique<FsBlobWriter>(key, path, temp, fd));
        if (errno != ENOENT || attempt == 3) return io_error("cannot create blob " + key, errno);
      }
    });
  }

  asio::awaitable<Result<std::unique_ptr<BlobReader>>> open(std::string key, int64_t offset,
                                                            std::optional<int64_t> length) override {
    if (!valid_blob_key(key)) co_return bad_key(key);
    if (offset < 0 || (length && *length < 0)) co_return Error::validation("blob range must not be negative");
    co_return co_await run_blocking([&]() -> Result<std::unique_ptr<BlobReader>> {
      int fd = ::open(path_of(key).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return missing_or_error(key, errno);
      struct stat st {};
      if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        return Error::not_found("no blob " + key);
      }
      BlobInfo info{key, st.st_size, read_sha(fd, {}), mtime_ms(st)};
      if (offset > info.size) {
        ::close(fd);
        return range_not_satisfiable("offset " + std::to_string(offset) + " is past the end of blob " + key);
      }
      int64_t end = length && *length < info.size - offset ? offset + *length : info.size;
      return std::unique_ptr<BlobReader>(std::make_unique<FsBlobReader>(std::move(info), fd, offset, end));
    });
  }

  asio::awaitable<Result<BlobInfo>> stat(std::string key) override {
    if (!valid_blob_key(key)) co_return bad_key(key);
    co_return co_await run_blocking([&]() -> Result<BlobInfo> {
      std::string path = path_of(key);
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0) return missing_or_error(key, errno);
      if (!S_ISREG(st.st_mode)) return Error::not_found("no blob " + key);
      return BlobInfo{key, st.st_size, read_sha(-1, path), mtime_ms(st)};
    });
  }

  asio::awaitable<Result<bool>> remove(std::string key) override {
    if (!valid_blob_key(key)) co_return bad_key(key);
    co_return co_await run_blocking([&]() -> Result<bool> {
      std::string path = path_of(key);
      if (::unlink(path.c_str()) != 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == EISDIR) return false;
        return io_error("cannot remove blob " + key, errno);
      }
      // Empty directories would pile up forever; rmdir refuses the ones still in use.
      for (std::string dir = parent_of(path); dir.size() > root_.size(); dir = parent_of(dir)) {
        if (::rmdir(dir.c_str()) != 0) break;
      }
      return true;
    });
  }

  asio::awaitable<Result<std::vector<BlobInfo>>> list(std::string prefix, std::size_t limit,
                                                      std::string start_after) override {
    if (!valid_prefix(prefix)) co_return Error::validation("invalid blob key prefix '" + prefix + "'");
    if (start_after.size() > 1024) co_return Error::validation("start_after is too long");
    limit = std::min(limit, kMaxListLimit);
    co_return co_await run_blocking([&]() -> Result<std::vector<BlobInfo>> {
      std::vector<BlobInfo> out;
      if (limit == 0) return out;
      std::size_t slash = prefix.rfind('/');
      std::string dir_key = slash == std::string::npos ? std::string() : prefix.substr(0, slash + 1);
      std::string name_prefix = prefix.substr(dir_key.size());
      Walk walk{out, limit, start_after};
      if (auto st = walk_dir(walk, dir_key, name_prefix); !st.ok()) return st.error();
      return out;
    });
  }

 private:
  struct Walk {
    std::vector<BlobInfo>& out;
    std::size_t limit;
    const std::string& start_after;
  };
  struct Entry {
    std::string sort_key;  // the name, with a trailing '/' for a directory
    bool dir;
  };

  std::string path_of(const std::string& key) const { return root_ + "/" + key; }

  static Error bad_key(const std::string& key) {
    return Error::validation("invalid blob key", {{"key", "must be 1-512 characters of [A-Za-z0-9._/-] in "
                                                          "segments that are not empty and do not start with '.'"}});
  }

  static Error missing_or_error(const std::string& key, int err) {
    if (err == ENOENT || err == ENOTDIR) return Error::not_found("no blob " + key);
    return io_error("cannot open blob " + key, err);
  }

  // mkdir -p for the key's directories; fsyncs the parent of each one it creates.
  Status make_dirs(const std::string& key) const {
    std::size_t pos = 0;
    while ((pos = key.find('/', pos)) != std::string::npos) {
      std::string dir = path_of(key.substr(0, pos++));
      if (::mkdir(dir.c_str(), 0755) == 0) {
        fsync_dir(parent_of(dir));
        continue;
      }
      int err = errno;
      struct stat st {};
      if (err == EEXIST && ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
      if (err == EEXIST || err == ENOTDIR) {
        return Error::conflict("blob key '" + key + "' lies under the blob '" + key.substr(0, pos - 1) + "'");
      }
      return io_error("cannot create directory for blob " + key, err);
    }
    return {};
  }

  // Depth-first in byte order of the keys: a directory sorts as its name plus '/', which is
  // exactly where the keys beneath it sort among their siblings, so the walk can stop at `limit`.
  Status walk_dir(Walk& walk, const std::string& dir_key, const std::string& name_prefix) const {
    std::string dir_path = dir_key.empty() ? root_ : path_of(dir_key.substr(0, dir_key.size() - 1));
    DIR* d = ::opendir(dir_path.c_str());
    if (!d) {
      if (errno == ENOENT || errno == ENOTDIR) return {};
      return io_error("cannot list blobs", errno);
    }
    std::vector<Entry> entries;
    while (dirent* e = ::readdir(d)) {
      std::string_view name = e->d_name;
      if (name.starts_with('.') || !name.starts_with(name_prefix)) continue;
      unsigned char type = e->d_type;
      if (type == DT_UNKNOWN) {
        struct stat st {};
        if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
      }
      if (type != DT_DIR && type != DT_REG) continue;  // symlinks and devices are not blobs
      if (!valid_blob_key(dir_key + std::string(name))) continue;
      entries.push_back({std::string(name) + (type == DT_DIR ? "/" : ""), type == DT_DIR});
    }
    ::closedir(d);
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.sort_key < b.sort_key; });

    const std::string& after = walk.start_after;
    for (const auto& e : entries) {
      if (walk.out.size() >= walk.limit) break;
      std::string key = dir_key + e.sort_key;
      if (e.dir) {
        // Every key beneath sorts before start_after when the directory does and is not its prefix.
        if (!after.empty() && key < after && !after.starts_with(key)) continue;
        if (auto st = walk_dir(walk, key, ""); !st.ok()) return st;
        continue;
      }
      if (!after.empty() && key <= after) continue;
      struct stat st {};
      std::string path = path_of(key);
      if (::stat(path.c_str(), &st) != 0) continue;  // removed meanwhile
      walk.out.push_back(BlobInfo{key, st.st_size, read_sha(-1, path), mtime_ms(st)});
    }
    return {};
  }

  std::string root_;
};

}  // namespace

bool valid_blob_key(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyBytes) return false;
  if (!std::all_of(key.begin(), key.end(), valid_key_char)) return false;
  std::size_t start = 0;
  for (;;) {
    std::size_t end = key.find('/', start);
    std::string_view segment = key.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (segment.empty() || segment.front() == '.') return false;
    if (end == std::string_view::npos) return true;
    start = end + 1;
  }
}

asio::awaitable<Result<BlobInfo>> BlobStore::put(std::string key, std::string_view data) {
  HARMAR_CO_TRY(auto writer, co_await create(std::move(key)));
  while (!data.empty()) {
    std::string_view chunk = data.substr(0, kPutChunk);
    if (auto st = co_await writer->write(chunk); !st.ok()) co_return std::move(st).error();
    data.remove_prefix(chunk.size());
  }
  co_return co_await writer->commit();
}

asio::awaitable<Result<std::string>> BlobStore::get(std::string key) {
  HARMAR_CO_TRY(auto reader, co_await open(std::move(key)));
  if (static_cast<std::size_t>(reader->info().size) > kMaxGetBytes) {
    co_return Error::payload_too_large("blob is larger than " + std::to_string(kMaxGetBytes) + " bytes");
  }
  std::string out;
  out.reserve(static_cast<std::size_t>(reader->info().size));
  for (;;) {
    HARMAR_CO_TRY(auto chunk, co_await reader->read(kMaxReadChunk));
    if (chunk.empty()) break;
    out += chunk;
  }
  co_return out;
}

Result<std::unique_ptr<BlobStore>> BlobStore::open(const std::string& url, const std::string& data_dir) {
  std::string root;
  if (url.empty()) {
    if (data_dir.empty()) return Error::validation("blob storage needs a data directory or a file:// URL");
    root = data_dir + "/blobs";
  } else if (url.starts_with("file://")) {
    root = url.substr(7);
    if (!root.starts_with('/')) return Error::validation("blob URL must be file:///absolute/path");
  } else if (url.starts_with("s3://")) {
    HARMAR_TRY(S3Options opts, parse_s3_url(url));
    return open_s3_blob_store(std::move(opts));
  } else {
    return Error::validation("unsupported blob URL '" + redact_blob_url(url) + "' (expected file:///path or s3://)");
  }
  while (root.size() > 1 && root.ends_with('/')) root.pop_back();
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec || !std::filesystem::is_directory(root, ec)) {
    return Error::internal("cannot create blob directory " + root + ": " + ec.message());
  }
  return std::unique_ptr<BlobStore>(std::make_unique<FsBlobStore>(root));
}

}  // namespace harmar::store
