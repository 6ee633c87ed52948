#pragma once
// Who is calling. Set by the auth hook of a route (see net/router.hpp) and read by handlers.
#include <algorithm>
#include <string>
#include <vector>

namespace harmar {

struct Principal {
  enum class Kind { User, Device, ApiKey };
  Kind kind = Kind::User;
  std::string id;          // user id, device id or api key id
  std::string user_id;     // the owning user (== id for users)
  std::string session_id;  // for users with a session
  std::vector<std::string> roles;
  std::vector<std::string> permissions;  // empty for users: roles grant them

  bool has_role(const std::string& r) const { return std::find(roles.begin(), roles.end(), r) != roles.end(); }
  bool is_admin() const { return has_role("admin"); }
};

}  // namespace harmar
