#include "auth/migrations.hpp"

namespace harmar::auth {

namespace {

// The DDL SQLite and PostgreSQL share; they would differ only where the types do.
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

// MariaDB: keyed text is VARCHAR (an index key is at most 3072 bytes, 768 utf8mb4 characters),
// sized past what the API accepts; other text is LONGTEXT (TEXT stops at 64 KiB there).
constexpr const char* kMysqlSchemaV1 =
    "CREATE TABLE users ( id VARCHAR(64) PRIMARY KEY, email VARCHAR(255) UNIQUE, phone VARCHAR(64) UNIQUE, name"
    " LONGTEXT NOT NULL DEFAULT '', password_hash LONGTEXT, email_verified BOOLEAN NOT NULL DEFAULT FALSE,"
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    " COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE roles ( name VARCHAR(128) PRIMARY KEY, description LONGTEXT NOT NULL DEFAULT '', builtin"
    " BOOLEAN NOT NULL DEFAULT FALSE, created_at BIGINT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    " COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE role_permissions ( role VARCHAR(128) NOT NULL, permission VARCHAR(255) NOT NULL, PRIMARY KEY"
    " (role, permission), FOREIGN KEY (role) REFERENCES roles(name) ON DELETE CASCADE) ENGINE=InnoDB DEFAULT"
    " CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE user_roles ( user_id VARCHAR(64) NOT NULL, role VARCHAR(128) NOT NULL, PRIMARY KEY (user_id,"
    " role), FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE, FOREIGN KEY (role) REFERENCES"
    " roles(name) ON DELETE CASCADE, INDEX user_roles_role (role)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    " COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE identities ( provider VARCHAR(64) NOT NULL, subject VARCHAR(255) NOT NULL, user_id"
    " VARCHAR(64) NOT NULL, email LONGTEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL, PRIMARY KEY"
    " (provider, subject), FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE, INDEX identities_user"
    " (user_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE sessions ( id VARCHAR(64) PRIMARY KEY, user_id VARCHAR(64) NOT NULL, method LONGTEXT NOT"
    " NULL, ip LONGTEXT NOT NULL DEFAULT '', user_agent LONGTEXT NOT NULL DEFAULT '', created_at BIGINT NOT"
    " NULL, last_used_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, revoked_at BIGINT, revoke_reason"
    " LONGTEXT, FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE, INDEX sessions_user (user_id,"
    " created_at), INDEX sessions_revoked (revoked_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    " COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE refresh_tokens ( token_hash VARCHAR(128) PRIMARY KEY, session_id VARCHAR(64) NOT NULL,"
    " created_at BIGINT NOT NULL, spent_at BIGINT, FOREIGN KEY (session_id) REFERENCES sessions(id) ON DELETE"
    " CASCADE, INDEX refresh_tokens_session (session_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    " COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE auth_tokens ( token_hash VARCHAR(128) PRIMARY KEY, purpose VARCHAR(64) NOT NULL, user_id"
    " VARCHAR(64) NOT NULL, email LONGTEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,"
    " used_at BIGINT, FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE, INDEX auth_tokens_user"
    " (user_id, purpose)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE signing_keys ( kid VARCHAR(64) PRIMARY KEY, public_key LONGTEXT NOT NULL, secret_box LONGTEXT"
    " NOT NULL, created_at BIGINT NOT NULL, retired_at BIGINT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    " COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE api_keys ( id VARCHAR(64) PRIMARY KEY, user_id VARCHAR(64) NOT NULL, name LONGTEXT NOT NULL,"
    " key_hash VARCHAR(128) NOT NULL UNIQUE, prefix LONGTEXT NOT NULL, permissions LONGTEXT NOT NULL,"
    " created_at BIGINT NOT NULL, expires_at BIGINT, last_used_at BIGINT, revoked_at BIGINT, FOREIGN KEY"
    " (user_id) REFERENCES users(id) ON DELETE CASCADE, INDEX api_keys_user (user_id, id)) ENGINE=InnoDB"
    " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE auth_audit ( id VARCHAR(64) PRIMARY KEY, at BIGINT NOT NULL, user_id VARCHAR(255), ip"
    " LONGTEXT NOT NULL DEFAULT '', user_agent LONGTEXT NOT NULL DEFAULT '', event VARCHAR(64) NOT NULL, detail"
    " LONGTEXT NOT NULL DEFAULT '{}', INDEX auth_audit_user (user_id, id), INDEX auth_audit_event (event, id))"
    " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "INSERT INTO roles (name, description, builtin, created_at) VALUES ('admin', 'every permission', TRUE, 0),"
    " ('user', 'a signed-up user', TRUE, 0);";

}  // namespace

std::vector<store::Migration> migrations() {
  return {
      {1, "users, roles, sessions, tokens, signing keys, api keys, audit", schema_v1(false), schema_v1(true),
       kMysqlSchemaV1},
  };
}

}  // namespace harmar::auth
