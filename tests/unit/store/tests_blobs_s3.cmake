# The blob-store suite on the filesystem and on S3 (needs HARMAR_TEST_S3_URL from
# scripts/test-services.sh), and SigV4 against AWS's published examples.
harmar_unit_test(test_store_blobs_s3
  SOURCES blobs_s3_test.cpp blobs_s3_sigv4_test.cpp
  DEPS harmar_store)
