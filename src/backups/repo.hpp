#pragma once
// The SQL of config backups: one table, config_backups, keyed by id and read per user.
#include <optional>
#include <string>
#include <vector>

#include "backups/model.hpp"
#include "store/sql.hpp"

namespace harmar::backups::repo {

using store::Querier;
namespace asio = boost::asio;

std::vector<store::Migration> migrations();

asio::awaitable<Status> insert(Querier& q, const Backup& b);
// Bytes and number of backups the user holds.
asio::awaitable<Result<Usage>> usage(Querier& q, const std::string& user_id);
// PostgreSQL: serialises quota checks of one user until the transaction ends (no-op on SQLite,
// whose write transactions are serial already).
asio::awaitable<Status> lock_user(Querier& q, store::Backend backend, const std::string& user_id);
asio::awaitable<Result<std::optional<Backup>>> get(Querier& q, const std::string& id);
// Newest first; `device_id` narrows to one device; `before` is the last id of the previous page.
asio::awaitable<Result<std::vector<Backup>>> list(Querier& q, const std::string& user_id,
                                                  const std::optional<std::string>& device_id,
                                                  const std::optional<std::string>& before, int limit);
// True if the row existed.
asio::awaitable<Result<bool>> remove(Querier& q, const std::string& id);

}  // namespace harmar::backups::repo
