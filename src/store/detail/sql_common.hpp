#pragma once
// Pieces the SQLite and PostgreSQL backends share. Internal to src/store.
#include <memory>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/result.hpp"
#include "store/sql.hpp"

namespace harmar::store::detail {

// Rewrites $1..$N placeholders to SQLite's ?1..?N, leaving string literals, quoted identifiers
// and comments untouched. SQLite reads "$1" as a *named* parameter numbered by first
// appearance, so "$2 ... $1" would bind backwards without this.
std::string sqlite_placeholders(std::string_view sql);

// True when `s` holds only whitespace, semicolons and comments (what may follow the one
// statement query() runs).
bool is_blank_sql(std::string_view s);

// The URL with any password (userinfo or ?password=) removed.
std::string redact_url(std::string_view url);

// Refuses text parameters that hold a NUL byte (400 invalid_text).
Status check_params(const Params& params);

// The client-facing errors; the SQL error itself is logged by the backend, never put here.
Error conflict_error();
Error unavailable_error(std::string_view what = "database unavailable");
Error internal_error();
// For queries on a transaction that already failed or finished.
Error aborted_transaction_error();
Error finished_transaction_error();

// Backend factories; Database::open() picks one by URL scheme.
Result<std::unique_ptr<Database>> open_sqlite(const std::string& path, const Database::Options& opts);
Result<std::unique_ptr<Database>> open_postgres(const std::string& url, const Database::Options& opts);
Result<std::unique_ptr<Database>> open_mysql(const std::string& url, const Database::Options& opts);

}  // namespace harmar::store::detail
