#pragma once
// The tasks module: a durable queue of work for devices (shared/API.md "Tasks"). See service.hpp
// for the guarantees and the claim/lease algorithm.
#include "platform/module.hpp"

namespace harmar::tasks {

platform::Module module();

}  // namespace harmar::tasks
