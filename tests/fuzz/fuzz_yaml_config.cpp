// YAML documents through yaml_to_json (openapi, declarative files) and the config schema check.
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "core/config.hpp"
#include "core/json.hpp"

using namespace harmar;

namespace {
// The file check_file reads, one per fuzzing process, removed when the process exits.
std::string config_path() { return "/tmp/harmar-fuzz-config." + std::to_string(getpid()) + ".yaml"; }
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)json::yaml_to_json(in);
  static const std::string path = [] {
    std::atexit([] { ::unlink(config_path().c_str()); });
    return config_path();
  }();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(in.data(), static_cast<std::streamsize>(in.size()));
  }
  static const config::Schema schema = config::core_schema();
  (void)config::Config::check_file(schema, path);
  return 0;
}
