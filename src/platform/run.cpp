#include "platform/run.hpp"

namespace harmar::platform {

std::string database_url(const config::Config& cfg) {
  std::string url = cfg.get_string("db");
  if (url.empty()) url = "sqlite://" + cfg.get_string("data_dir") + "/harmar.db";
  return url;
}

}  // namespace harmar::platform
