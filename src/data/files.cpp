// Files in `file` fields: the bytes go to blob storage under data/{collection}/{id}/{field}/{upload},
// the record holds {key, name, type, size, sha256}. A new upload gets a new key, so the record's
// update is what switches readers to it; the old blob is removed afterwards.
#include <boost/json.hpp>
#include <fmt/format.h>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "data/records.hpp"

namespace harmar::data {

using detail::rule_sql;
using detail::select_sql;
using detail::where;

namespace {

Error no_file_field(std::string_view collection, std::string_view field) {
  return Error{404, "field_not_found", fmt::format("{} has no file field '{}'", collection, field.substr(0, 64)), {}};
}

std::string media_type(std::string_view content_type) {
  auto semi = content_type.find(';');
  std::string_view t = content_type.substr(0, semi);
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  std::string out;
  for (char c : t) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string clean_name(std::string_view name, std::string_view fallback) {
  std::string out;
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '/' || c == '\\' || c == '"') continue;
    out += c;
  }
  if (out.size() > 255) out.resize(255);
  while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();  // a cut sequence
  if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0) out.pop_back();
  if (out.empty() || out == "." || out == "..") return std::string(fallback);
  return out;
}

const Field* file_field(const Collection& c, std::string_view name) {
  const Field* f = c.field(name);
  return f && f->type == FieldType::File ? f : nullptr;
}

}  // namespace

asio::awaitable<Result<js::object>> Records::set_file(const Entry& e, const std::string& id, const std::string& field,
                                                      const Caller& caller, std::optional<js::object> stored,
                                                      std::optional<int64_t> if_match,
                                                      std::optional<std::string>* old_key) {
  if (!caller.admin && e.c.rule(Operation::Update).admins_only())
    co_return detail::denied(caller, Operation::Update, e.c.name);
  for (int attempt = 0; attempt < 4; ++attempt) {
    auto loaded = co_await load(db_, e, id, caller, Operation::Update, nullptr);
    if (!loaded) co_return std::move(loaded).error();
    if (!loaded->has_value()) co_return co_await refuse_write(db_, e, id, caller);
    js::object record = std::move(**loaded);
    int64_t version = record.at("version").to_number<int64_t>();
    if (if_match && *if_match != version)
      co_return Error{412, "version_mismatch", fmt::format("the record is at version {}: read it again and retry", version), {}};
    auto cur = co_await db_.query(
        fmt::format("SELECT {} FROM {} WHERE \"id\" = $1", quote_ident(field), quote_ident(e.c.table())), {id});
    if (!cur) co_return std::move(cur).error();
    old_key->reset();
    if (!cur->empty() && !cur->front().is_null(0)) {
      boost::system::error_code ec;
      js::value v = js::parse(cur->front().text(0), ec);
      if (!ec && v.is_object())
        if (const js::value* k = v.as_object().if_contains("key"); k && k->is_string()) *old_key = std::string(k->as_string());
    }
    int64_t now = now_ms();
    store::Param value = stored ? store::Param(js::serialize(*stored)) : store::Param(nullptr);
    std::string sql = fmt::format(
        "UPDATE {} SET {} = $1, \"updated_at\" = $2, \"version\" = \"version\" + 1 WHERE \"id\" = $3 AND \"version\" = $4",
        quote_ident(e.c.table()), quote_ident(field));
    auto r = co_await db_.exec(sql, {std::move(value), now, id, version});
    if (!r) co_return std::move(r).error();
    if (*r == 0) {
      if (if_match) co_return Error{412, "version_mismatch", "the record changed meanwhile: read it again and retry", {}};
      continue;
    }
    record[field] = stored ? file_api_value(e.c, id, field, *stored) : js::value(nullptr);
    record["updated_at"] = format_rfc3339(now);
    record["version"] = version + 1;
    std::vector<Event> events;
    events.push_back({e.c.name, "record.updated", record});
    co_await publish(std::move(events));
    co_return record;
  }
  co_return Error::conflict("the record changes too often to update it now; retry", "write_contention");
}

