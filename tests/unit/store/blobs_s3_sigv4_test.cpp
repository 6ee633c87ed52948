// AWS Signature V4 against the values AWS publishes: the "get-vanilla" cases of the SigV4 test
// suite and the worked S3 examples of "Signature Calculations for the Authorization Header"
// (docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html). Every expected value
// below is copied from those documents, none from this code's output.
#include <gtest/gtest.h>

#include "store/detail/sigv4.hpp"

namespace harmar::store::sigv4 {
namespace {

constexpr const char* kEmptySha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// The S3 examples' credentials and time.
const Credentials kS3Doc{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
constexpr const char* kS3Date = "20130524T000000Z";
constexpr const char* kS3Host = "examplebucket.s3.amazonaws.com";

// The SigV4 test suite's credentials and time.
const Credentials kSuite{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
constexpr const char* kSuiteDate = "20150830T123600Z";

TEST(SigV4, test_suite_get_vanilla) {
  Request req{"GET", "/", {}, {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", kSuiteDate}}, kEmptySha};
  auto s = sign(req, kSuite, "us-east-1", "service", kSuiteDate);
  EXPECT_EQ(s.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST(SigV4, test_suite_get_vanilla_query_order_key_case_sorts_the_query) {
  Request req{"GET", "/", {{"Param2", "value2"}, {"Param1", "value1"}},
              {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", kSuiteDate}}, kEmptySha};
  auto s = sign(req, kSuite, "us-east-1", "service", kSuiteDate);
  EXPECT_EQ(s.signature, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

TEST(SigV4, s3_example_get_object_with_range) {
  Request req{"GET",
              "/test.txt",
              {},
              {{"Host", kS3Host}, {"Range", "bytes=0-9"}, {"x-amz-content-sha256", kEmptySha}, {"x-amz-date", kS3Date}},
              kEmptySha};
  auto s = sign(req, kS3Doc, "us-east-1", "s3", kS3Date);
  EXPECT_EQ(s.canonical_request,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
            "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(s.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  EXPECT_EQ(s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4, s3_example_put_object_with_an_escaped_key_and_a_signed_payload) {
  std::string body_sha = sha256_hex("Welcome to Amazon S3.");
  EXPECT_EQ(body_sha, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  EXPECT_EQ(uri_encode("/test$file.text", true), "/test%24file.text");
  Request req{"PUT",
              uri_encode("/test$file.text", true),
              {},
              {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
               {"Host", kS3Host},
               {"x-amz-date", kS3Date},
               {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
               {"x-amz-content-sha256", body_sha}},
              body_sha};
  auto s = sign(req, kS3Doc, "us-east-1", "s3", kS3Date);
  EXPECT_EQ(s.signed_headers, "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class");
  EXPECT_EQ(s.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(SigV4, s3_example_get_bucket_lifecycle_signs_a_valueless_query_parameter) {
  Request req{"GET", "/", {{"lifecycle", ""}},
              {{"Host", kS3Host}, {"x-amz-content-sha256", kEmptySha}, {"x-amz-date", kS3Date}}, kEmptySha};
  auto s = sign(req, kS3Doc, "us-east-1", "s3", kS3Date);
  EXPECT_EQ(s.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST(SigV4, s3_example_list_objects_sorts_its_query) {
  Request req{"GET", "/", {{"prefix", "J"}, {"max-keys", "2"}},
              {{"Host", kS3Host}, {"x-amz-content-sha256", kEmptySha}, {"x-amz-date", kS3Date}}, kEmptySha};
  auto s = sign(req, kS3Doc, "us-east-1", "s3", kS3Date);
  EXPECT_EQ(s.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(SigV4, encodes_every_byte_but_the_unreserved_ones) {
  EXPECT_EQ(uri_encode("a b*(c)~-_.", false), "a%20b%2A%28c%29~-_.");
  EXPECT_EQ(uri_encode("a/b=c&d+", false), "a%2Fb%3Dc%26d%2B");
  EXPECT_EQ(uri_encode("a/b", true), "a/b");
  EXPECT_EQ(uri_encode("\xc3\xbc", false), "%C3%BC");
  EXPECT_EQ(amz_date(std::chrono::system_clock::time_point(std::chrono::seconds(1369353600))), "20130524T000000Z");
}

}  // namespace
}  // namespace harmar::store::sigv4
