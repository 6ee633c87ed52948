#pragma once
#include <memory>

#include "net/router.hpp"
#include "tasks/service.hpp"

namespace harmar::tasks {

// shared/API.md "Tasks", plus task logs, task types (pause/resume, rate limits), schedules (cron)
// and POST /v1/daemon/tasks/{id}/release.
void install_routes(net::Router& router, platform::Services& services, std::shared_ptr<Service> svc);

}  // namespace harmar::tasks
