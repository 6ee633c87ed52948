// One blob-store suite run on both backends: the filesystem and a real S3-compatible server
// (npm s3rver, started by scripts/test-services.sh; its URL is HARMAR_TEST_S3_URL). Each S3 test
// works under its own key prefix in the shared bucket. Then what only S3 has: URL parsing,
// credentials, addressing styles and the errors of a wrong secret.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <fstream>
#include <random>

#include "core/blocking.hpp"
#include "events_support.hpp"
#include "store/blobs.hpp"
#include "store/blobs_s3.hpp"
#include "blobs_support.hpp"

namespace harmar::store {
namespace {

using testing::run_any;
using testing::wait_until;


constexpr std::size_t kMiB = 1 << 20;

class Sha {
 public:
  Sha() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha() { EVP_MD_CTX_free(ctx_); }
  void update(std::string_view d) { EVP_DigestUpdate(ctx_, d.data(), d.size()); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md, &n);
    std::string out;
    for (unsigned i = 0; i < n; ++i) out += fmt::format("{:02x}", md[i]);
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

using testing_blobs::keys_of;
using testing_blobs::random_bytes;
using testing_blobs::sha256_hex;



// The test S3 URL with a key prefix (a path after the bucket) and extra query parameters.
std::string s3_url(const std::string& prefix, const std::string& extra = "") {
  std::string url = testing::require_env("HARMAR_TEST_S3_URL");
  std::string query;
  if (auto q = url.find('?'); q != std::string::npos) {
    query = url.substr(q);
    url.resize(q);
  }
  url += "/" + prefix;
  if (!extra.empty()) query += (query.empty() ? "?" : "&") + extra;
  return url + query;
}

// "VmHWM" / "VmRSS" of this process, in bytes.
int64_t proc_status_kib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field + ":")) return std::stoll(line.substr(field.size() + 1)) * 1024;
  }
  return -1;
}

enum class Backend { Fs, S3 };

class BlobBackend : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::string url = GetParam() == Backend::Fs
                          ? "file://" + (scratch_.path() / "blobs").string()
                          : s3_url(testing::unique_name("t"), "part_size=5MiB");
    auto store = BlobStore::open(url, "");
    ASSERT_TRUE(store.ok()) << store.error().code << ": " << store.error().detail;
    store_ = std::move(store).value();
  }

  BlobInfo put(const std::string& key, std::string_view data) {
    auto r = run_any(store_->put(key, data));
    if (!r.ok()) throw std::runtime_error(r.error().detail);
    return std::move(r).value();
  }
  std::vector<std::string> keys(const std::string& prefix, std::size_t limit = 1000, const std::string& after = "") {
    auto r = run_any(store_->list(prefix, limit, after));
    if (!r.ok()) throw std::runtime_error(r.error().code + ": " + r.error().detail);
    return keys_of(*r);
  }
  std::string read_range(const std::string& key, int64_t offset, std::optional<int64_t> length, std::size_t piece) {
    return testing_blobs::read_range(*store_, key, offset, length, piece);
  }

  testing::ScratchDir scratch_;
  std::unique_ptr<BlobStore> store_;
};

