#pragma once
#include <vector>

#include "store/sql.hpp"

namespace harmar::auth {

// The auth module's schema, SQLite, PostgreSQL and MariaDB side by side.
std::vector<store::Migration> migrations();

}  // namespace harmar::auth
