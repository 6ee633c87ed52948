#include "core/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <mutex>

#include "core/clock.hpp"

namespace harmar::log {
namespace {

// One JSON object per line: {"ts":..,"level":..,"module":..,"msg":..} — or, when the message is
// itself an object from fields(), its members in place of "msg".
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count();
    std::string line;
    line.reserve(128 + msg.payload.size());
    line += "{\"ts\":\"";
    line += format_rfc3339(ms);
    line += "\",\"level\":\"";
    auto lvl = spdlog::level::to_string_view(msg.level);
    line.append(lvl.data(), lvl.size());
    line += "\",\"module\":\"";
    escape_json(std::string_view(msg.logger_name.data(), msg.logger_name.size()), line);
    line += '"';
    std::string_view text(msg.payload.data(), msg.payload.size());
    if (text.size() >= 2 && text.front() == '{' && text.back() == '}') {
      if (text.size() > 2) {
        line += ',';
        line.append(text.substr(1, text.size() - 2));
      }
    } else {
      line += ",\"msg\":\"";
      escape_json(text, line);
      line += '"';
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

struct State {
  std::mutex mu;
  Options opts;
  spdlog::sink_ptr sink;
  std::map<std::string, std::shared_ptr<spdlog::logger>> loggers;
};

State& state() {
  static State s;
  return s;
}

spdlog::level::level_enum level_for(const Options& o, const std::string& module) {
  auto it = o.levels.find(module);
  return spdlog::level::from_str(it != o.levels.end() ? it->second : o.level);
}

void make_sink(State& s) {
  s.sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  if (s.opts.format == "json") {
    s.sink->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    s.sink->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
}

}  // namespace

void init(const Options& opts) {
  State& s = state();
  std::lock_guard lock(s.mu);
  s.opts = opts;
  make_sink(s);
  for (auto& [name, logger] : s.loggers) {
    logger->sinks() = {s.sink};
    logger->set_level(level_for(s.opts, name));
  }
}

std::shared_ptr<spdlog::logger> get(const std::string& module) {
  State& s = state();
  std::lock_guard lock(s.mu);
  auto it = s.loggers.find(module);
  if (it != s.loggers.end()) return it->second;
  if (!s.sink) make_sink(s);
  auto logger = std::make_shared<spdlog::logger>(module, s.sink);
  logger->set_level(level_for(s.opts, module));
  logger->flush_on(spdlog::level::warn);
  s.loggers.emplace(module, logger);
  return logger;
}

void escape_json(std::string_view s, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out += kHex[(c >> 4) & 15];
          out += kHex[c & 15];
        } else {
          out += c;
        }
    }
  }
}

std::string fields(std::initializer_list<std::pair<std::string_view, std::string_view>> kv) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : kv) {
    if (!first) out += ',';
    first = false;
    out += '"';
    escape_json(k, out);
    out += "\":\"";
    escape_json(v, out);
    out += '"';
  }
  out += '}';
  return out;
}

}  // namespace harmar::log