TEST_P(BlobBackend, streams_past_the_part_size_and_reads_ranges_back) {
  // 12 MiB and a bit: three parts of a multipart upload on S3 (parts of 5 MiB).
  const std::string data = random_bytes(12 * kMiB + 123);
  auto writer = run_any(store_->create("uploads/big.bin"));
  ASSERT_TRUE(writer.ok()) << writer.error().detail;
  std::size_t pos = 0, chunk = 1;
  while (pos < data.size()) {
    std::size_t n = std::min(data.size() - pos, chunk);
    auto st = run_any((*writer)->write(std::string_view(data).substr(pos, n)));
    ASSERT_TRUE(st.ok()) << st.error().detail;
    pos += n;
    chunk = chunk * 7 % (1024 * 1024) + 1;
  }
  auto info = run_any((*writer)->commit());
  ASSERT_TRUE(info.ok()) << info.error().code << ": " << info.error().detail;
  EXPECT_EQ(info->key, "uploads/big.bin");
  EXPECT_EQ(info->size, static_cast<int64_t>(data.size()));
  EXPECT_EQ(info->sha256, sha256_hex(data));
  EXPECT_GT(info->modified_ms, 0);
  EXPECT_EQ(run_any((*writer)->commit()).error().status, 409);

  auto stat = run_any(store_->stat("uploads/big.bin"));
  ASSERT_TRUE(stat.ok()) << stat.error().detail;
  EXPECT_EQ(stat->size, info->size);
  EXPECT_EQ(stat->sha256, info->sha256);
  EXPECT_GT(stat->modified_ms, 0);

  EXPECT_EQ(sha256_hex(read_range("uploads/big.bin", 0, std::nullopt, 300 * 1024)), info->sha256);
  EXPECT_EQ(read_range("uploads/big.bin", 0, 1, 10), data.substr(0, 1));
  EXPECT_EQ(read_range("uploads/big.bin", 1000, 5000, 777), data.substr(1000, 5000));
  // Across the S3 reader's 4 MiB windows and the 5 MiB part boundary.
  EXPECT_EQ(read_range("uploads/big.bin", 4 * kMiB - 10, 2 * kMiB, 1 << 16), data.substr(4 * kMiB - 10, 2 * kMiB));
  EXPECT_EQ(read_range("uploads/big.bin", 5 * kMiB + 7, std::nullopt, 3 * kMiB),
            data.substr(5 * kMiB + 7));
  EXPECT_EQ(read_range("uploads/big.bin", data.size() - 5, 1000, 4096), data.substr(data.size() - 5));
  EXPECT_EQ(read_range("uploads/big.bin", data.size(), std::nullopt, 4096), "");

  auto past = run_any(store_->open("uploads/big.bin", data.size() + 1));
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().status, 416);
  EXPECT_EQ(run_any(store_->open("uploads/big.bin", -1)).error().status, 422);
  auto reader = run_any(store_->open("uploads/big.bin", 0, 10));
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->info().size, static_cast<int64_t>(data.size()));
  EXPECT_EQ((*reader)->info().sha256, info->sha256);
  EXPECT_EQ(run_any((*reader)->read(0)).error().status, 422);
}

TEST_P(BlobBackend, small_blobs_round_trip_and_missing_ones_are_404) {
  auto info = put("small.json", R"({"ok":true})");
  EXPECT_EQ(info.size, 11);
  EXPECT_EQ(info.sha256, sha256_hex(R"({"ok":true})"));
  EXPECT_EQ(*run_any(store_->get("small.json")), R"({"ok":true})");
  EXPECT_EQ(run_any(store_->stat("small.json"))->sha256, info.sha256);
  auto empty = put("empty", "");
  EXPECT_EQ(empty.sha256, sha256_hex(""));
  EXPECT_EQ(*run_any(store_->get("empty")), "");
  EXPECT_EQ(run_any(store_->stat("empty"))->size, 0);
  for (const char* missing : {"nope", "a/b/nope"}) {
    EXPECT_EQ(run_any(store_->get(missing)).error().status, 404);
    EXPECT_EQ(run_any(store_->stat(missing)).error().status, 404);
    EXPECT_EQ(run_any(store_->open(missing)).error().status, 404);
  }
  // Replacing keeps one blob under the key, with the new content.
  put("small.json", "second");
  EXPECT_EQ(*run_any(store_->get("small.json")), "second");
  EXPECT_EQ(keys(""), (std::vector<std::string>{"empty", "small.json"}));
}

TEST_P(BlobBackend, refuses_bad_keys_before_touching_storage) {
  for (const std::string& key : {std::string(), std::string("/abs"), std::string("a//b"), std::string("../up"),
                                 std::string(".hidden"), std::string("sp ace"), std::string(513, 'k')}) {
    EXPECT_EQ(run_any(store_->create(key)).error().status, 422) << key;
    EXPECT_EQ(run_any(store_->open(key)).error().status, 422) << key;
    EXPECT_EQ(run_any(store_->stat(key)).error().status, 422) << key;
    EXPECT_EQ(run_any(store_->remove(key)).error().status, 422) << key;
  }
  EXPECT_EQ(run_any(store_->list("../")).error().status, 422);
}

TEST_P(BlobBackend, a_dropped_writer_leaves_no_blob_even_after_parts_were_sent) {
  {
    auto writer = run_any(store_->create("drafts/unfinished"));
    ASSERT_TRUE(writer.ok());
    const std::string part = random_bytes(6 * kMiB);  // more than a part: S3 has an upload going
    ASSERT_TRUE(run_any((*writer)->write(part)).ok());
  }
  EXPECT_EQ(run_any(store_->stat("drafts/unfinished")).error().status, 404);
  EXPECT_TRUE(keys("").empty());
  // A later writer of the same key starts afresh.
  put("drafts/unfinished", "done");
  EXPECT_EQ(*run_any(store_->get("drafts/unfinished")), "done");
}

