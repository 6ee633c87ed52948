// Targets, query strings and percent-decoding from the wire.
#include "net/http.hpp"

using namespace harmar::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  Request r;
  r.set_method("GET");
  r.set_target(in);
  (void)r.path();
  (void)r.query_param("a");
  (void)r.query_param("limit");
  (void)r.query_param(in.substr(0, 8));
  if (auto d = percent_decode(in, true)) {
    if (d->size() > in.size()) __builtin_trap();  // decoding never grows
  }
  return 0;
}
