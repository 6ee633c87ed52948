#pragma once
// What the filesystem and S3 blob suites share: test data, digests and reading a range back.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/blocking.hpp"
#include "events_support.hpp"
#include "store/blobs.hpp"

namespace harmar::store::testing_blobs {

// Joins the blocking pool after the last test, as `harmar serve` does at shutdown: OpenSSL frees a
// thread's state only when the thread exits, and LeakSanitizer would report it otherwise.
class StopBlockingPool : public ::testing::Environment {
 public:
  void TearDown() override { stop_blocking_pool(); }
};
inline const auto* const kStopBlockingPool = ::testing::AddGlobalTestEnvironment(new StopBlockingPool);

inline std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  std::string out;
  for (unsigned i = 0; i < n; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
}

inline std::string random_bytes(std::size_t n, uint64_t seed = 42) {
  std::mt19937_64 rng{seed};
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

inline std::vector<std::string> keys_of(const std::vector<BlobInfo>& infos) {
  std::vector<std::string> out;
  for (const auto& i : infos) out.push_back(i.key);
  return out;
}

// Reads [offset, offset+length) of `key` in pieces of at most `piece` bytes.
inline std::string read_range(BlobStore& store, const std::string& key, int64_t offset, std::optional<int64_t> length,
                              std::size_t piece) {
  auto reader = testing::run_any(store.open(key, offset, length));
  if (!reader.ok()) throw std::runtime_error(reader.error().detail);
  std::string out;
  for (;;) {
    auto chunk = testing::run_any((*reader)->read(piece));
    if (!chunk.ok()) throw std::runtime_error(chunk.error().detail);
    if (chunk->empty()) return out;
    EXPECT_LE(chunk->size(), piece);
    out += *chunk;
  }
}

}  // namespace harmar::store::testing_blobs
