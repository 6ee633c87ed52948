# Pub/sub, kv and blobs, and the Redis client behind the first two (see src/store/CMakeLists.txt).
set(HARMAR_STORE_EVENT_SOURCES
  redis.cpp
  pubsub_fanout.cpp
  pubsub.cpp
  pubsub_redis.cpp
  kv.cpp
  blobs.cpp
  blobs_s3.cpp
  detail/sigv4.cpp)
