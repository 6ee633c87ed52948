#pragma once
// The JSON-schema subset document collections validate with (a document passes when the schema
// accepts it): `type` (a name or a list of: object, array, string, number, integer, boolean,
// null), `properties`, `required`, `additionalProperties` (true/false), `items`, `enum`,
// `minimum`, `maximum`, `minLength`, `maxLength` (in code points), `minItems`, `maxItems`.
// Anything else in a schema is refused when the collection is defined, so a schema never
// silently checks less than its author thinks. Nesting is bounded (depth 16).
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <string>
#include <vector>

#include "core/result.hpp"

namespace harmar::data::jsonschema {

// Whether `schema` uses only the subset, with well-formed values.
Status check_schema(const boost::json::object& schema);

// What is wrong with `doc` under `schema` (empty: valid). Fields are JSON paths ("address.city").
std::vector<FieldError> validate(const boost::json::value& doc, const boost::json::object& schema);

}  // namespace harmar::data::jsonschema
