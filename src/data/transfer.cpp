// Bulk import and export of records as NDJSON (one JSON object per line) or CSV (RFC 4180, a
// header row of field names). Export then import restores a collection: ids and times are kept,
// and files too while they are still on this server (an export carries a file's URL, not its bytes).
#include <boost/json.hpp>
#include <fmt/format.h>

#include <cmath>
#include <map>

#include "core/ids.hpp"
#include "core/json.hpp"
#include "data/list_cache.hpp"
#include "data/records.hpp"
#include "data/sqlgen.hpp"

namespace harmar::data {

namespace {

// RFC 4180 rows; quoted cells may hold commas, quotes ("") and line breaks. `quoted` says which
// cells were quoted (an empty unquoted cell is null, an empty quoted one is "").
struct CsvRow {
  std::vector<std::string> cells;
  std::vector<bool> quoted;
  std::size_t line = 0;
};

Result<std::vector<CsvRow>> parse_csv(std::string_view s, std::size_t max_rows) {
  std::vector<CsvRow> rows;
  CsvRow row;
  std::string cell;
  bool quoted = false, in_quotes = false, any = false;
  std::size_t line = 1;
  row.line = 1;
  auto end_cell = [&] {
    row.cells.push_back(std::move(cell));
    row.quoted.push_back(quoted);
    cell.clear();
    quoted = false;
  };
  auto end_row = [&]() -> Status {
    end_cell();
    if (!(row.cells.size() == 1 && row.cells[0].empty() && !row.quoted[0])) rows.push_back(std::move(row));
    row = CsvRow{};
    row.line = line;
    if (rows.size() > max_rows + 1)
      return Error::payload_too_large(fmt::format("an import has at most {} records", max_rows));
    return Status{};
  };
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    any = true;
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < s.size() && s[i + 1] == '"') {
          cell += '"';
          ++i;
        } else {
          in_quotes = false;
        }
      } else {
        if (c == '\n') ++line;
        cell += c;
      }
      continue;
    }
    if (c == '"' && cell.empty()) {
      in_quotes = true;
      quoted = true;
    } else if (c == ',') {
      end_cell();
    } else if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') {
      continue;
    } else if (c == '\n') {
      ++line;
      auto st = end_row();
      if (!st) return std::move(st).error();
    } else {
      cell += c;
    }
  }
  if (in_quotes) return Error::validation("the CSV ends inside a quoted cell", {{"body", "unterminated quote"}});
  if (any && (!cell.empty() || quoted || !row.cells.empty())) {
    auto st = end_row();
    if (!st) return std::move(st).error();
  }
  return rows;
}

