#include "auth/migrations.hpp"

namespace harmar::auth {

namespace {

// The DDL both backends share; the PostgreSQL and SQLite texts differ only where the types do.
std::string schema_v1(bool postgres) {
  (void)postgres;  // the same DDL reads right on both today; the parameter is where they would part
  std::string s =
      "CREATE TABLE users ("
      " id TEXT PRIMARY KEY, email TEXT UNIQUE, phone TEXT UNIQUE, name TEXT NOT NULL DEFAULT '',"
      " password_hash TEXT, email_verified BOOLEAN NOT NULL DEFAULT FALSE,"
      " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
      "CREATE TABLE roles ("
      " name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '', builtin BOOLEAN NOT NULL DEFAULT FALSE,"
      " created_at BIGINT NOT NULL);"
      "CREATE TABLE role_permissions ("
      " role TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE, permission TEXT NOT NULL,"
      " PRIMARY KEY (role, permission));"
      "CREATE TABLE user_roles ("
      " user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
      " role TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE, PRIMARY KEY (user_id, role));"
      "CREATE INDEX user_roles_role ON user_roles (role);"
      "CREATE TABLE identities ("
      " provider TEXT NOT NULL, subject TEXT NOT NULL, user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
      " email TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL, PRIMARY KEY (provider, subject));"
      "CREATE INDEX identities_user ON identities (user_id);"
      "CREATE TABLE sessions ("
      " id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
      " method TEXT NOT NULL, ip TEXT NOT NULL DEFAULT '', user_agent TEXT NOT NULL DEFAULT '',"
      " created_at BIGINT NOT NULL, last_used_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,"
      " revoked_at BIGINT, revoke_reason TEXT);"
      "CREATE INDEX sessions_user ON sessions (user_id, created_at);"
      "CREATE INDEX sessions_revoked ON sessions (revoked_at);"
      "CREATE TABLE refresh_tokens ("
      " token_hash TEXT PRIMARY KEY, session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
      " created_at BIGINT NOT NULL, spent_at BIGINT);"
      "CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);"
      "CREATE TABLE auth_tokens ("
      " token_hash TEXT PRIMARY KEY, purpose TEXT NOT NULL, user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
      " email TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, used_at BIGINT);"
      "CREATE INDEX auth_tokens_user ON auth_tokens (user_id, purpose);"
      "CREATE TABLE signing_keys ("
      " kid TEXT PRIMARY KEY, public_key TEXT NOT NULL, secret_box TEXT NOT NULL,"
      " created_at BIGINT NOT NULL, retired_at BIGINT);"
      "CREATE TABLE api_keys ("
      " id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE, name TEXT NOT NULL,"
      " key_hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, permissions TEXT NOT NULL,"
      " created_at BIGINT NOT NULL, expires_at BIGINT, last_used_at BIGINT, revoked_at BIGINT);"
      "CREATE INDEX api_keys_user ON api_keys (user_id, id);"
      "CREATE TABLE auth_audit ("
      " id TEXT PRIMARY KEY, at BIGINT NOT NULL, user_id TEXT, ip TEXT NOT NULL DEFAULT '',"
      " user_agent TEXT NOT NULL DEFAULT '', event TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}');"
      "CREATE INDEX auth_audit_user ON auth_audit (user_id, id);"
      "CREATE INDEX auth_audit_event ON auth_audit (event, id);"
      "INSERT INTO roles (name, description, builtin, created_at) VALUES"
      " ('admin', 'every permission', TRUE, 0), ('user', 'a signed-up user', TRUE, 0);";
  return s;
}

}  // namespace

std::vector<store::Migration> migrations() {
  return {
      {1, "users, roles, sessions, tokens, signing keys, api keys, audit", schema_v1(false), schema_v1(true)},
  };
}

}  // namespace harmar::auth
