// RFC 3339 times, durations and sizes: never crash, and what parses formats back to itself.
#include "core/clock.hpp"

using namespace harmar;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto ms = parse_rfc3339(in)) {
    auto again = parse_rfc3339(format_rfc3339(*ms));
    if (!again || *again != *ms) __builtin_trap();
  }
  (void)parse_duration_ms(in);
  (void)parse_size(in);
  return 0;
}