// s3rver lists in the order of its directory walk, where "a-c" comes after "a/…" (S3 itself, and
// the filesystem store, list in byte order: blobs_test.cpp covers "a-c"); '_' sorts after '/' in
// both orders.
TEST_P(BlobBackend, lists_by_prefix_in_key_order_with_limits_and_pages) {
  for (const char* key : {"b", "a/b", "ab", "a_c", "a/a/x", "a/a/y", "c/d/e"}) put(key, key);
  auto writer = run_any(store_->create("a/pending"));  // uncommitted: never listed
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(run_any((*writer)->write("x")).ok());

  auto all = run_any(store_->list(""));
  ASSERT_TRUE(all.ok()) << all.error().detail;
  EXPECT_EQ(keys_of(*all), (std::vector<std::string>{"a/a/x", "a/a/y", "a/b", "a_c", "ab", "b", "c/d/e"}));
  EXPECT_EQ((*all)[0].size, 5);
  EXPECT_GT((*all)[0].modified_ms, 0);
  EXPECT_EQ(keys("a/"), (std::vector<std::string>{"a/a/x", "a/a/y", "a/b"}));
  EXPECT_EQ(keys("a"), (std::vector<std::string>{"a/a/x", "a/a/y", "a/b", "a_c", "ab"}));
  EXPECT_EQ(keys("a", 2), (std::vector<std::string>{"a/a/x", "a/a/y"}));
  EXPECT_TRUE(keys("zzz").empty());
  EXPECT_TRUE(keys("", 0).empty());

  std::vector<std::string> paged;
  std::string after;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = run_any(store_->list("", 2, after));
    ASSERT_TRUE(page.ok());
    if (page->empty()) break;
    EXPECT_LE(page->size(), 2u);
    for (const auto& i : *page) paged.push_back(i.key);
    after = page->back().key;
  }
  EXPECT_EQ(paged, keys_of(*all));
  EXPECT_EQ(keys("a/", 10, "a/a/x"), (std::vector<std::string>{"a/a/y", "a/b"}));
}

TEST_P(BlobBackend, lists_more_keys_than_one_server_page) {
  // S3 answers at most 1000 keys a page: 1100 keys need the continuation token.
  for (int i = 0; i < 1100; ++i) put(fmt::format("many/{:05d}", i), "");
  auto all = run_any(store_->list("many/", 5000));
  ASSERT_TRUE(all.ok()) << all.error().detail;
  ASSERT_EQ(all->size(), 1100u);
  EXPECT_EQ(all->front().key, "many/00000");
  EXPECT_EQ(all->back().key, "many/01099");
  EXPECT_TRUE(std::is_sorted(all->begin(), all->end(), [](auto& a, auto& b) { return a.key < b.key; }));
  EXPECT_EQ(run_any(store_->list("many/", 1050))->size(), 1050u);
}

TEST_P(BlobBackend, remove_reports_whether_the_blob_existed) {
  put("x/y/z", "1");
  put("x/keep", "2");
  EXPECT_TRUE(*run_any(store_->remove("x/y/z")));
  EXPECT_FALSE(*run_any(store_->remove("x/y/z")));
  EXPECT_EQ(run_any(store_->stat("x/y/z")).error().status, 404);
  EXPECT_EQ(*run_any(store_->get("x/keep")), "2");
  EXPECT_EQ(keys("x/"), std::vector<std::string>{"x/keep"});
}

