#include "data/codec.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <regex>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "data/eval.hpp"

namespace harmar::data {

namespace {

std::size_t code_points(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

// Whole-value match with a bound: std::regex recurses per character, so very long inputs are
// refused rather than risk the stack.
constexpr std::size_t kMaxRegexInput = 4096;

bool regex_matches(const std::string& pattern, const std::string& value) {
  thread_local std::map<std::string, std::regex> compiled;
  auto it = compiled.find(pattern);
  if (it == compiled.end()) {
    if (compiled.size() > 256) compiled.clear();
    it = compiled.emplace(pattern, std::regex(pattern, std::regex::ECMAScript)).first;
  }
  try {
    return std::regex_match(value, it->second);
  } catch (const std::regex_error&) {
    return false;
  }
}

}  // namespace

js::value number_value(double d) {
  if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9007199254740992.0) return js::value(static_cast<int64_t>(d));
  return js::value(d);
}

js::value file_api_value(const Collection& c, std::string_view record_id, std::string_view field, const js::value& stored) {
  if (!stored.is_object()) return nullptr;
  const auto& o = stored.as_object();
  js::object out;
  for (const char* k : {"name", "type", "size", "sha256"})
    if (const auto* v = o.if_contains(k)) out[k] = *v;
  out["url"] = fmt::format("/v1/collections/{}/records/{}/files/{}", c.name, record_id, field);
  return out;
}

namespace {

// The API value of field `f` (not NULL) at `col` of a row of record `id`.
js::value field_value(const Collection& c, const Field& f, std::string_view id, const store::Row& row, std::size_t col) {
  switch (f.type) {
    case FieldType::Text:
    case FieldType::Relation: return js::value(row.text(col));
    case FieldType::Number: return number_value(row.real(col));
    case FieldType::Bool: return js::value(row.boolean(col));
    case FieldType::Datetime: return js::value(format_rfc3339(row.integer(col)));
    case FieldType::Json: {
      boost::system::error_code ec;
      js::value v = js::parse(row.text(col), ec);
      return ec ? js::value(nullptr) : v;
    }
    case FieldType::File: {
      boost::system::error_code ec;
      js::value v = js::parse(row.text(col), ec);
      return ec ? js::value(nullptr) : file_api_value(c, id, f.name, v);
    }
  }
  return nullptr;
}

}  // namespace

js::object record_from_row(const Collection& c, const store::Row& row, std::size_t i) {
  js::object o;
  o.reserve(4 + c.fields.size());
  std::string id = row.text(i);
  o["id"] = id;
  o["created_at"] = format_rfc3339(row.integer(i + 1));
  o["updated_at"] = format_rfc3339(row.integer(i + 2));
  o["version"] = row.integer(i + 3);
  i += 4;
  if (c.document) {
    boost::system::error_code ec;
    js::value doc = js::parse(row.text(i), ec);
    if (!ec && doc.is_object())
      for (auto& [k, v] : doc.as_object())
        if (!is_system_field(k)) o[k] = std::move(v);
    return o;
  }
  for (const auto& f : c.fields) {
    std::size_t col = i++;
    o[f.name] = row.is_null(col) ? js::value(nullptr) : field_value(c, f, id, row, col);
  }
  return o;
}

namespace {

// A JSON string as boost::json::serialize writes it: '"' and '\\' escaped, control characters as
// \b \t \n \f \r or \u00xx, everything else (UTF-8 included) as it is.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr auto kPlain = [] {
    std::array<bool, 256> t{};
    for (int c = 0x20; c < 256; ++c) t[static_cast<std::size_t>(c)] = c != '"' && c != '\\';
    return t;
  }();
  static constexpr char kHex[] = "0123456789abcdef";
  std::size_t i = 0;
  while (i < s.size() && kPlain[static_cast<unsigned char>(s[i])]) ++i;
  if (i == s.size()) {  // the usual case: one copy
    std::size_t at = out.size();
    out.resize(at + s.size() + 2);
    char* p = out.data() + at;
    p[0] = '"';
    std::memcpy(p + 1, s.data(), s.size());
    p[s.size() + 1] = '"';
    return;
  }
  out += '"';
  std::size_t plain = 0;  // start of the run not yet copied
  for (; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (kPlain[c]) continue;
    out.append(s.data() + plain, i - plain);
    plain = i + 1;
    out += '\\';
    switch (c) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '\b': out += 'b'; break;
      case '\t': out += 't'; break;
      case '\n': out += 'n'; break;
      case '\f': out += 'f'; break;
      case '\r': out += 'r'; break;
      default:
        out += "u00";
        out += kHex[c >> 4];
        out += kHex[c & 15];
    }
  }
  out.append(s.data() + plain, s.size() - plain);
  out += '"';
}

}  // namespace

std::string file_blob_prefix(std::string_view collection, std::string_view id) {
  return fmt::format("data/{}/{}/", collection, id);
}

std::string file_blob_key(std::string_view collection, std::string_view id, std::string_view field) {
  return file_blob_prefix(collection, id) + fmt::format("{}/{}", field, new_id());
}

RecordJsonWriter::RecordJsonWriter(const Collection& c) : c_(c) {
  for (const auto& f : c.fields) {
    std::string key = ",";
    append_json_string(key, f.name);
    key += ':';
    keys_.push_back(std::move(key));
  }
}

