#pragma once
// Task types the agent runs. Each is a Runner; new types plug in by adding one to
// default_runners() (or to the map the Agent is given).
//
//   echo   the payload is the result ({"sleep_ms": N} waits first, {"fail": "why"} fails)
//   shell  {"command": "sh text"} or {"argv": [...]}, "env": {k: v}, "cwd", "timeout_s":
//          its own process group, killed (TERM, then KILL) on timeout or cancel; stdout and
//          stderr streamed as log and kept up to the output cap; result {exit_code, stdout, stderr}
//   http   {"method", "url", "headers": {k: v}, "body", "timeout_s"}: result {status, headers, body}
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace harmar::agent {

struct TaskContext {
  std::string id;
  std::string type;
  boost::json::value payload;
  int64_t timeout_s = 0;                 // 0: none (the runner may have its own)
  const std::atomic<bool>* cancelled = nullptr;  // set when the server says stop, or at shutdown
  std::function<void(std::string_view)> log;     // streams output to the server
  std::size_t max_output = 1 << 20;
  bool is_cancelled() const { return cancelled && cancelled->load(); }
};

struct Outcome {
  bool succeeded = true;
  boost::json::value result;
  std::string error;
  bool retry = true;  // false: retrying cannot help (bad payload, unknown type)
};

class Runner {
 public:
  virtual ~Runner() = default;
  virtual Outcome run(TaskContext& ctx) = 0;
};

using Runners = std::map<std::string, std::shared_ptr<Runner>, std::less<>>;
Runners default_runners();

}  // namespace harmar::agent
