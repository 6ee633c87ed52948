#pragma once
// Inbound mail parsing (GMime 3): raw RFC 5322 / MIME bytes → the few things the email module
// uses, as UTF-8. Hostile input is expected: every limit below is checked, before GMime sees the
// message where GMime itself could be hurt (nesting depth is bounded by a pre-scan, as GMime's
// parser recurses), and every failure is a 4xx Error with a stable code, never a crash.
//
// Blocking and CPU-bound: call it on the blocking pool (core/blocking.hpp). Thread-safe: GMime is
// initialised once, and each call uses objects of its own.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace harmar::notify {

struct MimeLimits {
  std::size_t max_bytes = 10 << 20;         // the raw message (413 payload_too_large)
  std::size_t max_header_bytes = 64 << 10;  // the header block of the message and of each part
  std::size_t max_headers = 500;            // header fields per message or part
  int max_depth = 8;                        // multipart / message/rfc822 nesting
  int max_parts = 100;                      // parts in the whole tree
  std::size_t max_text_bytes = 256 << 10;   // the text kept (longer is cut at a character)
};

struct ParsedMail {
  std::string from;                     // the sender's address (local@domain)
  std::vector<std::string> recipients;  // addresses of To, Cc, Delivered-To and X-Original-To
  std::string subject;                  // decoded (RFC 2047), UTF-8
  std::string message_id;               // without <>
  std::vector<std::string> references;  // In-Reply-To then References, without <>
  std::string text;                     // the text/plain body (else text/html without tags), UTF-8
  bool text_truncated = false;
  int parts = 0;  // leaf parts seen
  int depth = 0;  // deepest nesting seen
};

// 422 with code mime_empty, mime_headers_too_large, mime_too_complex (depth, parts, headers),
// mime_malformed (no header block, no From), mime_bad_charset (unknown charset),
// mime_bad_encoding (text that is not valid in its charset); 413 payload_too_large.
Result<ParsedMail> parse_mime(std::string_view raw, const MimeLimits& limits = {});

}  // namespace harmar::notify
