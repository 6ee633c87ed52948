#pragma once
// Labels: a small {key: value} map of strings on a device ("os": "linux", "gpu": "a100"), which a
// task may require (every label of the task must be on the device with the same value). One set
// of rules for both, so the tasks module validates with this too.
#include <boost/json/object.hpp>

#include <map>
#include <optional>
#include <string>

#include "core/json.hpp"

namespace harmar::devices {

using Labels = std::map<std::string, std::string>;

inline constexpr std::size_t kMaxLabels = 32;
inline constexpr std::size_t kMaxLabelKey = 63;    // [A-Za-z0-9_.:/-]
inline constexpr std::size_t kMaxLabelValue = 255;

// Reads `field` of the reader's object as labels; failures go to the reader. nullopt if absent.
std::optional<Labels> read_labels(json::Reader& r, const boost::json::object& body, std::string_view field);
bool valid_label_key(std::string_view k);

boost::json::object labels_json(const Labels& l);
std::string labels_text(const Labels& l);  // canonical JSON text (keys sorted)
Labels parse_labels(std::string_view json_text);
// Whether every label of `wanted` is in `have` with the same value.
bool labels_match(const Labels& wanted, const Labels& have);

}  // namespace harmar::devices
