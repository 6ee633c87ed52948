#include "server/modules.hpp"

namespace harmar::server {

std::vector<platform::Module> all_modules() {
  std::vector<platform::Module> m;
  // Each module adds itself here: m.push_back(auth::module()); ...
  return m;
}

}  // namespace harmar::server
