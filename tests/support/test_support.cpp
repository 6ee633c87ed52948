#include "support/test_support.hpp"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace harmar::testing {

std::string require_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    std::string msg = std::string(name) +
                      " is not set: run the tests through `make test`, or start the services with "
                      "`scripts/test-services.sh start` and source build/test-services/env";
    ADD_FAILURE() << msg;
    throw std::runtime_error(msg);
  }
  return v;
}

std::string fresh_pg_schema_url(const std::string& name) {
  std::string base = pg_url();
  PGconn* c = PQconnectdb(base.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = "cannot connect to " + base + ": " + PQerrorMessage(c);
    PQfinish(c);
    ADD_FAILURE() << msg;
    throw std::runtime_error(msg);
  }
  std::string sql = "DROP SCHEMA IF EXISTS \"" + name + "\" CASCADE; CREATE SCHEMA \"" + name + "\";";
  PGresult* r = PQexec(c, sql.c_str());
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  std::string err = PQerrorMessage(c);
  PQclear(r);
  PQfinish(c);
  if (!ok) {
    ADD_FAILURE() << err;
    throw std::runtime_error(err);
  }
  return base + (base.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + name;
}

std::string temp_dir() {
  // Heap-allocated and never freed: the exit handler below must still be able to read it.
  static const std::string* dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "harmar-test.XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    auto* d = new std::string(tmpl);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(*dir, ec);
    });
    return d;
  }();
  return *dir;
}

}  // namespace harmar::testing
