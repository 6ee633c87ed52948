#include "notify/mime.hpp"

#include <gmime/gmime.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <mutex>

namespace harmar::notify {
namespace {

Error mime_error(std::string code, std::string detail) {
  Error e;
  e.status = 422;
  e.code = std::move(code);
  e.detail = std::move(detail);
  return e;
}

void init_gmime() {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
}

template <class T>
struct GUnref {
  void operator()(T* p) const {
    if (p) g_object_unref(p);
  }
};
template <class T>
using GPtr = std::unique_ptr<T, GUnref<T>>;

struct OptionsFree {
  void operator()(GMimeParserOptions* p) const { g_mime_parser_options_free(p); }
};

// Counts `needle` (lowercase ASCII) in `hay`, case-insensitively.
std::size_t count_ci(std::string_view hay, std::string_view needle) {
  std::size_t n = 0;
  auto it = hay.begin();
  while (true) {
    it = std::search(it, hay.end(), needle.begin(), needle.end(), [](char a, char b) {
      return std::tolower(static_cast<unsigned char>(a)) == b;
    });
    if (it == hay.end()) return n;
    ++n;
    ++it;
  }
}

// The top header block: its size must be bounded and it must end (a blank line, or the end).
Status check_top_headers(std::string_view raw, const MimeLimits& lim) {
  std::size_t end = raw.find("\n\n");
  std::size_t crlf = raw.find("\r\n\r\n");
  if (crlf != std::string_view::npos && (end == std::string_view::npos || crlf < end)) end = crlf;
  std::size_t header_bytes = end == std::string_view::npos ? raw.size() : end;
  if (header_bytes > lim.max_header_bytes)
    return mime_error("mime_headers_too_large", "the header block is larger than " + std::to_string(lim.max_header_bytes) + " bytes");
  // The first line must be a header field: "Name:" of printable ASCII (or mbox "From ").
  std::size_t colon = raw.find(':');
  std::size_t eol = raw.find('\n');
  if (colon == std::string_view::npos || colon == 0 || (eol != std::string_view::npos && colon > eol))
    return mime_error("mime_malformed", "the message does not start with a header field");
  for (std::size_t i = 0; i < colon; ++i) {
    unsigned char c = static_cast<unsigned char>(raw[i]);
    if (c <= 32 || c >= 127) return mime_error("mime_malformed", "the first header field's name is not printable ASCII");
  }
  return Status{};
}

struct Walk {
  const MimeLimits& lim;
  ParsedMail& out;
  std::string plain, html;
  bool have_plain = false, have_html = false;
};

Status check_headers(GMimeObject* obj, const MimeLimits& lim) {
  GMimeHeaderList* list = g_mime_object_get_header_list(obj);
  if (!list) return Status{};
  int n = g_mime_header_list_get_count(list);
  if (n < 0 || static_cast<std::size_t>(n) > lim.max_headers)
    return mime_error("mime_too_complex", "a part has more than " + std::to_string(lim.max_headers) + " header fields");
  std::size_t bytes = 0;
  for (int i = 0; i < n; ++i) {
    GMimeHeader* h = g_mime_header_list_get_header_at(list, i);
    if (!h) continue;
    const char* name = g_mime_header_get_name(h);
    const char* raw = g_mime_header_get_raw_value(h);
    bytes += (name ? std::strlen(name) : 0) + (raw ? std::strlen(raw) : 0) + 2;
  }
  if (bytes > lim.max_header_bytes)
    return mime_error("mime_headers_too_large", "a part's headers are larger than " + std::to_string(lim.max_header_bytes) + " bytes");
  return Status{};
}

// The decoded content of a leaf part, converted from its charset to UTF-8.
Result<std::string> decode_text(GMimePart* part) {
  GMimeDataWrapper* content = g_mime_part_get_content(part);
  if (!content) return std::string();
  const char* charset = g_mime_object_get_content_type_parameter(GMIME_OBJECT(part), "charset");
  GPtr<GMimeStream> mem(g_mime_stream_mem_new());
  GPtr<GMimeStream> filtered(g_mime_stream_filter_new(mem.get()));
  std::string cs = charset ? charset : "us-ascii";
  std::string lower = cs;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  bool utf8 = lower == "utf-8" || lower == "utf8" || lower == "us-ascii" || lower == "ascii";
  if (!utf8) {
    GPtr<GMimeFilter> conv(g_mime_filter_charset_new(cs.c_str(), "UTF-8"));
    if (!conv) return mime_error("mime_bad_charset", "the charset '" + cs.substr(0, 64) + "' is not known");
    g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered.get()), conv.get());
  }
  if (g_mime_data_wrapper_write_to_stream(content, filtered.get()) < 0 || g_mime_stream_flush(filtered.get()) < 0)
    return mime_error("mime_bad_encoding", "a text part cannot be decoded");
  GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem.get()));
  std::string text(reinterpret_cast<const char*>(bytes->data), bytes->len);
  if (!g_utf8_validate(text.data(), static_cast<gssize>(text.size()), nullptr))
    return mime_error("mime_bad_encoding", "a text part is not valid " + cs.substr(0, 64));
  return text;
}

