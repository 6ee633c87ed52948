// The data module's own tables. Collections' record tables are not migrations: they follow the
// definitions in data_collections (see ddl.hpp), changed by the collections API and CLI.
#include "data/migrations.hpp"

namespace harmar::data {

std::vector<store::Migration> migrations() {
  const char* sql =
      "CREATE TABLE data_collections ("
      " name TEXT PRIMARY KEY, definition TEXT NOT NULL, revision BIGINT NOT NULL,"
      " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
      // One row per applied schema change: what it did, the SQL that undoes it, and the
      // definitions before and after, so `harmar collections rollback` can restore them.
      "CREATE TABLE data_schema_history ("
      " id TEXT PRIMARY KEY, applied_at BIGINT NOT NULL, source TEXT NOT NULL, steps TEXT NOT NULL,"
      " up_sql TEXT NOT NULL, down_sql TEXT NOT NULL, before_defs TEXT NOT NULL, after_defs TEXT NOT NULL,"
      " rolled_back_at BIGINT);";
  return {{1, "collections and their schema history", sql, sql}};
}

}  // namespace harmar::data
