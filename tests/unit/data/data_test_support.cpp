#include "data_test_support.hpp"

#include <stdexcept>

namespace harmar::data::testing_support {

std::string fresh_mariadb_url(const std::string& name) {
  std::string base = harmar::testing::require_env("HARMAR_TEST_MARIADB_URL");
  auto db = store::Database::open(base);
  if (!db.ok()) throw std::runtime_error("cannot open " + base + ": " + db.error().detail);
  std::string script = "DROP DATABASE IF EXISTS \"" + name + "\"; CREATE DATABASE \"" + name +
                       "\" DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_nopad_bin";
  auto st = harmar::testing::run((*db)->exec_script(script));
  if (!st.ok()) throw std::runtime_error("cannot create database " + name + ": " + st.error().detail);
  db->reset();
  auto slash = base.rfind('/');
  return base.substr(0, slash + 1) + name;
}

}  // namespace harmar::data::testing_support
