#include "core/config.hpp"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <thread>

#include "core/clock.hpp"

extern char** environ;

namespace harmar::config {

const char* type_name(Type t) {
  switch (t) {
    case Type::String: return "string";
    case Type::Int: return "integer";
    case Type::Bool: return "boolean";
    case Type::Duration: return "duration";
    case Type::Size: return "size";
    case Type::StringList: return "list of strings";
    case Type::StringMap: return "map of strings";
  }
  return "?";
}

std::string env_name(std::string_view key) {
  std::string out = "HARMAR_";
  for (char c : key) out.push_back(c == '.' || c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return out;
}

void Schema::add(Key key) {
  for (auto& k : keys_) {
    if (k.name == key.name) {
      k = std::move(key);
      return;
    }
  }
  keys_.push_back(std::move(key));
}

namespace {

bool family_name(std::string_view n) {
  if (n.empty() || n.size() > 32) return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

// "auth.oauth.*" → "auth.oauth"; "" for a key that is not a family.
std::string_view family_prefix(std::string_view key) {
  if (key.size() < 3 || key.substr(key.size() - 2) != ".*") return {};
  return key.substr(0, key.size() - 2);
}

}  // namespace

const Key* Schema::find(std::string_view name) const {
  for (const auto& k : keys_)
    if (k.name == name) return &k;
  for (const auto& k : keys_) {
    auto prefix = family_prefix(k.name);
    if (!prefix.empty() && name.size() > prefix.size() + 1 && name.substr(0, prefix.size()) == prefix &&
        name[prefix.size()] == '.' && family_name(name.substr(prefix.size() + 1)))
      return &k;
  }
  return nullptr;
}

bool Schema::has_prefix(std::string_view prefix) const {
  for (const auto& k : keys_)
    if (k.name.size() > prefix.size() && k.name.compare(0, prefix.size(), prefix) == 0 && k.name[prefix.size()] == '.')
      return true;
  return false;
}

std::string Schema::markdown() const {
  std::string out = "| key | type | default | environment | meaning |\n|---|---|---|---|---|\n";
  for (const auto& k : keys_) {
    out += "| `" + k.name + "` | " + type_name(k.type) + " | `" + k.default_value + "` | `" + env_name(k.name) +
           "` | " + k.doc;
    if (!k.choices.empty()) {
      out += " (one of:";
      for (const auto& c : k.choices) out += " `" + c + "`";
      out += ")";
    }
    out += " |\n";
  }
  return out;
}

Schema core_schema() {
  Schema s;
  s.add({"listen", Type::String, "127.0.0.1:8080", "HOST:PORT the HTTP server binds; port 0 picks a free port"});
  s.add({"workers", Type::Int, "0", "event-loop threads, each with its own listener; 0 means one per core", 0, 256});
  s.add({"blocking_threads", Type::Int, "0", "threads for blocking work (SQLite, hashing, files); 0 means 2 x cores, at least 4", 0, 256});
  s.add({"data_dir", Type::String, "./data", "directory for embedded state (SQLite database, blobs)"});
  s.add({"db", Type::String, "", "database URL: sqlite://PATH, postgres://... or mysql://USER[:PASSWORD]@HOST:PORT/DB (MariaDB 10.6 or later); empty means sqlite://DATA_DIR/harmar.db"});
  s.add({"db_pool", Type::Int, "4", "PostgreSQL connections per worker", 1, 64});
  s.add({"redis", Type::String, "", "redis://HOST:PORT[/DB] for cross-node pub/sub and shared kv; empty means in-process"});
  s.add({"blobs", Type::String, "", "blob storage URL: file:///PATH, or s3://[KEY:SECRET@]HOST[:PORT]/BUCKET[/PREFIX][?region=&tls=0&style=virtual] (see docs/storage.md); empty means DATA_DIR/blobs"});
  s.add({"tls.cert", Type::String, "", "PEM certificate chain; with tls.key the listener speaks TLS (h2 and http/1.1 via ALPN)"});
  s.add({"tls.key", Type::String, "", "PEM private key for tls.cert"});
  s.add({"limits.header_bytes", Type::Size, "16KiB", "largest request line plus headers", 1024, 1 << 20});
  s.add({"limits.body_bytes", Type::Size, "1MiB", "largest buffered request body (routes may raise it)", 0, int64_t(1) << 32});
  s.add({"limits.header_timeout", Type::Duration, "10s", "time a client has to send a complete request header", 100, 3'600'000});
  s.add({"limits.body_timeout", Type::Duration, "60s", "time a client has to send a request body once the header is in", 100, 86'400'000});
  s.add({"limits.idle_timeout", Type::Duration, "60s", "keep-alive connections idle this long are closed", 100, 86'400'000});
  s.add({"limits.write_timeout", Type::Duration, "30s", "a response write that makes no progress this long ends the connection", 100, 3'600'000});
  s.add({"limits.connection_rps", Type::Int, "20000", "sustained requests per second one connection may send (burst 2x); 0 disables", 0, 10'000'000});
  s.add({"limits.max_connections", Type::Int, "100000", "open connections per worker; new ones wait in the backlog past this", 1, 10'000'000});
  s.add({"limits.h2_streams", Type::Int, "128", "concurrent HTTP/2 streams per connection", 1, 10'000});
  s.add({"shutdown_timeout", Type::Duration, "10s", "on SIGTERM, how long in-flight requests get before connections are cut", 0, 3'600'000});
  s.add({"cors.origins", Type::StringList, "", "origins allowed by CORS (* for any); empty disables CORS headers"});
  s.add({"log.format", Type::String, "json", "log line format", 0, 0, {"json", "text"}});
  s.add({"log.level", Type::String, "info", "default log level", 0, 0, {"trace", "debug", "info", "warn", "error", "off"}});
  s.add({"log.levels", Type::StringMap, "", "per-module levels, e.g. http=debug,store=warn"});
  s.add({"log.access", Type::Bool, "true", "write one JSON line per HTTP request to the access log"});
  return s;
}

namespace {

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    auto item = trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (!item.empty()) out.push_back(std::move(item));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

std::optional<bool> parse_bool(std::string_view s) {
  if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
  if (s == "false" || s == "no" || s == "off" || s == "0") return false;
  return std::nullopt;
}

Error bad_key(std::string_view key, std::string message) {
  return Error::validation("configuration key '" + std::string(key) + "' " + message, {{std::string(key), std::move(message)}});
}

// Validates `text` for `k` and returns the stored form.
Result<Value> convert(const Key& k, std::string_view text) {
  auto bounded = [&](std::optional<int64_t> n, const char* what) -> Result<Value> {
    if (!n) return bad_key(k.name, std::string("must be a ") + what + ", got '" + std::string(text) + "'");
    if (*n < k.min || *n > k.max)
      return bad_key(k.name, "is out of range [" + std::to_string(k.min) + ", " + std::to_string(k.max) + "]");
    return Value(std::string(text));
  };
  switch (k.type) {
    case Type::String:
      if (!k.choices.empty() && std::find(k.choices.begin(), k.choices.end(), text) == k.choices.end())
        return bad_key(k.name, "must be one of the documented choices, got '" + std::string(text) + "'");
      return Value(std::string(text));
    case Type::Int: {
      int64_t n = 0;
      auto t = trim(text);
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
      return bounded(ec == std::errc() && p == t.data() + t.size() ? std::optional<int64_t>(n) : std::nullopt,
                     "integer");
    }
    case Type::Bool:
      if (!parse_bool(trim(text))) return bad_key(k.name, "must be true or false, got '" + std::string(text) + "'");
      return Value(trim(text));
    case Type::Duration: return bounded(parse_duration_ms(text), "duration such as 500ms, 30s, 5m");
    case Type::Size: return bounded(parse_size(text), "size such as 512, 64KiB, 1MiB");
    case Type::StringList: return Value(split_list(text));
    case Type::StringMap: {
      std::map<std::string, std::string> m;
      for (const auto& item : split_list(text)) {
        auto eq = item.find('=');
        if (eq == std::string::npos || eq == 0)
          return bad_key(k.name, "must be a list of name=value pairs, got '" + item + "'");
        m[trim(item.substr(0, eq))] = trim(item.substr(eq + 1));
      }
      return Value(std::move(m));
    }
  }
  return bad_key(k.name, "has an unknown type");
}

// Walks a YAML mapping, validating each leaf against the schema; collects every problem.
void walk_yaml(const Schema& schema, const YAML::Node& node, const std::string& prefix,
               std::vector<std::pair<std::string, Value>>& out, std::vector<FieldError>& errors) {
  for (const auto& it : node) {
    if (!it.first.IsScalar()) {
      errors.push_back({prefix.empty() ? "(top level)" : prefix, "keys must be plain names (line " +
                                                                    std::to_string(it.first.Mark().line + 1) + ")"});
      continue;
    }
    std::string name = it.first.as<std::string>();
    std::string full = prefix.empty() ? name : prefix + "." + name;
    const YAML::Node& v = it.second;
    const Key* k = schema.find(full);
    auto where = " (line " + std::to_string(it.first.Mark().line + 1) + ")";
    if (!k) {
      if (v.IsMap() && schema.has_prefix(full)) {
        walk_yaml(schema, v, full, out, errors);
      } else {
        errors.push_back({full, "is not a known key" + where});
      }
      continue;
    }
    if (v.IsNull()) continue;  // "key:" with nothing keeps the default
    Result<Value> val = bad_key(full, "");
    if (k->type == Type::StringList && v.IsSequence()) {
      std::vector<std::string> items;
      for (const auto& i : v) {
        if (!i.IsScalar()) {
          errors.push_back({full, "must be a list of strings" + where});
          break;
        }
        items.push_back(i.as<std::string>());
      }
      val = Value(std::move(items));
    } else if (k->type == Type::StringMap && v.IsMap()) {
      std::map<std::string, std::string> m;
      for (const auto& i : v) {
        if (!i.second.IsScalar()) {
          errors.push_back({full, "must map names to strings" + where});
          break;
        }
        m[i.first.as<std::string>()] = i.second.as<std::string>();
      }
      val = Value(std::move(m));
    } else if (v.IsScalar()) {
      val = convert(*k, v.Scalar());
    } else {
      errors.push_back({full, std::string("must be a ") + type_name(k->type) + where});
      continue;
    }
    if (!val.ok()) {
      errors.push_back({full, val.error().errors.empty() ? "is invalid" : val.error().errors[0].message + where});
      continue;
    }
    out.emplace_back(full, std::move(val).value());
  }
}

Result<std::vector<std::pair<std::string, Value>>> read_yaml(const Schema& schema, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    return Error::validation("cannot read configuration file " + file);
  } catch (const YAML::Exception& e) {
    return Error::validation("configuration file " + file + " is not valid YAML: " + e.what());
  }
  std::vector<std::pair<std::string, Value>> out;
  if (root.IsNull()) return out;
  if (!root.IsMap()) return Error::validation("configuration file " + file + " must be a mapping of keys");
  std::vector<FieldError> errors;
  try {
    walk_yaml(schema, root, "", out, errors);
  } catch (const YAML::Exception& e) {
    return Error::validation("configuration file " + file + " has an unexpected structure: " + e.what());
  }
  if (!errors.empty()) {
    std::string detail = file + ": ";
    for (std::size_t i = 0; i < errors.size(); ++i) detail += (i ? "; " : "") + errors[i].field + " " + errors[i].message;
    return Error::validation(detail, std::move(errors));
  }
  return out;
}

}  // namespace

Config::Config(Schema schema) : schema_(std::move(schema)) {
  for (const auto& k : schema_.keys()) {
    if (!family_prefix(k.name).empty()) continue;  // a family has no value of its own
    auto v = convert(k, k.default_value);
    values_[k.name] = v.ok() ? std::move(v).value() : Value(k.default_value);
    sources_[k.name] = "default";
  }
}

Status Config::set(std::string_view key, std::string_view text, std::string source) {
  const Key* k = schema_.find(key);
  if (!k) return bad_key(key, "is not a known key");
  HARMAR_TRY(Value v, convert(*k, text));
  values_[std::string(key)] = std::move(v);
  sources_[std::string(key)] = std::move(source);
  return {};
}

Status Config::apply_yaml(const std::string& file) {
  HARMAR_TRY(auto entries, read_yaml(schema_, file));
  for (auto& [name, v] : entries) {
    values_[name] = std::move(v);
    sources_[name] = "file";
  }
  return {};
}

Status Config::check_file(const Schema& schema, const std::string& file) {
  auto r = read_yaml(schema, file);
  if (!r.ok()) return std::move(r).error();
  return {};
}

Result<Config> Config::load(Schema schema, const std::string& file,
                            const std::vector<std::pair<std::string, std::string>>& overrides, char** envp) {
  Config c(std::move(schema));
  if (!file.empty()) {
    auto st = c.apply_yaml(file);
    if (!st.ok()) return std::move(st).error();
  }
  if (!envp) envp = environ;
  for (char** e = envp; e && *e; ++e) {
    std::string_view kv(*e);
    if (kv.rfind("HARMAR_", 0) != 0) continue;
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view name = kv.substr(0, eq);
    std::string key;
    for (const auto& k : c.schema_.keys())
      if (family_prefix(k.name).empty() && env_name(k.name) == name) key = k.name;
    for (const auto& k : c.schema_.keys()) {
      auto prefix = family_prefix(k.name);
      if (!key.empty() || prefix.empty()) continue;
      std::string env_prefix = env_name(prefix) + "_";
      if (name.size() <= env_prefix.size() || name.substr(0, env_prefix.size()) != env_prefix) continue;
      std::string member;
      for (char ch : name.substr(env_prefix.size())) member.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
      key = std::string(prefix) + "." + member;
    }
    if (key.empty()) continue;
    auto st = c.set(key, kv.substr(eq + 1), "env");
    if (!st.ok()) {
      Error err = std::move(st).error();
      err.detail = std::string(name) + ": " + err.detail;
      return err;
    }
  }
  for (const auto& [k, v] : overrides) {
    auto st = c.set(k, v, "flag");
    if (!st.ok()) return std::move(st).error();
  }
  return c;
}

const std::string& Config::scalar(std::string_view key) const {
  static const std::string empty;
  auto it = values_.find(key);
  if (it == values_.end()) return empty;
  const auto* s = std::get_if<std::string>(&it->second);
  return s ? *s : empty;
}

std::string Config::get_string(std::string_view key) const { return scalar(key); }

int64_t Config::get_int(std::string_view key) const {
  int64_t n = 0;
  const auto& s = scalar(key);
  std::from_chars(s.data(), s.data() + s.size(), n);
  return n;
}

bool Config::get_bool(std::string_view key) const { return parse_bool(scalar(key)).value_or(false); }
int64_t Config::get_duration_ms(std::string_view key) const { return parse_duration_ms(scalar(key)).value_or(0); }
int64_t Config::get_size(std::string_view key) const { return parse_size(scalar(key)).value_or(0); }

std::vector<std::string> Config::get_list(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return {};
  if (const auto* l = std::get_if<std::vector<std::string>>(&it->second)) return *l;
  return {};
}

std::map<std::string, std::string> Config::get_map(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return {};
  if (const auto* m = std::get_if<std::map<std::string, std::string>>(&it->second)) return *m;
  return {};
}

std::vector<std::string> Config::names(std::string_view prefix) const {
  std::vector<std::string> out;
  std::string start = std::string(prefix) + ".";
  for (auto it = values_.lower_bound(start); it != values_.end() && it->first.compare(0, start.size(), start) == 0; ++it) {
    std::string_view rest = std::string_view(it->first).substr(start.size());
    const Key* k = schema_.find(it->first);
    if (rest.find('.') == std::string_view::npos && family_name(rest) && k && k->name != it->first) out.emplace_back(rest);
  }
  return out;
}

const std::string& Config::source(std::string_view key) const {
  static const std::string unknown = "unknown";
  auto it = sources_.find(key);
  return it == sources_.end() ? unknown : it->second;
}

}  // namespace harmar::config
