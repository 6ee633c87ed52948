#pragma once
// The S3 blob backend: BlobStore on any S3-compatible server (AWS S3, MinIO, Ceph RGW, s3rver),
// signed with AWS Signature V4 (detail/sigv4.hpp), over libcurl on the blocking pool.
//
//   s3://[ACCESS_KEY:SECRET@]HOST[:PORT]/BUCKET[/KEY/PREFIX][?region=us-east-1&tls=1&style=path
//        &part_size=8MiB&timeout_s=60&check=1]
//
// The access key and secret are percent-encoded in the URL (a secret's '/' and '+' are %2F, %2B);
// without them the store reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN).
// They never appear in logs or errors (redact_blob_url).
//
// Memory stays bounded whatever the blob's size: a writer holds at most one part (part_size) and
// sends a blob larger than that as a multipart upload; a reader fetches its range in windows of
// at most 4 MiB with ranged GETs, each conditional on the ETag seen at open (a blob replaced under
// an open reader fails its next read with 409 `blob_changed`, where the filesystem keeps serving
// the old version). The sha256 of a blob is kept in its x-amz-meta-sha256 metadata.
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "store/blobs.hpp"
#include "store/detail/sigv4.hpp"

namespace harmar::store {

struct S3Options {
  bool tls = true;
  std::string host;  // the endpoint, without the bucket
  int port = 0;      // 0: the scheme's default
  std::string bucket;
  std::string prefix;  // prepended to every key; "" or ending in '/'
  std::string region = "us-east-1";
  bool path_style = true;  // https://HOST/BUCKET/KEY; false: https://BUCKET.HOST/KEY
  sigv4::Credentials creds;
  std::size_t part_size = 8 << 20;
  std::chrono::milliseconds timeout{60'000};  // one request (one part, one read window)
  bool check = true;                          // open() lists the bucket once to fail fast
};

// Parses an s3:// URL (see above); 422 naming the bad part otherwise.
Result<S3Options> parse_s3_url(std::string_view url);

// `url` with the secret of its user info replaced by "***".
std::string redact_blob_url(std::string_view url);

// Where a request for `key` (a full object key, "" for the bucket) goes.
struct S3Target {
  std::string url;            // without the query
  std::string host;           // the Host header
  std::string canonical_uri;  // the path, as signed
};
S3Target s3_target(const S3Options& opts, std::string_view object_key);

// The store; with opts.check, one synchronous request first (a wrong secret or a missing bucket
// fails here, at startup, with 502 `blob_store_auth_failed` / `blob_store_misconfigured`).
Result<std::unique_ptr<BlobStore>> open_s3_blob_store(S3Options opts);

}  // namespace harmar::store
