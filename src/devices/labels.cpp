#include "devices/labels.hpp"

#include <boost/json.hpp>

namespace harmar::devices {

namespace js = boost::json;

bool valid_label_key(std::string_view k) {
  if (k.empty() || k.size() > kMaxLabelKey) return false;
  for (char c : k) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-' || c == '/' || c == ':';
    if (!ok) return false;
  }
  return true;
}

std::optional<Labels> read_labels(json::Reader& r, const js::object& body, std::string_view field) {
  const js::value* v = body.if_contains(field);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_object()) {
    r.fail(std::string(field), "must be an object of strings");
    return std::nullopt;
  }
  const auto& o = v->get_object();
  if (o.size() > kMaxLabels) {
    r.fail(std::string(field), "must have at most " + std::to_string(kMaxLabels) + " labels");
    return std::nullopt;
  }
  Labels out;
  for (const auto& kv : o) {
    if (!valid_label_key(kv.key())) {
      r.fail(std::string(field) + "." + std::string(kv.key().substr(0, 80)),
             "label keys are 1 to 63 characters of letters, digits and _ . - / :");
      return std::nullopt;
    }
    if (!kv.value().is_string() || kv.value().get_string().size() > kMaxLabelValue) {
      r.fail(std::string(field) + "." + std::string(kv.key()), "label values are strings of at most 255 characters");
      return std::nullopt;
    }
    out.emplace(std::string(kv.key()), std::string(kv.value().get_string()));
  }
  return out;
}

js::object labels_json(const Labels& l) {
  js::object o;
  for (const auto& [k, v] : l) o[k] = v;
  return o;
}

std::string labels_text(const Labels& l) { return js::serialize(labels_json(l)); }

Labels parse_labels(std::string_view text) {
  Labels out;
  boost::system::error_code ec;
  js::value v = js::parse(text, ec);
  if (ec || !v.is_object()) return out;
  for (const auto& kv : v.get_object())
    if (kv.value().is_string()) out.emplace(std::string(kv.key()), std::string(kv.value().get_string()));
  return out;
}

bool labels_match(const Labels& wanted, const Labels& have) {
  for (const auto& [k, v] : wanted) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace harmar::devices