TEST_P(BlobBackend, a_64_mib_blob_streams_through_in_bounded_memory) {
  constexpr std::size_t kTotal = 64 * kMiB;
  constexpr std::size_t kChunk = 256 * 1024;
  std::mt19937_64 rng{7};
  std::string chunk(kChunk, '\0');
  Sha expected;
  // Forget the peak so far (earlier tests held whole blobs in memory): VmHWM restarts at VmRSS.
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  int64_t rss_before = proc_status_kib("VmRSS");
  ASSERT_GT(rss_before, 0);

  auto writer = run_any(store_->create("big/64m"));
  ASSERT_TRUE(writer.ok());
  for (std::size_t sent = 0; sent < kTotal; sent += kChunk) {
    for (auto& c : chunk) c = static_cast<char>(rng());
    expected.update(chunk);
    auto st = run_any((*writer)->write(chunk));
    ASSERT_TRUE(st.ok()) << st.error().detail;
  }
  auto info = run_any((*writer)->commit());
  ASSERT_TRUE(info.ok()) << info.error().detail;
  std::string sha = expected.hex();
  EXPECT_EQ(info->sha256, sha);
  EXPECT_EQ(info->size, static_cast<int64_t>(kTotal));

  auto reader = run_any(store_->open("big/64m"));
  ASSERT_TRUE(reader.ok());
  Sha got;
  std::size_t total = 0;
  for (;;) {
    auto piece = run_any((*reader)->read(kChunk));
    ASSERT_TRUE(piece.ok()) << piece.error().detail;
    if (piece->empty()) break;
    total += piece->size();
    got.update(*piece);
  }
  EXPECT_EQ(total, kTotal);
  EXPECT_EQ(got.hex(), sha);
  int64_t growth = proc_status_kib("VmHWM") - rss_before;
  // One part (5 MiB) or one read window (4 MiB) at a time, plus buffers: far below the blob.
  EXPECT_LT(growth, int64_t{24 * kMiB}) << "peak RSS grew by " << growth / kMiB << " MiB";
  EXPECT_TRUE(*run_any(store_->remove("big/64m")));
}

std::string backend_name(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::Fs ? "Fs" : "S3";
}
INSTANTIATE_TEST_SUITE_P(Backends, BlobBackend, ::testing::Values(Backend::Fs, Backend::S3), backend_name);

// --- S3 only ------------------------------------------------------------------------------------

TEST(BlobsS3, a_blob_replaced_under_an_open_reader_fails_its_next_window) {
  auto store = BlobStore::open(s3_url(testing::unique_name("r")), "");
  ASSERT_TRUE(store.ok()) << store.error().detail;
  const std::string v1 = random_bytes(6 * kMiB, 1);
  ASSERT_TRUE(run_any((*store)->put("doc", v1)).ok());
  auto reader = run_any((*store)->open("doc"));
  ASSERT_TRUE(reader.ok());
  auto first = run_any((*reader)->read(kMiB));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, v1.substr(0, kMiB));
  ASSERT_TRUE(run_any((*store)->put("doc", random_bytes(6 * kMiB, 2))).ok());
  // The rest of the first 4 MiB window was read before the change; the next window is refused.
  Result<std::string> r = std::string();
  std::string rest;
  for (int i = 0; i < 20; ++i) {
    r = run_any((*reader)->read(kMiB));
    if (!r.ok() || r->empty()) break;
    rest += *r;
  }
  ASSERT_FALSE(r.ok()) << "read " << rest.size() << " more bytes of a replaced blob";
  EXPECT_EQ(r.error().status, 409);
  EXPECT_EQ(r.error().code, "blob_changed");
  EXPECT_EQ(rest, v1.substr(kMiB, 3 * kMiB));
}

TEST(BlobsS3, a_wrong_secret_is_a_clear_error_that_does_not_quote_it) {
  std::string url = testing::require_env("HARMAR_TEST_S3_URL");
  auto opts = parse_s3_url(url);
  ASSERT_TRUE(opts.ok()) << opts.error().detail;
  opts->creds.secret_key = "not-the-secret-x7";
  auto store = open_s3_blob_store(*opts);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().status, 502);
  EXPECT_EQ(store.error().code, "blob_store_auth_failed");
  EXPECT_NE(store.error().detail.find("SignatureDoesNotMatch"), std::string::npos) << store.error().detail;
  EXPECT_EQ(store.error().detail.find("not-the-secret-x7"), std::string::npos);

  // Without the check at open, the first request fails the same way.
  opts->check = false;
  auto unchecked = open_s3_blob_store(*opts);
  ASSERT_TRUE(unchecked.ok());
  auto put = run_any((*unchecked)->put("k", "v"));
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.error().code, "blob_store_auth_failed");
  EXPECT_EQ(run_any((*unchecked)->stat("k")).error().code, "blob_store_auth_failed");

  opts->creds.secret_key = parse_s3_url(url)->creds.secret_key;
  opts->check = true;
  opts->bucket = "no-such-bucket-here";
  auto missing = open_s3_blob_store(*opts);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, "blob_store_misconfigured");
}

