#pragma once
// Schema changes of collections as SQL, per backend: the table of a collection, its columns,
// indexes and (document collections) JSON-path indexes, and the plan that takes a set of
// collections from one definition to another, with the SQL that undoes it.
//
// Every record table has `id` (UUIDv7, primary key), `created_at`, `updated_at` (Unix ms) and
// `version` (starts at 1, +1 per write). A table collection adds one column per field:
//
//   field      SQLite    PostgreSQL          MariaDB/MySQL
//   text       TEXT      TEXT COLLATE "C"    LONGTEXT (utf8mb4_nopad_bin)
//   number     REAL      DOUBLE PRECISION    DOUBLE
//   bool       INTEGER   BOOLEAN             BOOLEAN
//   datetime   INTEGER   BIGINT              BIGINT      (Unix ms)
//   json       TEXT      JSONB               LONGTEXT    (JSON text)
//   relation   TEXT      TEXT COLLATE "C"    VARCHAR(36)
//   file       TEXT      TEXT                LONGTEXT    (JSON: name, type, size, sha256)
//
// A document collection has one `data` column (TEXT holding JSON on SQLite, JSONB on PostgreSQL,
// LONGTEXT on MariaDB); each indexed path is a generated column with an index on SQLite, and one
// GIN index (jsonb_path_ops) serves every path's equality on PostgreSQL.
// `required`, `default`, `min`, `max`, `regex` and `types` are checked by the service, so adding
// or changing them never rewrites a table; `unique` is a unique index.
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "data/model.hpp"
#include "data/sqlgen.hpp"

namespace harmar::data {

struct Plan {
  std::vector<std::string> steps;  // what changes, for people ("+ collection notes", "~ notes: + field x")
  std::vector<std::string> up;     // the SQL that makes it so, in order
  std::vector<std::string> down;   // the SQL that undoes it, in order
  bool destructive = false;        // drops a collection or a field (its data is lost; down recreates it empty)
  bool empty() const { return steps.empty(); }
};

// The statements that take one collection from `before` to `after` (either may be null: create,
// drop), appended to `plan`. A field whose type changes is a 409 (`type_change_unsupported`).
Status plan_collection(const Collection* before, const Collection* after, Dialect d, Plan& plan);

// The SQL column list of a collection, in table order (system columns first).
std::vector<std::string> columns(const Collection& c);

}  // namespace harmar::data
