# Pub/sub, kv, blobs and the Redis client; the Redis tests need HARMAR_TEST_REDIS_URL
# (scripts/test-services.sh).
harmar_unit_test(test_store_events
  SOURCES redis_client_test.cpp redis_restart_test.cpp pubsub_test.cpp kv_test.cpp blobs_test.cpp
  DEPS harmar_store)