void csv_cell(std::string& out, std::string_view v) {
  if (v.find_first_of(",\"\r\n") == std::string_view::npos && !v.empty()) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

// A CSV cell as the JSON value of a field.
std::optional<js::value> csv_value(const Field* f, const std::string& cell, bool quoted) {
  if (cell.empty() && !quoted) return js::value(nullptr);
  if (!f) return js::value(cell);  // id, created_at, updated_at
  switch (f->type) {
    case FieldType::Number: {
      char* end = nullptr;
      double d = std::strtod(cell.c_str(), &end);
      if (end != cell.c_str() + cell.size() || !std::isfinite(d)) return std::nullopt;
      return js::value(d);
    }
    case FieldType::Bool:
      if (cell == "true" || cell == "1") return js::value(true);
      if (cell == "false" || cell == "0") return js::value(false);
      return std::nullopt;
    case FieldType::Json:
    case FieldType::File: {
      boost::system::error_code ec;
      js::value v = js::parse(cell, ec);
      if (ec) return std::nullopt;
      return v;
    }
    default: return js::value(cell);
  }
}

// A file value as export writes it, {name, type, size, sha256, url}: the file of a record on this
// server, which the import copies to the imported record.
struct FileRef {
  const Field* field = nullptr;  // of the collection imported into
  std::string collection, id, source_field, sha256;
  EntryPtr source;  // the collection the URL names; null when it no longer exists
};

// url: /v1/collections/{collection}/records/{id}/files/{field}
std::optional<FileRef> parse_file_ref(const js::value& v) {
  if (!v.is_object()) return std::nullopt;
  const js::value* url = v.as_object().if_contains("url");
  const js::value* sha = v.as_object().if_contains("sha256");
  if (!url || !url->is_string() || !sha || !sha->is_string()) return std::nullopt;
  constexpr std::string_view kPrefix = "/v1/collections/";
  std::string_view rest = url->as_string();
  if (!rest.starts_with(kPrefix)) return std::nullopt;
  rest.remove_prefix(kPrefix.size());
  std::vector<std::string_view> parts;
  for (std::size_t slash; (slash = rest.find('/')) != std::string_view::npos; rest.remove_prefix(slash + 1))
    parts.push_back(rest.substr(0, slash));
  parts.push_back(rest);
  if (parts.size() != 5 || parts[1] != "records" || parts[3] != "files") return std::nullopt;
  FileRef ref;
  ref.collection = parts[0];
  ref.id = parts[2];
  ref.source_field = parts[4];
  ref.sha256 = sha->as_string();
  return ref;
}

// Takes the file values out of `body` (a create refuses them); one that is not null or an exported
// file value is an error on its field.
std::vector<FileRef> take_file_refs(const Collection& c, js::object& body, std::vector<FieldError>& errors) {
  std::vector<FileRef> refs;
  for (const auto& f : c.fields) {
    if (f.type != FieldType::File) continue;
    auto it = body.find(f.name);
    if (it == body.end()) continue;
    js::value v = std::move(it->value());
    body.erase(it);
    if (v.is_null()) continue;
    auto ref = parse_file_ref(v);
    if (!ref) {
      errors.push_back({f.name, "must be null or a file value as export writes it ({name, type, size, sha256, url})"});
      continue;
    }
    ref->field = &f;
    refs.push_back(std::move(*ref));
  }
  return refs;
}

Error at_line(std::size_t line, Error e) {
  e.detail = fmt::format("line {}: {}", line, e.detail);
  for (auto& fe : e.errors) fe.field = fmt::format("line {}.{}", line, fe.field);
  return e;
}

// Copies the file `ref` names to record `id`, in `tx` so the record's field comes and goes with
// the import. A file that is gone, or was replaced since the export, is left out (the field stays
// null). Returns the new blob's key, "" when nothing was copied.
asio::awaitable<Result<std::string>> restore_file(store::Transaction& tx, store::BlobStore& blobs,
                                                  int64_t max_file_bytes, const Entry& e, const std::string& id,
                                                  const FileRef& ref) {
  const Field* source_field = ref.source ? ref.source->c.field(ref.source_field) : nullptr;
  if (!source_field || source_field->type != FieldType::File || !is_uuid(ref.id)) co_return std::string();
  auto rows = co_await tx.query(fmt::format("SELECT {} FROM {} WHERE \"id\" = $1", quote_ident(source_field->name),
                                            quote_ident(ref.source->c.table())),
                                {ref.id});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty() || rows->front().is_null(0)) co_return std::string();
  boost::system::error_code ec;
  js::value parsed = js::parse(rows->front().text(0), ec);
  if (ec || !parsed.is_object()) co_return std::string();
  js::object stored = std::move(parsed.as_object());
  const js::value* key = stored.if_contains("key");
  const js::value* sha = stored.if_contains("sha256");
  if (!key || !key->is_string() || !sha || !sha->is_string() || sha->as_string() != ref.sha256) co_return std::string();
  const Field& f = *ref.field;
  const js::value* type_value = stored.if_contains("type");
  std::string type = type_value && type_value->is_string() ? std::string(type_value->as_string()) : "";
  if (!accepts_media_type(f, type))
    co_return Error::validation("the record is invalid", {{f.name, fmt::format("does not take {} files", type)}});
  auto bytes = co_await blobs.get(std::string(key->as_string()));
  if (!bytes) {
    if (bytes.error().status == 404) co_return std::string();
    co_return std::move(bytes).error();
  }
  int64_t max = std::min(f.max ? static_cast<int64_t>(*f.max) : max_file_bytes, max_file_bytes);
  if (static_cast<int64_t>(bytes->size()) > max)
    co_return Error::validation("the record is invalid", {{f.name, fmt::format("takes files of at most {} bytes", max)}});
  std::string copy = file_blob_key(e.c.name, id, f.name);
  auto info = co_await blobs.put(copy, *bytes);
  if (!info) co_return std::move(info).error();
  stored["key"] = copy;
  auto written = co_await tx.exec(
      fmt::format("UPDATE {} SET {} = $1 WHERE \"id\" = $2", quote_ident(e.c.table()), quote_ident(f.name)),
      {js::serialize(stored), id});
  if (!written) {
    auto gone = co_await blobs.remove(copy);
    (void)gone;
    co_return std::move(written).error();
  }
  co_return copy;
}

}  // namespace

