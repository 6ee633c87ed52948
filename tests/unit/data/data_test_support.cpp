#include "data_test_support.hpp"

#include <stdexcept>

namespace harmar::data::testing_support {

#ifndef HARMAR_TEST_WITH_MARIADB
std::string fresh_mariadb_url(const std::string&) {
  ADD_FAILURE() << "this build has no MariaDB support";
  throw std::runtime_error("no MariaDB support");
}
#endif

}  // namespace harmar::data::testing_support
