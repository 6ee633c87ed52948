#pragma once
// The keys that sign access tokens. Each key has a kid; the newest unretired one signs, and a
// retired key keeps verifying (and stays in /.well-known/jwks.json) until every token it signed
// has expired (retired_at + access TTL). Private halves are stored sealed with libsodium's
// secretbox under the server secret, which every node of a cluster must share.
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <array>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "auth/jwt.hpp"
#include "core/config.hpp"
#include "core/result.hpp"
#include "store/sql.hpp"

namespace harmar::auth {

namespace asio = boost::asio;

using ServerSecret = std::array<unsigned char, 32>;

// `auth.secret` (base64 of 32 bytes; env HARMAR_AUTH_SECRET) or, when unset, DATA_DIR/auth.key,
// created once with mode 0600. Blocking file I/O: call at startup or from a CLI command.
Result<ServerSecret> load_server_secret(const config::Config& cfg);

class KeyRing {
 public:
  KeyRing(store::Database& db, ServerSecret secret, int64_t access_ttl_ms);

  // Reads the usable keys from the table, creating the first one when none is current.
  asio::awaitable<Status> reload();
  // Retires the current key(s) and makes a new current one; returns its kid.
  asio::awaitable<Result<std::string>> rotate();

  struct Signer {
    std::string kid;
    jwt::SecretKey sk;
  };
  std::optional<Signer> signer() const;
  std::optional<jwt::PublicKey> public_key(std::string_view kid) const;
  // RFC 7517 JWK set of RFC 8037 OKP keys: current and retired-but-still-verifying ones.
  boost::json::object jwks(int64_t now_ms) const;
  bool loaded() const;

 private:
  struct Entry {
    jwt::PublicKey pk{};
    std::optional<jwt::SecretKey> sk;
    int64_t created_at = 0;
    std::optional<int64_t> retired_at;
  };
  asio::awaitable<Status> insert_new_key(store::Querier& q, int64_t now);
  bool still_verifies(const Entry& e, int64_t now_ms) const;

  store::Database& db_;
  ServerSecret secret_;
  int64_t access_ttl_ms_;
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, Entry> keys_;
  std::string current_;
};

}  // namespace harmar::auth
