// harmar::backups::module(): configuration keys, migrations and routes of config backups.
#include "backups/backups.hpp"
#include "backups/repo.hpp"
#include "backups/service.hpp"

namespace harmar::backups {

void install_routes(net::Router& router, platform::Services& services, std::shared_ptr<Service> svc);

platform::Module module() {
  platform::Module m;
  m.name = "backups";
  m.configure = [](config::Schema& s) {
    using config::Type;
    s.add({"backups.max_upload_bytes", Type::Size, "100MiB",
           "largest single config backup; a larger upload is 413 payload_too_large", 1, 1LL << 40});
    s.add({"backups.quota_bytes", Type::Size, "1GiB",
           "config backup bytes one account may keep; an upload past it is 409 backup_quota_exceeded", 0, 1LL << 50});
    s.add({"backups.max_per_user", Type::Int, "1000",
           "config backups one account may keep; one more is 409 backup_quota_exceeded", 1, 10'000'000});
    s.add({"backups.max_parallel_uploads", Type::Int, "2",
           "uploads one device may have in progress at once (per node); one more is 429 too_many_uploads", 1, 64});
  };
  m.migrations = repo::migrations();
  auto svc = std::make_shared<std::shared_ptr<Service>>();
  m.provide = [svc](platform::Services& s) { *svc = std::make_shared<Service>(s, Options::from(s.config)); };
  m.routes = [svc](net::Router& r, platform::Services& s) { install_routes(r, s, *svc); };
  return m;
}

}  // namespace harmar::backups
