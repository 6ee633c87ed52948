// harmar::im::module(): configuration keys, migrations, routes, the conversation channel rule,
// presence and the sweepers.
#include "im/api.hpp"
#include "im/im.hpp"
#include "im/repo.hpp"
#include "im/service.hpp"

namespace harmar::im {

platform::Module module() {
  platform::Module m;
  m.name = "im";
  m.configure = [](config::Schema& s) {
    using config::Type;
    constexpr int64_t kDay = 86'400'000;
    s.add({"im.max_group_members", Type::Int, "500", "members one group conversation may have", 2, 100'000});
    s.add({"im.max_message_bytes", Type::Size, "16KiB", "the longest message body, in bytes", 1, 1 << 20});
    s.add({"im.max_ciphertext_bytes", Type::Size, "512KiB",
           "the largest ciphertext map of one end-to-end encrypted message (JSON bytes)", 1024, 16 << 20});
    s.add({"im.edit_window", Type::Duration, "24h", "how long after sending a message may be edited (0: always)", 0,
           3650 * kDay});
    s.add({"im.recall_window", Type::Duration, "24h",
           "how long after sending a message may be recalled (deleted for everyone; 0: always)", 0, 3650 * kDay});
    s.add({"im.attachment_max_bytes", Type::Size, "25MiB", "the largest attachment", 1, 32 << 20});
    s.add({"im.attachment_types", Type::StringList,
           "image/*,video/*,audio/*,text/plain,application/pdf,application/zip,application/octet-stream",
           "media types attachments may have (type/* for a whole type, */* for any)"});
    s.add({"im.sync_retention", Type::Duration, "30d",
           "how long each user's sync log keeps events (older positions answer history_gone)", 3'600'000,
           3650 * kDay});
    s.add({"im.presence_ttl", Type::Duration, "60s",
           "a node that has not refreshed its users' presence this long is taken for gone", 1000, 3'600'000});
    s.add({"im.max_keys_per_user", Type::Int, "32", "device public keys one user may register", 1, 1000});
  };
  m.migrations = repo::migrations();
  auto svc = std::make_shared<std::shared_ptr<Service>>();
  auto opts = std::make_shared<std::shared_ptr<const Options>>();
  m.provide = [svc, opts](platform::Services& s) {
    auto o = std::make_shared<const Options>(Options::from(s.config));
    *opts = o;
    *svc = std::make_shared<Service>(s, *o);
  };
  m.routes = [svc, opts](net::Router& r, platform::Services& s) { install_routes(r, s, *svc, *opts); };
  m.start = [svc](platform::Services&) { (*svc)->start(); };
  m.stop = [svc] {
    if (*svc) (*svc)->stop();
  };
  return m;
}

}  // namespace harmar::im
