#pragma once
// Collection definitions: create, change and drop them, each change one transaction that runs
// the DDL (ddl.hpp), stores the definitions and records the change with the SQL that undoes it.
// Every node's Registry follows: the node that changed something reloads at once and tells the
// others on PubSub channel "data:schema"; a periodic reload covers a lost message.
#include <boost/asio/awaitable.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "data/ddl.hpp"
#include "data/registry.hpp"
#include "store/pubsub.hpp"
#include "store/sql.hpp"

namespace harmar::data {

namespace asio = boost::asio;

struct Change {
  std::optional<Collection> before;  // nullopt: create
  std::optional<Collection> after;   // nullopt: drop
};

class Collections {
 public:
  static constexpr const char* kSchemaChannel = "data:schema";

  Collections(store::Database& db, store::PubSub* pubsub, Registry& registry);

  // Reads every definition from the database into the registry.
  asio::awaitable<Status> reload();
  // The collection, reloading once when this node does not know it (another node may have just
  // created it); 404 `collection_not_found`.
  asio::awaitable<Result<EntryPtr>> get(std::string name);
  // Definitions by name after `after`.
  asio::awaitable<Result<std::vector<Collection>>> list(std::optional<std::string> after, int limit);

  // Applies `changes` as one migration (or only plans it). The current definitions must still be
  // the `before`s (409 `conflict` otherwise); relations must point at collections that exist
  // after the change (422), and a collection others point at cannot be dropped (409).
  asio::awaitable<Result<Plan>> apply(std::vector<Change> changes, std::string source, bool dry_run);
  // Undoes the last applied change (while the definitions are still what it left); 404 if none.
  asio::awaitable<Result<Plan>> rollback_last(bool dry_run);

  // Called after a collection was dropped (blob cleanup).
  void on_dropped(std::function<void(const Collection&)> f) { on_dropped_ = std::move(f); }

  Registry& registry() { return registry_; }

 private:
  store::Database& db_;
  store::PubSub* pubsub_;
  Registry& registry_;
  std::function<void(const Collection&)> on_dropped_;
};

}  // namespace harmar::data
