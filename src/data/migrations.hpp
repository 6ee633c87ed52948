#pragma once
#include <vector>

#include "store/sql.hpp"

namespace harmar::data {

std::vector<store::Migration> migrations();

}  // namespace harmar::data