asio::awaitable<Result<js::object>> Records::put_file(std::string collection, std::string id, std::string field,
                                                      Caller caller, std::string content_type, std::string name,
                                                      std::string bytes, std::optional<int64_t> if_match) {
  auto er = co_await collections_.get(collection);
  if (!er) co_return std::move(er).error();
  EntryPtr entry = *er;
  const Field* f = file_field(entry->c, field);
  if (!f) co_return no_file_field(collection, field);
  if (!is_uuid(id)) co_return Error{404, "record_not_found", "no such record", {}};
  int64_t max = f->max ? static_cast<int64_t>(*f->max) : settings_.max_file_bytes;
  max = std::min(max, settings_.max_file_bytes);
  if (static_cast<int64_t>(bytes.size()) > max)
    co_return Error::payload_too_large(fmt::format("{} takes files of at most {} bytes", field, max));
  std::string type = media_type(content_type);
  if (type.empty()) type = "application/octet-stream";
  if (!accepts_media_type(*f, type)) {
    std::string allowed;
    for (const auto& t : f->types) allowed += (allowed.empty() ? "" : ", ") + t;
    co_return Error{415, "unsupported_media_type", fmt::format("{} takes {} files, not {}", field, allowed, type), {}};
  }
  // Check the rule before storing anything.
  if (!caller.admin && entry->c.rule(Operation::Update).admins_only())
    co_return detail::denied(caller, Operation::Update, entry->c.name);
  auto allowed = co_await load(db_, *entry, id, caller, Operation::Update, nullptr);
  if (!allowed) co_return std::move(allowed).error();
  if (!allowed->has_value()) co_return co_await refuse_write(db_, *entry, id, caller);

  std::string key = file_blob_key(collection, id, field);
  auto info = co_await blobs_.put(key, bytes);
  if (!info) co_return std::move(info).error();
  js::object stored{{"key", key},
                    {"name", clean_name(name, field)},
                    {"type", type},
                    {"size", info->size},
                    {"sha256", info->sha256}};
  std::optional<std::string> old_key;
  auto r = co_await set_file(*entry, id, field, caller, std::move(stored), if_match, &old_key);
  if (!r) {
    auto gone = co_await blobs_.remove(key);
    (void)gone;
    co_return r;
  }
  if (old_key && *old_key != key) {
    auto gone = co_await blobs_.remove(*old_key);
    (void)gone;
  }
  co_return r;
}

asio::awaitable<Result<FileDownload>> Records::get_file(std::string collection, std::string id, std::string field,
                                                        Caller caller) {
  auto er = co_await collections_.get(collection);
  if (!er) co_return std::move(er).error();
  EntryPtr entry = *er;
  if (!file_field(entry->c, field)) co_return no_file_field(collection, field);
  if (!caller.admin && entry->c.rule(Operation::View).admins_only())
    co_return detail::denied(caller, Operation::View, entry->c.name);
  if (!is_uuid(id)) co_return Error{404, "record_not_found", "no such record", {}};
  SqlParams p(dialect_of(db_));
  std::string idp = p.add(id);
  auto rule = rule_sql(*entry, Operation::View, caller, nullptr, p);
  if (!rule) co_return std::move(rule).error();
  std::string sql = fmt::format("SELECT {} FROM {}", quote_ident(field), quote_ident(entry->c.table())) +
                    where({"\"id\" = " + idp, *rule});
  auto rows = co_await db_.query(sql, std::move(p.params));
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return Error{404, "record_not_found", "no such record", {}};
  if (rows->front().is_null(0)) co_return Error{404, "file_not_found", "this record has no file in " + field, {}};
  boost::system::error_code ec;
  js::value v = js::parse(rows->front().text(0), ec);
  if (ec || !v.is_object()) co_return Error::internal("a stored file value is not JSON");
  const auto& o = v.as_object();
  const js::value* key = o.if_contains("key");
  if (!key || !key->is_string()) co_return Error::internal("a stored file value has no key");
  auto body = co_await blobs_.get(std::string(key->as_string()));
  if (!body) co_return std::move(body).error();
  FileDownload out;
  out.body = std::move(*body);
  if (const js::value* t = o.if_contains("type"); t && t->is_string()) out.type = std::string(t->as_string());
  if (const js::value* n = o.if_contains("name"); n && n->is_string()) out.name = std::string(n->as_string());
  co_return out;
}

asio::awaitable<Result<js::object>> Records::delete_file(std::string collection, std::string id, std::string field,
                                                         Caller caller, std::optional<int64_t> if_match) {
  auto er = co_await collections_.get(collection);
  if (!er) co_return std::move(er).error();
  EntryPtr entry = *er;
  if (!file_field(entry->c, field)) co_return no_file_field(collection, field);
  if (!is_uuid(id)) co_return Error{404, "record_not_found", "no such record", {}};
  std::optional<std::string> old_key;
  auto r = co_await set_file(*entry, id, field, caller, std::nullopt, if_match, &old_key);
  if (!r) co_return r;
  if (old_key) {
    auto gone = co_await blobs_.remove(*old_key);
    (void)gone;
  }
  co_return r;
}

asio::awaitable<void> Records::remove_collection_blobs(std::string collection) {
  std::string prefix = "data/" + collection + "/";
  for (int round = 0; round < 1000; ++round) {
    auto page = co_await blobs_.list(prefix, 1000);
    if (!page || page->empty()) co_return;
    for (const auto& b : *page) {
      auto gone = co_await blobs_.remove(b.key);
      (void)gone;
    }
  }
}

}  // namespace harmar::data