std::string strip_html(std::string_view html) {
  std::string out;
  bool in_tag = false;
  for (char c : html) {
    if (c == '<') in_tag = true;
    else if (c == '>') in_tag = false;
    else if (!in_tag) out.push_back(c);
  }
  return out;
}

Status walk(GMimeObject* obj, int depth, Walk& w) {
  if (depth > w.lim.max_depth)
    return mime_error("mime_too_complex", "parts are nested deeper than " + std::to_string(w.lim.max_depth));
  w.out.depth = std::max(w.out.depth, depth);
  if (auto st = check_headers(obj, w.lim); !st) return st;
  if (GMIME_IS_MULTIPART(obj)) {
    GMimeMultipart* mp = GMIME_MULTIPART(obj);
    int n = g_mime_multipart_get_count(mp);
    for (int i = 0; i < n; ++i) {
      if (auto st = walk(g_mime_multipart_get_part(mp, i), depth + 1, w); !st) return st;
    }
    return Status{};
  }
  if (GMIME_IS_MESSAGE_PART(obj)) {
    if (++w.out.parts > w.lim.max_parts)
      return mime_error("mime_too_complex", "the message has more than " + std::to_string(w.lim.max_parts) + " parts");
    GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
    if (!inner) return Status{};
    if (auto st = check_headers(GMIME_OBJECT(inner), w.lim); !st) return st;
    GMimeObject* body = g_mime_message_get_mime_part(inner);
    if (!body) return Status{};
    // An attached message is walked for its limits, but its text is not the reply's.
    Walk inner_walk{w.lim, w.out, {}, {}, true, true};
    return walk(body, depth + 1, inner_walk);
  }
  if (!GMIME_IS_PART(obj)) return Status{};
  if (++w.out.parts > w.lim.max_parts)
    return mime_error("mime_too_complex", "the message has more than " + std::to_string(w.lim.max_parts) + " parts");
  GMimePart* part = GMIME_PART(obj);
  GMimeContentType* ct = g_mime_object_get_content_type(obj);
  bool plain = ct && g_mime_content_type_is_type(ct, "text", "plain");
  bool html = ct && g_mime_content_type_is_type(ct, "text", "html");
  if ((!plain || w.have_plain) && (!html || w.have_html)) return Status{};
  if (g_mime_part_is_attachment(part)) return Status{};
  auto text = decode_text(part);
  if (!text) return std::move(text).error();
  if (plain) {
    w.plain = std::move(*text);
    w.have_plain = true;
  } else {
    w.html = std::move(*text);
    w.have_html = true;
  }
  return Status{};
}

void add_addresses(InternetAddressList* list, std::vector<std::string>& out, int depth = 0) {
  if (!list || depth > 2) return;
  int n = internet_address_list_length(list);
  for (int i = 0; i < n && out.size() < 100; ++i) {
    InternetAddress* a = internet_address_list_get_address(list, i);
    if (INTERNET_ADDRESS_IS_MAILBOX(a)) {
      const char* addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a));
      if (addr && *addr) out.emplace_back(addr);
    } else if (INTERNET_ADDRESS_IS_GROUP(a)) {
      add_addresses(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a)), out, depth + 1);
    }
  }
}

void add_header_addresses(GMimeMessage* msg, const char* header, std::vector<std::string>& out) {
  const char* v = g_mime_object_get_header(GMIME_OBJECT(msg), header);
  if (!v) return;
  GPtr<InternetAddressList> list(internet_address_list_parse(nullptr, v));
  add_addresses(list.get(), out);
}

