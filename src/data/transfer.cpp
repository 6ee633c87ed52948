// Bulk import and export of records as NDJSON (one JSON object per line) or CSV (RFC 4180, a
// header row of field names). Export then import restores a collection: ids and times are kept.
#include <boost/json.hpp>
#include <fmt/format.h>

#include <cmath>

#include "core/json.hpp"
#include "data/list_cache.hpp"
#include "data/records.hpp"

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
    case FieldType::Json: {
      boost::system::error_code ec;
      js::value v = js::parse(cell, ec);
      if (ec) return std::nullopt;
      return v;
    }
    case FieldType::File: return js::value(nullptr);  // files are not imported
    default: return js::value(cell);
  }
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
        if (fields[i] && fields[i]->type == FieldType::File) continue;
        o[header[i]] = std::move(*v);
      }
      items.emplace_back(row.line, std::move(o));
    }
  } else {
    co_return Error{415, "unsupported_media_type", "import takes application/x-ndjson or text/csv", {}};
  }
  auto txr = co_await db_.begin();
  if (!txr) co_return std::move(txr).error();
  auto& tx = **txr;
  std::vector<Event> events;
  for (auto& [line, obj] : items) {
    obj.erase("version");
    obj.erase("expand");
    auto r = co_await create_in(tx, *entry, caller, std::move(obj), events, true);
    if (!r) {
      Error e = std::move(r).error();
      e.detail = fmt::format("line {}: {}", line, e.detail);
      for (auto& fe : e.errors) fe.field = fmt::format("line {}.{}", line, fe.field);
      co_return e;
    }
    events.clear();  // bulk imports are not pushed as live changes
  }
  auto committed = co_await tx.commit();
  if (!committed) co_return std::move(committed).error();
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
