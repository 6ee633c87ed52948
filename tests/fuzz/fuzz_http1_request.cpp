// Raw bytes as an HTTP/1.1 client would send them, through the same parser glue the server uses
// (Beast's basic_parser + our callbacks and limits), fed in random-sized pieces.
#include "net/detail/request_parser.hpp"

using namespace harmar::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  detail::fuzz_parse_requests(in);
  return 0;
}
