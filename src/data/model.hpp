#pragma once
// The nouns of the data module: a collection definition (shared/API.md "Data services") and its
// JSON form, validated as a whole so a client sees every problem of a definition in one 422.
//
//   {"name":"notes","type":"table"|"document",
//    "fields":[{"name":"title","type":"text","required":true,"max":200}, ...],
//    "indexes":[["owner"],["owner","title"]],
//    "rules":{"list":R,"view":R,"create":R,"update":R,"delete":R},
//    "schema":{...}}                      (document collections only: a JSON-schema subset)
//
// A field is {name, type, required?, unique?, default?, min?, max?, regex?, collection?, types?}:
//   text      min/max: length in characters; regex: a pattern the whole value must match
//   number    min/max: value bounds
//   bool, datetime (RFC 3339 in JSON; Unix ms in SQL; min/max: RFC 3339 bounds are not supported)
//   json      max: bytes of the serialised value
//   relation  collection: the target collection; the value is one record id
//   file      max: bytes (default data.max_file_bytes); types: allowed media types ("image/*")
// A rule missing from "rules" means admins only; "" means anyone. In a document collection,
// "indexes" name JSON paths ("address.city").
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "data/expr.hpp"

namespace harmar::data {

namespace js = boost::json;

enum class FieldType : uint8_t { Text, Number, Bool, Datetime, Json, Relation, File };
std::string_view type_name(FieldType t);
std::optional<FieldType> parse_type(std::string_view s);

struct Field {
  std::string name;
  FieldType type = FieldType::Text;
  bool required = false;
  bool unique = false;
  std::optional<js::value> default_value;
  std::optional<double> min, max;
  std::string regex;
  std::string collection;               // relation target
  std::vector<std::string> types;       // file: allowed media types

  bool operator==(const Field& o) const;
};

enum class Operation : uint8_t { List, View, Create, Update, Delete };
inline constexpr Operation kOperations[] = {Operation::List, Operation::View, Operation::Create, Operation::Update,
                                            Operation::Delete};
std::string_view operation_name(Operation op);

// One rule: nullopt text = admins only; "" = anyone; otherwise an expression.
struct Rule {
  std::optional<std::string> text;
  std::optional<expr::Node> expr;  // parsed `text` when it is non-empty

  bool admins_only() const { return !text.has_value(); }
  bool anyone() const { return text && text->empty(); }
};

// A JSON path index of a document collection, or the columns of a table index.
using Index = std::vector<std::string>;

struct Collection {
  std::string name;
  bool document = false;
  std::vector<Field> fields;  // table collections only
  std::vector<Index> indexes;
  Rule rules[5];  // by Operation
  std::optional<js::object> schema;  // document collections: the validation schema

  const Field* field(std::string_view name) const;
  const Rule& rule(Operation op) const { return rules[static_cast<int>(op)]; }
  // The SQL table holding the records.
  std::string table() const { return "c_" + name; }
};

// The fields every record has, in this order, before its own.
inline constexpr std::string_view kSystemFields[] = {"id", "created_at", "updated_at", "version"};
bool is_system_field(std::string_view name);

struct Limits {
  std::size_t max_fields = 100;
  std::size_t max_indexes = 32;
  std::size_t max_index_columns = 8;
  std::size_t max_rule_bytes = 2048;
  std::size_t max_schema_bytes = 64 * 1024;
};

// Validates a definition. Checks every name, type and option, parses every rule against the
// collection's own fields (see eval.hpp for what a rule may compare), and collects all errors.
Result<Collection> parse_collection(const js::object& o, const Limits& limits = {});
// The definition as clients see it: exactly the shape parse_collection() accepts.
js::object to_json(const Collection& c);

// Valid names: collections [a-z][a-z0-9_]{0,47}; fields [a-z_][a-z0-9_]{0,62}, not a system field.
bool valid_collection_name(std::string_view s);
bool valid_field_name(std::string_view s);
// JSON path segments: [A-Za-z_][A-Za-z0-9_]{0,63}, at most 8.
bool valid_json_path(std::string_view dotted);

// The name an index gets in SQL (deterministic from the collection and its columns or path).
std::string index_name(const Collection& c, const Index& idx, bool unique_field = false);
// The generated column an indexed JSON path of a document collection has on SQLite and MariaDB.
std::string path_column(std::string_view dotted_path);
// Whether file field `f` takes files of media type `type` ("image/png" fits "image/*").
bool accepts_media_type(const Field& f, std::string_view type);

}  // namespace harmar::data
