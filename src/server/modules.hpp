#pragma once
// Every domain module `harmar serve` runs, in dependency order (a module may find() what an
// earlier one provides).
#include <vector>

#include "platform/module.hpp"

namespace harmar::server {

std::vector<platform::Module> all_modules();

}  // namespace harmar::server
