// Inbound mail through the MIME parsing wrapper (GMime): any bytes must be parsed or refused
// with a 4xx, never crash, hang or break the wrapper's promises (valid UTF-8, bounded output).
#include <glib.h>

#include <cstdlib>
#include <string>

#include "notify/mime.hpp"

using namespace harmar::notify;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  MimeLimits lim;
  lim.max_bytes = 1 << 20;
  lim.max_text_bytes = 4096;
  auto m = parse_mime(in, lim);
  if (!m.ok()) {
    if (m.error().status != 422 && m.error().status != 413) std::abort();
    if (m.error().code.empty()) std::abort();
    return 0;
  }
  if (m->from.empty()) std::abort();
  if (m->text.size() > lim.max_text_bytes) std::abort();
  if (m->parts > lim.max_parts || m->depth > lim.max_depth) std::abort();
  if (!g_utf8_validate(m->text.data(), static_cast<gssize>(m->text.size()), nullptr)) std::abort();
  if (!g_utf8_validate(m->subject.data(), static_cast<gssize>(m->subject.size()), nullptr)) std::abort();
  return 0;
}
