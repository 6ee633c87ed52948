#pragma once
// The collections this node knows, by name: read on every records request, replaced as a whole
// when definitions change (here or, through PubSub, on another node).
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "data/model.hpp"

namespace harmar::data {

struct Entry {
  Collection c;
  int64_t revision = 0;  // grows with every change of the definition
};
using EntryPtr = std::shared_ptr<const Entry>;

class Registry {
 public:
  EntryPtr find(std::string_view name) const {
    std::shared_lock lock(mu_);
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
  }
  std::vector<EntryPtr> all() const {
    std::shared_lock lock(mu_);
    std::vector<EntryPtr> out;
    for (const auto& [n, e] : by_name_) out.push_back(e);
    return out;
  }
  void replace(std::map<std::string, EntryPtr, std::less<>> entries) {
    std::unique_lock lock(mu_);
    by_name_ = std::move(entries);
  }

 private:
  mutable std::shared_mutex mu_;
  std::map<std::string, EntryPtr, std::less<>> by_name_;
};

}  // namespace harmar::data
