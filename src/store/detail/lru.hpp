#pragma once
// A bounded map that forgets the least recently used entry: per-connection caches of prepared
// statements. Not thread-safe; each connection is used by one thread at a time.
#include <cassert>
#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

namespace harmar::store::detail {

template <class V>
class LruCache {
 public:
  explicit LruCache(std::size_t capacity) : capacity_(capacity) { assert(capacity > 0); }

  // The value for `key`, now the most recently used; nullptr when absent.
  V* get(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second;
  }

  // Inserts (or replaces) `key`; returns the entry evicted to stay within capacity, if any.
  std::optional<std::pair<std::string, V>> put(const std::string& key, V value) {
    if (auto* v = get(key)) {
      *v = std::move(value);
      return std::nullopt;
    }
    order_.emplace_front(key, std::move(value));
    index_.emplace(key, order_.begin());
    if (order_.size() <= capacity_) return std::nullopt;
    auto victim = std::move(order_.back());
    index_.erase(victim.first);
    order_.pop_back();
    return victim;
  }

  std::optional<V> take(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    V v = std::move(it->second->second);
    order_.erase(it->second);
    index_.erase(it);
    return v;
  }

  // Removes every entry, handing each value to `fn` (e.g. to finalize a statement).
  template <class F>
  void clear(F&& fn) {
    for (auto& [k, v] : order_) fn(v);
    order_.clear();
    index_.clear();
  }

  std::size_t size() const { return order_.size(); }
  std::size_t capacity() const { return capacity_; }

 private:
  std::size_t capacity_;
  std::list<std::pair<std::string, V>> order_;  // most recent first
  std::unordered_map<std::string, typename std::list<std::pair<std::string, V>>::iterator> index_;
};

}  // namespace harmar::store::detail
