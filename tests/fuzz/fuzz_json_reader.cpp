// Request bodies through the bounded JSON parser and the field reader every endpoint uses.
#include "core/json.hpp"

using namespace harmar;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto obj = json::parse_object(in);
  if (!obj.ok()) return 0;
  json::Reader r(*obj);
  (void)r.optional_string("name", 0, 64);
  (void)r.optional_int("priority", 0, 10);
  (void)r.optional_bool("flag");
  (void)r.optional_object("config", 1024);
  (void)r.optional_strings("labels", 8, 32);
  r.reject_unknown({"name", "priority"});
  if (!r.ok()) (void)r.error();
  return 0;
}
