#pragma once
// Configuration is data: every key is declared once in a Schema (name, type, default, doc), then
// values come from harmar.yaml, overridden by HARMAR_* environment variables, then by flags.
// Every value is validated when it is set, so getters never fail.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/result.hpp"

namespace harmar::config {

enum class Type { String, Int, Bool, Duration, Size, StringList, StringMap };
const char* type_name(Type t);

struct Key {
  // Dotted path, e.g. "limits.body_bytes". A final "*" segment ("auth.oauth.*") declares a family
  // of keys, one per name a user chooses ("auth.oauth.github", "auth.oauth.corp"); the name is
  // 1..32 of [a-z0-9_-]. Its environment form is HARMAR_AUTH_OAUTH_<NAME> (exact keys win).
  std::string name;
  Type type;
  std::string default_value;  // in the textual form a user would write; lists/maps comma-separated
  std::string doc;
  int64_t min = 0;            // for Int/Duration/Size: inclusive bounds
  int64_t max = INT64_MAX;
  std::vector<std::string> choices;  // for String: allowed values, if any
};

// The environment variable that sets a key: HARMAR_ + the name upper-cased, dots as underscores.
std::string env_name(std::string_view key);

class Schema {
 public:
  void add(Key key);  // re-adding a name replaces it (modules may refine a core default)
  // The key for `name`: an exact key, else the "*" family it belongs to.
  const Key* find(std::string_view name) const;
  bool has_prefix(std::string_view prefix) const;  // some key starts with "prefix."
  const std::vector<Key>& keys() const { return keys_; }
  std::string markdown() const;  // the reference table in docs/configuration.md

 private:
  std::vector<Key> keys_;
};

// The keys the core, the HTTP server and the store understand.
Schema core_schema();

using Value = std::variant<std::string, std::vector<std::string>, std::map<std::string, std::string>>;

class Config {
 public:
  explicit Config(Schema schema);

  // Loads `file` (if non-empty), then the environment, then `overrides` (key, value) in order.
  static Result<Config> load(Schema schema, const std::string& file,
                             const std::vector<std::pair<std::string, std::string>>& overrides,
                             char** envp = nullptr);
  // Checks a YAML file against the schema without applying it: every bad key is named.
  static Status check_file(const Schema& schema, const std::string& file);

  Status set(std::string_view key, std::string_view text, std::string source);

  std::string get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  int64_t get_duration_ms(std::string_view key) const;
  int64_t get_size(std::string_view key) const;
  std::vector<std::string> get_list(std::string_view key) const;
  std::map<std::string, std::string> get_map(std::string_view key) const;
  // The names that were set in the family "prefix.*", sorted: names("auth.oauth") → {"corp", "github"}.
  std::vector<std::string> names(std::string_view prefix) const;
  const std::string& source(std::string_view key) const;  // "default", "file", "env" or "flag"

  const Schema& schema() const { return schema_; }

 private:
  Status apply_yaml(const std::string& file);
  const std::string& scalar(std::string_view key) const;

  Schema schema_;
  std::map<std::string, Value, std::less<>> values_;
  std::map<std::string, std::string, std::less<>> sources_;
};

}  // namespace harmar::config
