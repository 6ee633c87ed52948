#pragma once
// Records between their three forms: the API form (JSON: datetimes as RFC 3339, files as
// {name, type, size, sha256, url}, a document's fields at the top level), SQL parameters, and
// result rows. Every value from a client is validated against its field here.
#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "data/model.hpp"
#include "store/sql.hpp"

namespace harmar::data {

struct CodecLimits {
  std::size_t max_text_bytes = 64 * 1024;        // a text field without max
  std::size_t max_json_bytes = 256 * 1024;       // a json field without max
  std::size_t max_document_bytes = 1024 * 1024;  // a whole document
};

// The record a row of `SELECT columns(c)` holds, in API form.
js::object record_from_row(const Collection& c, const store::Row& row, std::size_t first_col = 0);
// The same records as JSON text, appended to `out` without building them first (the same text
// as serializing record_from_row); the field names are escaped once per writer, not per row.
class RecordJsonWriter {
 public:
  explicit RecordJsonWriter(const Collection& c);  // `c` must outlive the writer
  // Only for table collections: false, with nothing written, for a document collection.
  bool append(const store::Row& row, std::string& out) const;

 private:
  const Collection& c_;
  std::vector<std::string> keys_;  // ,"name": for each field
};

// Where a record's files live in blob storage: every file of record `id` is under
// file_blob_prefix (deleting the record deletes that prefix); each stored file gets a fresh key.
std::string file_blob_prefix(std::string_view collection, std::string_view id);
std::string file_blob_key(std::string_view collection, std::string_view id, std::string_view field);

// The stored form of a file field value ({key, name, type, size, sha256}) → its API form.
js::value file_api_value(const Collection& c, std::string_view record_id, std::string_view field,
                         const js::value& stored);

// A field's value from a client (null allowed) as the SQL parameter stored for it. Adds what is
// wrong to `errors` (under `prefix` + the field name) and returns nullopt then.
std::optional<store::Param> field_param(const Field& f, const js::value& v, const CodecLimits& limits,
                                        std::vector<FieldError>& errors, const std::string& prefix = "");

// The API value a stored parameter reads as (the inverse of field_param for a just-written value).
js::value api_value(const Field& f, const store::Param& p);

// Numbers as clients expect them: integral doubles as integers.
js::value number_value(double d);

// RFC 7396 JSON merge patch (bounded depth).
js::value merge_patch(const js::value& target, const js::value& patch, int depth = 0);

}  // namespace harmar::data
