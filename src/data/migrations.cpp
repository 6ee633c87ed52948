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
  const char* mysql =
      "CREATE TABLE data_collections ("
      " name VARCHAR(64) PRIMARY KEY, definition LONGTEXT NOT NULL, revision BIGINT NOT NULL,"
      " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
      "CREATE TABLE data_schema_history ("
      " id VARCHAR(36) PRIMARY KEY, applied_at BIGINT NOT NULL, source TEXT NOT NULL, steps LONGTEXT NOT NULL,"
      " up_sql LONGTEXT NOT NULL, down_sql LONGTEXT NOT NULL, before_defs LONGTEXT NOT NULL, after_defs LONGTEXT NOT NULL,"
      " rolled_back_at BIGINT) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;";
  return {{1, "collections and their schema history", sql, sql, mysql}};
}

}  // namespace harmar::data
