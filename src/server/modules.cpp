#include "server/modules.hpp"

#include "platform/idempotency.hpp"

namespace harmar::server {

std::vector<platform::Module> all_modules() {
  std::vector<platform::Module> m;
  m.push_back(platform::platform_module());
  // Each domain module adds itself here, after the modules whose services it finds.
  return m;
}

}  // namespace harmar::server
