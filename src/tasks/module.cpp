// harmar::tasks::module(): configuration keys, migrations, the device hooks it provides, the
// routes, and the background loop (promoter, lease expiry, cron, retention).
#include "core/metrics.hpp"
#include "tasks/api.hpp"
#include "tasks/repo.hpp"
#include "tasks/service.hpp"
#include "tasks/tasks.hpp"

namespace harmar::tasks {

platform::Module module() {
  platform::Module m;
  m.name = "tasks";
  m.configure = [](config::Schema& s) {
    using config::Type;
    s.add({"tasks.lease", Type::Duration, "60s",
           "a claimed task stays with its device this long unless progress or a heartbeat extends it", 1000, 86'400'000});
    s.add({"tasks.timeout_grace", Type::Duration, "30s",
           "past a task's timeout_s, how long before the server takes it back from a silent agent", 0, 3'600'000});
    s.add({"tasks.tick_interval", Type::Duration, "500ms",
           "how often delayed tasks are promoted, expired leases reclaimed and cron schedules run", 20, 60'000});
    s.add({"tasks.backoff_base", Type::Duration, "1s", "delay before the first retry; doubles per attempt, with jitter", 0,
           86'400'000});
    s.add({"tasks.backoff_max", Type::Duration, "1h", "longest delay between retries", 0, 7 * 86'400'000LL});
    s.add({"tasks.retention", Type::Duration, "7d", "finished tasks (and their logs) are deleted after this; 0 keeps them",
           0, 3650 * 86'400'000LL});
    s.add({"tasks.max_payload_bytes", Type::Size, "256KiB", "largest task payload and result", 1024, 1 << 20});
    s.add({"tasks.max_log_bytes", Type::Size, "1MiB", "log kept per task; later lines are dropped", 0, 64 << 20});
  };
  m.migrations = migrations();
  auto svc = std::make_shared<std::shared_ptr<Service>>();
  m.provide = [svc](platform::Services& s) {
    *svc = std::make_shared<Service>(s, Options::from(s.config), s.find<devices::Directory>());
    s.provide<devices::TaskHooks>(*svc);
    s.provide<Submitter>(*svc);
    s.provide<TaskNotes>(*svc);
  };
  m.routes = [svc](net::Router& r, platform::Services& s) { install_routes(r, s, *svc); };
  m.start = [svc](platform::Services&) {
    std::weak_ptr<Service> weak = *svc;
    metrics::registry().gauge_fn("harmar_tasks_waiting_polls", "Agents' long-polls waiting for work on this node.",
                                 [weak] {
                                   auto s = weak.lock();
                                   return s ? static_cast<double>(s->wakeups().waiting()) : 0.0;
                                 });
    (*svc)->start();
  };
  m.drain = [svc] {
    if (*svc) (*svc)->drain();
  };
  m.stop = [svc] {
    if (*svc) (*svc)->stop();
  };
  return m;
}

}  // namespace harmar::tasks