bool RecordJsonWriter::append(const store::Row& row, std::string& out) const {
  if (c_.document) return false;
  std::string scratch;
  out += "{\"id\":";
  std::string_view id = row.text_view(0, scratch);
  append_json_string(out, id);
  out += ",\"created_at\":\"";
  append_rfc3339(out, row.integer(1));
  out += "\",\"updated_at\":\"";
  append_rfc3339(out, row.integer(2));
  out += "\",\"version\":";
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, row.integer(3));
  out.append(digits, static_cast<std::size_t>(end - digits));
  std::size_t col = 4;
  std::string cell;
  for (std::size_t k = 0; k < c_.fields.size(); ++k) {
    const Field& f = c_.fields[k];
    out += keys_[k];
    std::size_t i = col++;
    if (row.is_null(i)) {
      out += "null";
      continue;
    }
    switch (f.type) {
      case FieldType::Text:
      case FieldType::Relation: append_json_string(out, row.text_view(i, cell)); break;
      case FieldType::Bool: out += row.boolean(i) ? "true" : "false"; break;
      case FieldType::Datetime:
        out += '"';
        append_rfc3339(out, row.integer(i));
        out += '"';
        break;
      default: out += js::serialize(field_value(c_, f, id, row, i));  // numbers, JSON, files
    }
  }
  out += '}';
  return true;
}

std::optional<store::Param> field_param(const Field& f, const js::value& v, const CodecLimits& limits,
                                        std::vector<FieldError>& errors, const std::string& prefix) {
  auto fail = [&](std::string msg) -> std::optional<store::Param> {
    errors.push_back({prefix + f.name, std::move(msg)});
    return std::nullopt;
  };
  if (v.is_null()) {
    if (f.required) return fail("is required");
    return store::Param(nullptr);
  }
  switch (f.type) {
    case FieldType::Text: {
      if (!v.is_string()) return fail("must be a string");
      std::string s(v.get_string());
      std::size_t len = code_points(s);
      if (s.size() > limits.max_text_bytes && !f.max) return fail(fmt::format("is longer than {} bytes", limits.max_text_bytes));
      if (f.max && len > *f.max) return fail(fmt::format("is longer than {} characters", static_cast<int64_t>(*f.max)));
      if (f.min && len < *f.min) return fail(fmt::format("is shorter than {} characters", static_cast<int64_t>(*f.min)));
      if (f.required && s.empty()) return fail("is required");
      if (!f.regex.empty() && !s.empty()) {
        if (s.size() > kMaxRegexInput) return fail(fmt::format("is too long to check against its pattern ({} bytes at most)", kMaxRegexInput));
        if (!regex_matches(f.regex, s)) return fail("does not match the pattern " + f.regex);
      }
      if (s.find('\0') != std::string::npos) return fail("must not contain NUL characters");
      return store::Param(std::move(s));
    }
    case FieldType::Relation: {
      if (!v.is_string() || !is_uuid(v.get_string())) return fail("must be the id of a record of " + f.collection);
      return store::Param(std::string(v.get_string()));
    }
    case FieldType::Number: {
      if (!v.is_number()) return fail("must be a number");
      double d = v.to_number<double>();
      if (!std::isfinite(d)) return fail("must be a finite number");
      if (f.min && d < *f.min) return fail(fmt::format("is less than {}", *f.min));
      if (f.max && d > *f.max) return fail(fmt::format("is more than {}", *f.max));
      return store::Param(d);
    }
    case FieldType::Bool:
      if (!v.is_bool()) return fail("must be true or false");
      return store::Param(v.get_bool());
    case FieldType::Datetime: {
      if (!v.is_string()) return fail("must be an RFC 3339 time such as \"2026-01-31T12:00:00Z\"");
      auto ms = parse_rfc3339(v.get_string());
      if (!ms) return fail("must be an RFC 3339 time such as \"2026-01-31T12:00:00Z\"");
      return store::Param(*ms);
    }
    case FieldType::Json: {
      std::string s = js::serialize(v);
      std::size_t max = f.max ? static_cast<std::size_t>(*f.max) : limits.max_json_bytes;
      if (s.size() > max) return fail(fmt::format("is larger than {} bytes", max));
      if (s.find("\\u0000") != std::string::npos) return fail("must not contain NUL characters");
      return store::Param(std::move(s));
    }
    case FieldType::File:
      return fail("is a file: upload it with PUT .../records/{id}/files/" + f.name);
  }
  return fail("has an unknown type");
}

js::value api_value(const Field& f, const store::Param& p) {
  if (std::holds_alternative<std::nullptr_t>(p)) return nullptr;
  switch (f.type) {
    case FieldType::Text:
    case FieldType::Relation: return js::value(std::get<std::string>(p));
    case FieldType::Number: return number_value(std::get<double>(p));
    case FieldType::Bool: return js::value(std::get<bool>(p));
    case FieldType::Datetime: return js::value(format_rfc3339(std::get<int64_t>(p)));
    case FieldType::Json: return js::parse(std::get<std::string>(p));
    case FieldType::File: return nullptr;
  }
  return nullptr;
}

js::value merge_patch(const js::value& target, const js::value& patch, int depth) {
  if (!patch.is_object() || depth > 32) return patch;
  js::object out = target.is_object() ? target.as_object() : js::object{};
  for (const auto& [k, v] : patch.as_object()) {
    if (v.is_null()) {
      out.erase(k);
    } else {
      const js::value* cur = out.if_contains(k);
      out[k] = merge_patch(cur ? *cur : js::value(nullptr), v, depth + 1);
    }
  }
  return out;
}

}  // namespace harmar::data