TEST(BlobsS3, an_unreachable_server_is_503_after_bounded_retries) {
  // A port nothing listens on (bound, then closed).
  int port = 0;
  {
    asio::io_context ioc;
    asio::ip::tcp::acceptor a(ioc, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }
  auto opts = parse_s3_url("s3://k:s@127.0.0.1:" + std::to_string(port) + "/bucket?tls=0&check=0");
  ASSERT_TRUE(opts.ok());
  auto store = open_s3_blob_store(*opts);
  ASSERT_TRUE(store.ok());
  auto start = std::chrono::steady_clock::now();
  auto r = run_any((*store)->stat("k"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 503);
  EXPECT_EQ(r.error().code, "blob_store_unavailable");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(BlobsS3Url, parses_credentials_endpoint_bucket_prefix_and_options) {
  auto o = parse_s3_url("s3://AKID:se%2Fcr%2Bet@minio.local:9000/my-bucket/backups/v1/?region=eu-west-1&tls=0"
                        "&part_size=16MiB&timeout_s=30");
  ASSERT_TRUE(o.ok()) << o.error().detail;
  EXPECT_EQ(o->creds.access_key, "AKID");
  EXPECT_EQ(o->creds.secret_key, "se/cr+et");
  EXPECT_EQ(o->host, "minio.local");
  EXPECT_EQ(o->port, 9000);
  EXPECT_EQ(o->bucket, "my-bucket");
  EXPECT_EQ(o->prefix, "backups/v1/");
  EXPECT_EQ(o->region, "eu-west-1");
  EXPECT_FALSE(o->tls);
  EXPECT_TRUE(o->path_style);
  EXPECT_EQ(o->part_size, 16 * kMiB);
  EXPECT_EQ(o->timeout, std::chrono::seconds(30));

  auto path = s3_target(*o, "backups/v1/a/b.txt");
  EXPECT_EQ(path.url, "http://minio.local:9000/my-bucket/backups/v1/a/b.txt");
  EXPECT_EQ(path.host, "minio.local:9000");
  EXPECT_EQ(path.canonical_uri, "/my-bucket/backups/v1/a/b.txt");

  auto v = parse_s3_url("s3://AKID:x@s3.eu-west-1.amazonaws.com/my-bucket?style=virtual&region=eu-west-1");
  ASSERT_TRUE(v.ok());
  auto vhost = s3_target(*v, "a/b.txt");
  EXPECT_EQ(vhost.url, "https://my-bucket.s3.eu-west-1.amazonaws.com/a/b.txt");
  EXPECT_EQ(vhost.host, "my-bucket.s3.eu-west-1.amazonaws.com");
  EXPECT_EQ(vhost.canonical_uri, "/a/b.txt");
  EXPECT_EQ(s3_target(*v, "").canonical_uri, "/");
}

TEST(BlobsS3Url, refuses_bad_urls_with_the_reason) {
  for (const char* bad : {"s3://k:s@host", "s3://k:s@host/B", "s3://k:s@host:0/bucket", "s3://k:s@host:x/bucket",
                          "s3://k:s@/bucket", "s3://k:s@host/bucket?tls=2", "s3://k:s@host/bucket?part_size=1MiB",
                          "s3://k:s@host/bucket?colour=red", "s3://k:s@host/bucket/../x", "s3://ks@host/bucket"}) {
    auto o = parse_s3_url(bad);
    ASSERT_FALSE(o.ok()) << bad;
    EXPECT_EQ(o.error().status, 422) << bad;
    EXPECT_NE(o.error().detail.find("invalid S3 blob URL"), std::string::npos);
  }
}

TEST(BlobsS3Url, takes_credentials_from_the_environment_when_the_url_has_none) {
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  auto none = parse_s3_url("s3://host/bucket");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().detail.find("AWS_ACCESS_KEY_ID"), std::string::npos);
  ::setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
  auto env = parse_s3_url("s3://host/bucket");
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->creds.access_key, "ENVKEY");
  EXPECT_EQ(env->creds.secret_key, "ENVSECRET");
}

TEST(BlobsS3Url, redacts_the_secret_for_logs) {
  EXPECT_EQ(redact_blob_url("s3://AKID:s3cr%2Fet@host:9000/bucket?tls=0"), "s3://AKID:***@host:9000/bucket?tls=0");
  EXPECT_EQ(redact_blob_url("s3://host/bucket"), "s3://host/bucket");
  EXPECT_EQ(redact_blob_url("file:///data/blobs"), "file:///data/blobs");
  auto err = BlobStore::open("s4://AKID:topsecret@host/bucket", "");
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.error().detail.find("topsecret"), std::string::npos) << err.error().detail;
}

}  // namespace
}  // namespace harmar::store
