#include "server/modules.hpp"

#include "auth/module.hpp"
#include "auth/signin_module.hpp"
#include "backups/backups.hpp"
#include "data/data.hpp"
#include "devices/devices.hpp"
#include "im/im.hpp"
#include "notify/email_module.hpp"
#include "notify/module.hpp"
#include "notify/notifications.hpp"
#include "platform/idempotency.hpp"
#include "realtime/realtime.hpp"
#include "tasks/tasks.hpp"

namespace harmar::server {

std::vector<platform::Module> all_modules() {
  std::vector<platform::Module> m;
  m.push_back(platform::platform_module());
  m.push_back(notify::module());  // before auth: it provides the Mailer auth sends with
  m.push_back(auth::module());
  m.push_back(auth::signin_module());  // after auth: it uses auth::Accounts
  m.push_back(realtime::module());
  m.push_back(im::module());  // after realtime: it pushes through Publisher and adds a Channels rule
  m.push_back(data::module());  // after realtime: it publishes through realtime::Publisher
  m.push_back(devices::module());
  m.push_back(tasks::module());
  m.push_back(backups::module());  // after tasks: restores are sent as tasks (tasks::Submitter)
  m.push_back(notify::email_module());  // after auth, devices, tasks: keys, configs per device, replies as task notes
  m.push_back(notify::notifications_module());  // last: it takes device and task events, finds Mailer, Accounts, Publisher
  // Each domain module adds itself here, after the modules whose services it finds.
  return m;
}

}  // namespace harmar::server
