// The filesystem BlobStore: streaming, ranges, atomic commits, keys, listing, and that its file
// I/O stays off the caller's event loop.
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <random>

#include "core/blocking.hpp"
#include "events_support.hpp"
#include "store/blobs.hpp"
#include "blobs_support.hpp"

namespace harmar::store {
namespace {

namespace fs = std::filesystem;
using testing::Loop;
using testing::run_any;
using testing::wait_until;


using testing_blobs::keys_of;
using testing_blobs::random_bytes;
using testing_blobs::sha256_hex;


// Every regular file under `dir`, hidden ones included.
std::vector<std::string> files_under(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file()) out.push_back(fs::relative(it->path(), dir).string());
  }
  return out;
}


class BlobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path() / "blobs";
    auto store = BlobStore::open("file://" + dir_.string(), "");
    ASSERT_TRUE(store.ok()) << store.error().detail;
    store_ = std::move(store).value();
  }

  BlobInfo put(const std::string& key, std::string_view data) {
    auto r = run_any(store_->put(key, data));
    if (!r.ok()) throw std::runtime_error(r.error().detail);
    return std::move(r).value();
  }
  std::string read_range(const std::string& key, int64_t offset, std::optional<int64_t> length, std::size_t piece) {
    return testing_blobs::read_range(*store_, key, offset, length, piece);
  }

  testing::ScratchDir scratch_;
  fs::path dir_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobsTest, streams_megabytes_in_chunks_and_reads_them_back_by_ranges) {
  const std::string data = random_bytes(5 * 1024 * 1024 + 123);
  auto writer = run_any(store_->create("uploads/big.bin"));
  ASSERT_TRUE(writer.ok()) << writer.error().detail;
  std::size_t pos = 0, chunk = 1;
  while (pos < data.size()) {
    // Uneven chunk sizes, from one byte to 256 KiB.
    std::size_t n = std::min(data.size() - pos, chunk);
    ASSERT_TRUE(run_any((*writer)->write(std::string_view(data).substr(pos, n))).ok());
    pos += n;
    chunk = chunk * 7 % (256 * 1024) + 1;
  }
  auto info = run_any((*writer)->commit());
  ASSERT_TRUE(info.ok()) << info.error().detail;
  EXPECT_EQ(info->key, "uploads/big.bin");
  EXPECT_EQ(info->size, static_cast<int64_t>(data.size()));
  EXPECT_EQ(info->sha256, sha256_hex(data));
  EXPECT_GT(info->modified_ms, 0);

  auto stat = run_any(store_->stat("uploads/big.bin"));
  ASSERT_TRUE(stat.ok());
  EXPECT_EQ(stat->size, info->size);
  EXPECT_EQ(stat->sha256, info->sha256);

  std::string whole = read_range("uploads/big.bin", 0, std::nullopt, 100 * 1024);
  EXPECT_EQ(sha256_hex(whole), info->sha256);
  EXPECT_EQ(read_range("uploads/big.bin", 0, 1, 10), data.substr(0, 1));
  EXPECT_EQ(read_range("uploads/big.bin", 1000, 5000, 777), data.substr(1000, 5000));
  EXPECT_EQ(read_range("uploads/big.bin", data.size() - 10, std::nullopt, 3), data.substr(data.size() - 10));
  // A range reaching past the end stops at the end; starting at the end reads nothing.
  EXPECT_EQ(read_range("uploads/big.bin", data.size() - 5, 1000, 4096), data.substr(data.size() - 5));
  EXPECT_EQ(read_range("uploads/big.bin", data.size(), std::nullopt, 4096), "");

  auto past = run_any(store_->open("uploads/big.bin", data.size() + 1));
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().status, 416);
  auto negative = run_any(store_->open("uploads/big.bin", -1));
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.error().status, 422);
  auto reader = run_any(store_->open("uploads/big.bin", 0, 10));
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->info().size, static_cast<int64_t>(data.size()));
  EXPECT_EQ((*reader)->info().sha256, info->sha256);
}

