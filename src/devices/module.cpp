// harmar::devices::module(): configuration keys, migrations, the Directory other modules find,
// the routes, and the offline sweeper.
#include "auth/service.hpp"
#include "devices/api.hpp"
#include "devices/devices.hpp"
#include "devices/repo.hpp"
#include "devices/service.hpp"

namespace harmar::devices {

platform::Module module() {
  platform::Module m;
  m.name = "devices";
  m.configure = [](config::Schema& s) {
    using config::Type;
    s.add({"devices.heartbeat_timeout", Type::Duration, "90s", "a device with no heartbeat this long becomes offline",
           1000, 86'400'000});
    s.add({"devices.heartbeat_interval", Type::Duration, "30s", "how often agents are told to send a heartbeat", 1000,
           3'600'000});
    s.add({"devices.sweep_interval", Type::Duration, "5s", "how often the offline sweeper looks for silent devices", 50,
           3'600'000});
    s.add({"devices.auth_cache_ttl", Type::Duration, "5s",
           "how long a node trusts a verified device key without the database (deletion evicts at once); 0 disables", 0,
           3'600'000});
    s.add({"devices.max_per_user", Type::Int, "1000", "devices one account may register", 1, 1'000'000});
  };
  m.migrations = repo::migrations();
  auto svc = std::make_shared<std::shared_ptr<Service>>();
  m.provide = [svc](platform::Services& s) {
    *svc = std::make_shared<Service>(s, Options::from(s.config));
    s.provide<Directory>(*svc);
    // Device keys ("hdk_…") are verified by this module, through the auth module's registry.
    if (auto verifiers = s.find<auth::CredentialVerifiers>()) {
      std::weak_ptr<Service> weak = *svc;
      verifiers->add(std::string(kApiKeyPrefix), [weak](std::string token) -> asio::awaitable<Result<Principal>> {
        auto self = weak.lock();
        if (!self) co_return Error::unavailable("devices are shutting down");
        co_return co_await self->authenticate(std::move(token));
      });
    }
  };
  m.routes = [svc](net::Router& r, platform::Services& s) {
    install_routes(r, s, *svc);
    // Without the auth module (tests, minimal builds) the device verifier wraps the hook itself.
    if (!s.find<auth::CredentialVerifiers>()) s.auth = with_device_keys(s.auth, *svc);
  };
  m.start = [svc](platform::Services&) { (*svc)->start(); };
  m.stop = [svc] {
    if (*svc) (*svc)->stop();
  };
  return m;
}

}  // namespace harmar::devices
