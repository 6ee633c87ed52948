#pragma once
// Result<T>: a value or an Error. g++ 12 has no std::expected; this is the small subset we use.
#include <cassert>
#include <utility>
#include <variant>

#include "core/error.hpp"

namespace harmar {

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& { assert(!ok()); return std::get<1>(v_); }
  Error&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

  template <class U>
  T value_or(U&& fallback) const& { return ok() ? value() : T(std::forward<U>(fallback)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { assert(!ok_); return error_; }
  Error&& error() && { assert(!ok_); return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace harmar

// HARMAR_TRY(var, expr): assigns the value of a Result or returns its error from the enclosing function.
#define HARMAR_CONCAT_(a, b) a##b
#define HARMAR_CONCAT(a, b) HARMAR_CONCAT_(a, b)
#define HARMAR_TRY_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                     \
  if (!tmp.ok()) return std::move(tmp).error(); \
  lhs = std::move(tmp).value()
#define HARMAR_TRY(lhs, expr) HARMAR_TRY_IMPL_(HARMAR_CONCAT(harmar_try_, __LINE__), lhs, expr)
#define HARMAR_CO_TRY_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                        \
  if (!tmp.ok()) co_return std::move(tmp).error(); \
  lhs = std::move(tmp).value()
#define HARMAR_CO_TRY(lhs, expr) HARMAR_CO_TRY_IMPL_(HARMAR_CONCAT(harmar_try_, __LINE__), lhs, expr)
