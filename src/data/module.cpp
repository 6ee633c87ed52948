#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/log.hpp"
#include "data/api.hpp"
#include "data/cache.hpp"
#include "data/data.hpp"
#include "data/list_cache.hpp"
#include "data/migrations.hpp"
#include "data/plan_check.hpp"
#include "realtime/realtime.hpp"

namespace harmar::data {

namespace {

using config::Type;

void add_config_keys(config::Schema& s) {
  s.add({"data.max_file_bytes", Type::Size, "20MiB", "largest file a `file` field takes (a field's max may lower it)", 1,
         32 << 20});
  s.add({"data.max_record_bytes", Type::Size, "1MiB", "largest document of a document collection", 1024, 16 << 20});
  s.add({"data.max_json_bytes", Type::Size, "256KiB", "largest value of a json field without its own max", 16, 16 << 20});
  s.add({"data.max_batch", Type::Int, "100", "operations in one POST .../batch (one transaction)", 1, 10'000});
  s.add({"data.import_max_bytes", Type::Size, "64MiB", "largest body of POST .../import", 1024, int64_t(1) << 30});
  s.add({"data.import_max_records", Type::Int, "100000", "records in one import", 1, 10'000'000});
  s.add({"data.export_max_records", Type::Int, "100000", "records in one export (narrow larger ones with a filter)", 1,
         10'000'000});
  s.add({"data.cache", Type::Bool, "true", "with --redis: cache records read by id (local LRU + Redis, invalidated on write)"});
  s.add({"data.cache_ttl", Type::Duration, "60s", "how long Redis keeps a cached record", 1000, 86'400'000});
  s.add({"data.cache_local_ttl", Type::Duration, "5s", "how long a node's LRU keeps a cached record", 0, 3'600'000});
  s.add({"data.cache_local_entries", Type::Int, "10000", "records a node's LRU holds (0: no local tier)", 0, 10'000'000});
  s.add({"data.list_cache", Type::Bool, "true",
         "keep pages of record lists in memory until their collection is written (with --redis, on any node)"});
  s.add({"data.list_cache_bytes", Type::Size, "16MiB", "memory the list cache may hold", 0, int64_t(1) << 32});
  s.add({"data.list_cache_ttl", Type::Duration, "5s",
         "how long a kept list page may be served (bounds staleness when another node's invalidation is lost)", 1,
         3'600'000});
  s.add({"data.unindexed_filters", Type::String, "warn",
         "a filter whose query plan reads a whole large collection: warn (log + Warning header), refuse (400) or off",
         0, INT64_MAX, {"warn", "refuse", "off"}});
  s.add({"data.plan_check_rows", Type::Int, "10000", "collections with at least this many records get the query-plan check",
         1, INT64_MAX});
}

struct State {
  std::shared_ptr<ApiState> api = std::make_shared<ApiState>();
  std::shared_ptr<RecordCache> cache;
  std::shared_ptr<ListCache> lists;
  std::unique_ptr<store::Subscription> schema_sub;
  std::shared_ptr<asio::steady_timer> timer;
  std::shared_ptr<bool> stopped = std::make_shared<bool>(false);
};

asio::awaitable<void> reload_forever(std::shared_ptr<Collections> collections, std::shared_ptr<asio::steady_timer> timer,
                                     std::shared_ptr<bool> stopped) {
  while (!*stopped) {
    auto st = co_await collections->reload();
    if (!st) log::get("data")->warn(log::fields({{"msg", "collections reload failed"}, {"error", st.error().detail}}));
    timer->expires_after(std::chrono::seconds(30));
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> reload_once(std::shared_ptr<Collections> collections) {
  auto st = co_await collections->reload();
  (void)st;
}

asio::awaitable<void> publish_event(std::shared_ptr<realtime::Publisher> publisher, std::string collection,
                                    std::string type, js::object record) {
  auto seq = co_await publisher->publish("collection:" + collection, std::move(type), std::move(record));
  if (!seq)
    log::get("data")->warn(log::fields({{"msg", "record event not published"}, {"collection", collection},
                                        {"error", seq.error().detail}}));
}

asio::awaitable<realtime::Access> channel_access(platform::Services* s, std::shared_ptr<ApiState> api, Principal who,
                                                 std::string channel) {
  realtime::Access access;
  std::string name = channel.substr(std::string_view("collection:").size());
  auto e = co_await api->collections->get(name);
  if (!e) co_return access;
  if (is_admin(*s, who)) {
    access.allowed = true;
    co_return access;
  }
  if ((*e)->c.rule(Operation::View).admins_only()) co_return access;
  access.allowed = true;
  Caller caller;
  caller.who = std::move(who);
  // The view rule as it is when each event arrives, applied to the event's record.
  access.filter = [registry = api->registry, name, caller](const js::object& record) {
    EntryPtr entry = registry->find(name);
    if (!entry) return false;
    RequestContext ctx = caller.context();
    return rule_allows(entry->c.rule(Operation::View), entry->c, record, ctx);
  };
  co_return access;
}

}  // namespace

platform::Module module() {
  auto state = std::make_shared<State>();
  platform::Module m;
  m.name = "data";
  m.configure = add_config_keys;
  m.migrations = migrations();

  m.provide = [state](platform::Services& s) {
    auto& api = *state->api;
    api.registry = std::make_shared<Registry>();
    api.collections = std::make_shared<Collections>(s.db, &s.pubsub, *api.registry);
    RecordSettings rs;
    rs.codec.max_document_bytes = static_cast<std::size_t>(s.config.get_size("data.max_record_bytes"));
    rs.codec.max_json_bytes = static_cast<std::size_t>(s.config.get_size("data.max_json_bytes"));
    rs.max_batch = static_cast<std::size_t>(s.config.get_int("data.max_batch"));
    rs.max_import_records = static_cast<std::size_t>(s.config.get_int("data.import_max_records"));
    rs.max_export_records = static_cast<std::size_t>(s.config.get_int("data.export_max_records"));
    rs.max_file_bytes = s.config.get_size("data.max_file_bytes");
    api.import_max_bytes = s.config.get_size("data.import_max_bytes");
    api.records = std::make_shared<Records>(s.db, *api.collections, s.blobs, rs);
    auto mode = PlanChecker::parse_mode(s.config.get_string("data.unindexed_filters")).value_or(PlanChecker::Mode::Warn);
    if (mode != PlanChecker::Mode::Off)
      api.records->set_plan_checker(std::make_shared<PlanChecker>(s.db, mode, s.config.get_int("data.plan_check_rows")));
    if (!s.config.get_string("redis").empty() && s.config.get_bool("data.cache")) {
      RecordCache::Options co;
      co.ttl_ms = s.config.get_duration_ms("data.cache_ttl");
      co.local_ttl_ms = s.config.get_duration_ms("data.cache_local_ttl");
      co.local_entries = static_cast<std::size_t>(s.config.get_int("data.cache_local_entries"));
      state->cache = std::make_shared<RecordCache>(s.kv, s.pubsub, co);
      api.records->set_cache(state->cache);
    }
    if (s.config.get_bool("data.list_cache") && s.config.get_size("data.list_cache_bytes") > 0) {
      ListCache::Options lo;
      lo.max_bytes = static_cast<std::size_t>(s.config.get_size("data.list_cache_bytes"));
      lo.ttl_ms = s.config.get_duration_ms("data.list_cache_ttl");
      state->lists = std::make_shared<ListCache>(lo);
      api.records->set_list_cache(state->lists);
    }
    std::weak_ptr<Records> records = api.records;
    platform::Services* services = &s;
    api.collections->on_dropped([records, services](const Collection& c) {
      if (auto r = records.lock()) asio::co_spawn(services->background, r->remove_collection_blobs(c.name), asio::detached);
    });
    if (auto publisher = s.find<realtime::Publisher>()) {
      api.records->set_publisher([publisher](std::string collection, std::string type, js::object record) {
        return publish_event(publisher, std::move(collection), std::move(type), std::move(record));
      });
    }
    if (auto channels = s.find<realtime::Channels>()) {
      channels->add_rule("collection:", [services, api = state->api](const Principal& who, std::string_view channel) {
        return channel_access(services, api, who, std::string(channel));
      });
    }
  };

  m.routes = [state](net::Router& r, platform::Services& s) { install_routes(r, s, state->api); };

  m.start = [state](platform::Services& s) {
    auto collections = state->api->collections;
    auto ex = s.background.get_executor();
    state->schema_sub = s.pubsub.subscribe(Collections::kSchemaChannel, ex, [collections, ex](std::string_view, std::string_view) {
      asio::co_spawn(ex, reload_once(collections), asio::detached);
    });
    if (state->cache) state->cache->start(ex);
    if (state->lists && !s.config.get_string("redis").empty()) state->lists->share(s.pubsub, ex);
    state->timer = std::make_shared<asio::steady_timer>(s.background);
    asio::co_spawn(s.background, reload_forever(collections, state->timer, state->stopped), asio::detached);
  };

  m.stop = [state] {
    *state->stopped = true;
    if (state->timer) asio::post(state->timer->get_executor(), [t = state->timer] { t->cancel(); });
    state->schema_sub.reset();
  };
  return m;
}

}  // namespace harmar::data
