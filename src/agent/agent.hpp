#pragma once
// `harmar agent`: the device daemon. It registers once (keeping its api key in a state file),
// sends heartbeats, long-polls for tasks, runs them (see runner.hpp), streams their output as
// progress, reports results, reconnects with backoff when the server goes away, and on SIGTERM
// stops taking work, lets running tasks finish for a grace period, then kills and releases the
// rest and says goodbye.
#include <map>
#include <string>
#include <vector>

namespace harmar::agent {

struct Options {
  std::string server;      // http://host:port
  std::string token;       // a user access token, to register on first start
  std::string api_key;     // a device key, instead of registering
  std::string state_file = "harmar-agent.json";
  std::string name;        // default: the hostname
  std::map<std::string, std::string> labels;
  int concurrency = 4;
  int wait_s = 30;              // long-poll length
  int heartbeat_s = 0;          // 0: what the server says (30 s by default)
  int grace_s = 30;             // on SIGTERM, how long running tasks may finish
  std::size_t max_output = 1 << 20;
  std::vector<std::string> types;  // restrict to these task types (default: every built-in)
  std::string log_level = "info";
};

// Runs until SIGTERM/SIGINT. Exit status for main(): 0 after a clean stop, 2 for bad options,
// 1 when the agent cannot start (e.g. registration refused).
int run(const Options& opts);

}  // namespace harmar::agent