TEST_F(BlobsTest, an_uncommitted_writer_leaves_nothing_behind) {
  {
    auto writer = run_any(store_->create("drafts/unfinished"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(run_any((*writer)->write("half of it")).ok());
    EXPECT_EQ(files_under(dir_).size(), 1u);  // the temporary file, while it is written
  }
  auto stat = run_any(store_->stat("drafts/unfinished"));
  ASSERT_FALSE(stat.ok());
  EXPECT_EQ(stat.error().status, 404);
  // The temporary file is removed on the blocking pool, shortly after.
  EXPECT_TRUE(wait_until([&] { return files_under(dir_).empty(); }));
  auto listed = run_any(store_->list(""));
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
}

TEST_F(BlobsTest, commit_replaces_a_blob_atomically_under_open_readers) {
  put("doc", "version one");
  auto old_reader = run_any(store_->open("doc"));
  ASSERT_TRUE(old_reader.ok());
  put("doc", "version two, longer");
  auto old = run_any((*old_reader)->read(1024));
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(*old, "version one");
  auto now = run_any(store_->get("doc"));
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(*now, "version two, longer");
  EXPECT_EQ(files_under(dir_), std::vector<std::string>{"doc"});
}

TEST_F(BlobsTest, refuses_bad_keys_everywhere) {
  std::vector<std::string> bad{"",        "/abs",     "a//b",    "a/",         "../up", "a/../b", "a/./b",
                               ".hidden", "a/.tmp.x", "sp ace",  "a\\b",       "ü",     "a\nb",   "x?",
                               std::string(513, 'k')};
  for (const auto& key : bad) {
    EXPECT_FALSE(valid_blob_key(key)) << key;
    auto c = run_any(store_->create(key));
    ASSERT_FALSE(c.ok()) << key;
    EXPECT_EQ(c.error().status, 422) << key;
    auto o = run_any(store_->open(key));
    ASSERT_FALSE(o.ok());
    EXPECT_EQ(o.error().status, 422);
    EXPECT_EQ(run_any(store_->stat(key)).error().status, 422);
    EXPECT_EQ(run_any(store_->remove(key)).error().status, 422);
  }
  for (const std::string& good : std::vector<std::string>{"a", "a/b/c.txt", "A-Z_0.9/x", std::string(512, 'k')}) {
    EXPECT_TRUE(valid_blob_key(good)) << good;
  }
  EXPECT_EQ(run_any(store_->list("../")).error().status, 422);
  EXPECT_TRUE(files_under(dir_).empty());
  EXPECT_FALSE(fs::exists(dir_.parent_path() / "up"));
}

TEST_F(BlobsTest, lists_by_prefix_in_key_order_with_limits_and_pages) {
  for (const char* key : {"b", "a/b", "ab", "a-c", "a/a/x", "a/a/y", "c/d/e"}) put(key, key);
  auto writer = run_any(store_->create("a/pending"));  // uncommitted: never listed
  ASSERT_TRUE(writer.ok());

  auto all = run_any(store_->list(""));
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(keys_of(*all), (std::vector<std::string>{"a-c", "a/a/x", "a/a/y", "a/b", "ab", "b", "c/d/e"}));
  EXPECT_EQ((*all)[0].size, 3);
  EXPECT_EQ((*all)[0].sha256, sha256_hex("a-c"));

  EXPECT_EQ(keys_of(*run_any(store_->list("a/"))), (std::vector<std::string>{"a/a/x", "a/a/y", "a/b"}));
  EXPECT_EQ(keys_of(*run_any(store_->list("a"))), (std::vector<std::string>{"a-c", "a/a/x", "a/a/y", "a/b", "ab"}));
  EXPECT_EQ(keys_of(*run_any(store_->list("a/a/"))), (std::vector<std::string>{"a/a/x", "a/a/y"}));
  EXPECT_EQ(keys_of(*run_any(store_->list("a", 2))), (std::vector<std::string>{"a-c", "a/a/x"}));
  EXPECT_TRUE(run_any(store_->list("zzz"))->empty());
  EXPECT_TRUE(run_any(store_->list("", 0))->empty());

  // Paging: each page starts after the last key of the previous one.
  std::vector<std::string> paged;
  std::string after;
  for (;;) {
    auto page = run_any(store_->list("", 2, after));
    ASSERT_TRUE(page.ok());
    if (page->empty()) break;
    for (const auto& i : *page) paged.push_back(i.key);
    after = page->back().key;
  }
  EXPECT_EQ(paged, keys_of(*all));
}

TEST_F(BlobsTest, remove_reports_existence_and_prunes_empty_directories) {
  put("x/y/z", "1");
  put("x/keep", "2");
  EXPECT_TRUE(*run_any(store_->remove("x/y/z")));
  EXPECT_FALSE(*run_any(store_->remove("x/y/z")));
  EXPECT_FALSE(fs::exists(dir_ / "x" / "y"));
  EXPECT_TRUE(fs::exists(dir_ / "x" / "keep"));
  EXPECT_FALSE(*run_any(store_->remove("x")));  // a directory is not a blob
  EXPECT_TRUE(*run_any(store_->remove("x/keep")));
  EXPECT_FALSE(fs::exists(dir_ / "x"));
  EXPECT_EQ(run_any(store_->stat("x/keep")).error().status, 404);
}

TEST_F(BlobsTest, a_key_cannot_be_both_a_blob_and_a_prefix_directory) {
  put("q", "file");
  auto under = run_any(store_->put("q/r", "x"));
  ASSERT_FALSE(under.ok());
  EXPECT_EQ(under.error().status, 409);
  put("s/t", "x");
  auto over = run_any(store_->put("s", "x"));
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().status, 409);
  EXPECT_EQ(*run_any(store_->get("q")), "file");
}

TEST_F(BlobsTest, get_and_put_helpers_round_trip_and_report_missing_blobs) {
  auto info = put("small.json", R"({"ok":true})");
  EXPECT_EQ(info.size, 11);
  EXPECT_EQ(*run_any(store_->get("small.json")), R"({"ok":true})");
  auto missing = run_any(store_->get("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().status, 404);
  auto empty = put("empty", "");
  EXPECT_EQ(empty.sha256, sha256_hex(""));
  EXPECT_EQ(*run_any(store_->get("empty")), "");
}

TEST_F(BlobsTest, file_io_runs_on_the_blocking_pool_not_on_the_callers_loop) {
  Loop loop;
  // Hold every thread of the blocking pool (far fewer than 256), with more work queued behind.
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  for (int i = 0; i < 256; ++i) asio::post(blocking_pool(), [gate] { gate.wait(); });

  std::atomic<bool> done{false}, ok{false};
  asio::co_spawn(loop.executor(), [&]() -> asio::awaitable<void> {
    auto r = co_await store_->put("held/key", "data");
    ok = r.ok();
    done = true;
  }, asio::detached);

  // The caller's loop keeps running other work...
  auto tick = [&]() -> asio::awaitable<bool> {
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(100));
    co_await t.async_wait(asio::use_awaitable);
    co_return true;
  };
  EXPECT_TRUE(loop.run(tick()));
  // ...while the write waits for the pool: nothing of it has touched the disk.
  EXPECT_FALSE(done.load());
  EXPECT_FALSE(fs::exists(dir_ / "held"));

  release.set_value();
  ASSERT_TRUE(wait_until([&] { return done.load(); }));
  EXPECT_TRUE(ok.load());
  EXPECT_EQ(*run_any(store_->get("held/key")), "data");
}

TEST(BlobStoreOpen, resolves_its_directory_and_refuses_other_urls) {
  testing::ScratchDir scratch;
  std::string data_dir = (scratch.path() / "data").string();
  auto store = BlobStore::open("", data_dir);
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE(fs::is_directory(fs::path(data_dir) / "blobs"));
  EXPECT_EQ(BlobStore::open("file://relative/dir", data_dir).error().status, 422);
  EXPECT_EQ(BlobStore::open("s3://bucket", data_dir).error().status, 422);
  EXPECT_EQ(BlobStore::open("ftp://x", data_dir).error().status, 422);
  EXPECT_FALSE(BlobStore::open("", "").ok());
}

}  // namespace
}  // namespace harmar::store
