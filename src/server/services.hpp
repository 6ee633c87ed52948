#pragma once
// What the composition root hands each module when it installs its routes.
#include <memory>

#include "core/config.hpp"
#include "net/router.hpp"
#include "store/blobs.hpp"
#include "store/kv.hpp"
#include "store/pubsub.hpp"
#include "store/sql.hpp"

namespace harmar::server {

struct Services {
  const config::Config& config;
  store::Database& db;
  store::PubSub& pubsub;
  store::Kv& kv;
  store::BlobStore& blobs;
};

}  // namespace harmar::server