asio::awaitable<Result<int64_t>> Records::import_records(std::string collection, Caller caller, std::string format,
                                                         std::string body) {
  if (!caller.admin) co_return caller.who ? Error::forbidden("only admins may import records") : Error::unauthorized();
  auto er = co_await collections_.get(collection);
  if (!er) co_return std::move(er).error();
  EntryPtr entry = *er;
  std::vector<std::pair<std::size_t, js::object>> items;  // (line, body)
  if (format == "ndjson") {
    std::string_view rest = body;
    std::size_t line = 0;
    while (!rest.empty()) {
      ++line;
      auto nl = rest.find('\n');
      std::string_view text = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      if (text.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      auto obj = json::parse_object(text);
      if (!obj) co_return Error::validation(fmt::format("line {}: not a JSON object", line), {{fmt::format("line {}", line), "is not a JSON object"}});
      items.emplace_back(line, std::move(*obj));
      if (items.size() > settings_.max_import_records)
        co_return Error::payload_too_large(fmt::format("an import has at most {} records", settings_.max_import_records));
    }
  } else if (format == "csv") {
    if (entry->c.document) co_return Error{415, "unsupported_media_type", "documents import as NDJSON", {}};
    auto rows = parse_csv(body, settings_.max_import_records);
    if (!rows) co_return std::move(rows).error();
    if (rows->empty()) co_return int64_t{0};
    const auto& header = rows->front().cells;
    std::vector<const Field*> fields;
    for (const auto& name : header) {
      const Field* f = entry->c.field(name);
      if (!f && !is_system_field(name))
        co_return Error::validation("the CSV header names an unknown field", {{"header", "unknown field '" + name.substr(0, 64) + "'"}});
      fields.push_back(f);
    }
    for (std::size_t r = 1; r < rows->size(); ++r) {
      const CsvRow& row = (*rows)[r];
      if (row.cells.size() != header.size())
        co_return Error::validation(fmt::format("line {}: {} cells, the header has {}", row.line, row.cells.size(), header.size()),
                                    {{fmt::format("line {}", row.line), "has the wrong number of cells"}});
      js::object o;
      for (std::size_t i = 0; i < header.size(); ++i) {
        if (header[i] == "version") continue;
        auto v = csv_value(fields[i], row.cells[i], row.quoted[i]);
        if (!v)
          co_return Error::validation(fmt::format("line {}: {} is not a valid {}", row.line, header[i],
                                                  fields[i] ? type_name(fields[i]->type) : "value"),
                                      {{fmt::format("line {}.{}", row.line, header[i]), "is invalid"}});
        o[header[i]] = std::move(*v);
      }
      items.emplace_back(row.line, std::move(o));
    }
  } else {
    co_return Error{415, "unsupported_media_type", "import takes application/x-ndjson or text/csv", {}};
  }
  // File values name files of this server; their collections are looked up before the transaction.
  std::vector<std::vector<FileRef>> files(items.size());
  std::map<std::string, EntryPtr> sources;
  for (std::size_t i = 0; i < items.size(); ++i) {
    std::vector<FieldError> errors;
    files[i] = take_file_refs(entry->c, items[i].second, errors);
    if (!errors.empty()) co_return at_line(items[i].first, Error::validation("the record is invalid", std::move(errors)));
    for (auto& ref : files[i]) {
      auto [known, fresh] = sources.try_emplace(ref.collection);
      if (fresh && valid_collection_name(ref.collection)) {
        auto source = co_await collections_.get(ref.collection);
        if (source) known->second = *source;
        else if (source.error().status != 404) co_return std::move(source).error();
      }
      ref.source = known->second;
    }
  }
  auto txr = co_await db_.begin();
  if (!txr) co_return std::move(txr).error();
  auto& tx = **txr;
  std::vector<Event> events;
  std::vector<std::string> copies;  // blobs of restored files: removed again if the import fails
  auto discard_copies = [&]() -> asio::awaitable<void> {
    for (const auto& key : copies) {
      auto gone = co_await blobs_.remove(key);
      (void)gone;
    }
  };
  for (std::size_t i = 0; i < items.size(); ++i) {
    auto& [line, obj] = items[i];
    obj.erase("version");
    obj.erase("expand");
    auto r = co_await create_in(tx, *entry, caller, std::move(obj), events, true);
    if (!r) {
      co_await discard_copies();
      co_return at_line(line, std::move(r).error());
    }
    events.clear();  // bulk imports are not pushed as live changes
    for (const auto& ref : files[i]) {
      auto copy = co_await restore_file(tx, blobs_, settings_.max_file_bytes, *entry,
                                           std::string(r->at("id").as_string()), ref);
      if (!copy) {
        co_await discard_copies();
        co_return at_line(line, std::move(copy).error());
      }
      if (!copy->empty()) copies.push_back(std::move(*copy));
    }
  }
  auto committed = co_await tx.commit();
  if (!committed) {
    co_await discard_copies();
    co_return std::move(committed).error();
  }
  if (list_cache_) list_cache_->written(entry->c.name);
  co_return static_cast<int64_t>(items.size());
}

asio::awaitable<Result<std::string>> Records::export_records(std::string collection, Caller caller, std::string format,
                                                             std::optional<std::string> filter) {
  if (format != "ndjson" && format != "csv")
    co_return Error::validation("format must be ndjson or csv", {{"format", "must be ndjson or csv"}});
  auto er = co_await collections_.get(collection);
  if (!er) co_return std::move(er).error();
  EntryPtr entry = *er;
  if (format == "csv" && entry->c.document)
    co_return Error::validation("documents export as NDJSON", {{"format", "documents export as ndjson"}});
  std::vector<std::string> cols(std::begin(kSystemFields), std::end(kSystemFields));
  for (const auto& f : entry->c.fields) cols.push_back(f.name);
  std::string out;
  if (format == "csv") {
    for (std::size_t i = 0; i < cols.size(); ++i) {
      if (i) out += ',';
      csv_cell(out, cols[i]);
    }
    out += "\r\n";
  }
  ListQuery q;
  q.filter = filter;
  q.limit = 200;
  std::size_t count = 0;
  for (;;) {
    auto page = co_await list(collection, caller, q);
    if (!page) co_return std::move(page).error();
    for (const auto& item : page->items) {
      if (++count > settings_.max_export_records)
        co_return Error::payload_too_large(fmt::format("an export has at most {} records: narrow it with a filter",
                                                       settings_.max_export_records));
      const js::object& r = item.as_object();
      if (format == "ndjson") {
        out += js::serialize(r);
        out += '\n';
        continue;
      }
      for (std::size_t i = 0; i < cols.size(); ++i) {
        if (i) out += ',';
        const js::value* v = r.if_contains(cols[i]);
        if (!v || v->is_null()) continue;
        const Field* f = entry->c.field(cols[i]);
        if (v->is_string() && (!f || f->type != FieldType::Json)) {
          std::string_view s = v->as_string();
          if (s.empty()) out += "\"\"";
          else csv_cell(out, s);
        } else {
          csv_cell(out, js::serialize(*v));
        }
      }
      out += "\r\n";
    }
    if (!page->next) break;
    q.after = page->next;
  }
  co_return out;
}

}  // namespace harmar::data