void add_references(GMimeParserOptions* opts, const char* text, std::vector<std::string>& out) {
  if (!text) return;
  GMimeReferences* refs = g_mime_references_parse(opts, text);
  if (!refs) return;
  int n = g_mime_references_length(refs);
  for (int i = 0; i < n && out.size() < 100; ++i) {
    const char* id = g_mime_references_get_message_id(refs, i);
    if (id && *id) out.emplace_back(id);
  }
  g_mime_references_free(refs);
}

// Cuts `s` to at most `max` bytes at a UTF-8 character boundary.
bool cut_utf8(std::string& s, std::size_t max) {
  if (s.size() <= max) return false;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  s.resize(end);
  return true;
}

}  // namespace

Result<ParsedMail> parse_mime(std::string_view raw, const MimeLimits& lim) {
  if (raw.size() > lim.max_bytes) return Error::payload_too_large("the message is larger than " + std::to_string(lim.max_bytes) + " bytes");
  if (raw.empty()) return mime_error("mime_empty", "the message is empty");
  if (auto st = check_top_headers(raw, lim); !st) return st.error();
  // GMime's parser recurses per nested multipart and message/rfc822 part: bound the nesting it
  // could see before it sees it. Both type tokens must appear literally in a Content-Type field.
  std::size_t nesting = count_ci(raw, "multipart") + count_ci(raw, "rfc822") + count_ci(raw, "/global");
  if (nesting > static_cast<std::size_t>(2 * lim.max_parts + lim.max_depth))
    return mime_error("mime_too_complex", "the message names too many multipart or message parts");

  init_gmime();
  GPtr<GMimeStream> stream(g_mime_stream_mem_new_with_buffer(raw.data(), raw.size()));
  GPtr<GMimeParser> parser(g_mime_parser_new_with_stream(stream.get()));
  std::unique_ptr<GMimeParserOptions, OptionsFree> opts(g_mime_parser_options_new());
  g_mime_parser_options_set_rfc2047_compliance_mode(opts.get(), GMIME_RFC_COMPLIANCE_LOOSE);
  GPtr<GMimeMessage> msg(g_mime_parser_construct_message(parser.get(), opts.get()));
  if (!msg) return mime_error("mime_malformed", "the message cannot be parsed");

  ParsedMail out;
  if (auto st = check_headers(GMIME_OBJECT(msg.get()), lim); !st) return st.error();
  std::vector<std::string> from;
  add_addresses(g_mime_message_get_from(msg.get()), from);
  if (from.empty()) return mime_error("mime_malformed", "the message has no From address");
  out.from = from.front();
  add_addresses(g_mime_message_get_addresses(msg.get(), GMIME_ADDRESS_TYPE_TO), out.recipients);
  add_addresses(g_mime_message_get_addresses(msg.get(), GMIME_ADDRESS_TYPE_CC), out.recipients);
  add_header_addresses(msg.get(), "Delivered-To", out.recipients);
  add_header_addresses(msg.get(), "X-Original-To", out.recipients);
  if (const char* s = g_mime_message_get_subject(msg.get())) out.subject = s;
  if (!g_utf8_validate(out.subject.data(), static_cast<gssize>(out.subject.size()), nullptr))
    out.subject = "(subject not valid UTF-8)";
  cut_utf8(out.subject, 998);
  if (const char* id = g_mime_message_get_message_id(msg.get())) out.message_id = id;
  cut_utf8(out.message_id, 998);
  add_references(opts.get(), g_mime_object_get_header(GMIME_OBJECT(msg.get()), "In-Reply-To"), out.references);
  add_references(opts.get(), g_mime_object_get_header(GMIME_OBJECT(msg.get()), "References"), out.references);

  Walk w{lim, out, {}, {}, false, false};
  if (GMimeObject* body = g_mime_message_get_mime_part(msg.get())) {
    if (auto st = walk(body, 0, w); !st) return st.error();
  }
  out.text = w.have_plain ? std::move(w.plain) : strip_html(w.html);
  out.text_truncated = cut_utf8(out.text, lim.max_text_bytes);
  return out;
}

}  // namespace harmar::notify
