#pragma once
// Structured logging on spdlog. Each module logs through its own named logger ("http", "store",
// "auth", ...) so levels can be set per module. In JSON format every line is one object; a
// message built with log::fields() is merged into that object as structured fields.
#include <spdlog/logger.h>

#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace harmar::log {

struct Options {
  std::string format = "json";  // "json" | "text"
  std::string level = "info";
  std::map<std::string, std::string> levels;  // module -> level
};

// Configures every existing and future logger. Safe to call again (e.g. after config load).
void init(const Options& opts);
// The logger for a module, created on first use with the configured level.
std::shared_ptr<spdlog::logger> get(const std::string& module);

// A JSON object text from key/value pairs; values are strings, escaped.
std::string fields(std::initializer_list<std::pair<std::string_view, std::string_view>> kv);
// Appends `s` to `out` as the inside of a JSON string (no quotes).
void escape_json(std::string_view s, std::string& out);

}  // namespace harmar::log
