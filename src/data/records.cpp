#include "data/records.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "data/cache.hpp"
#include "data/ddl.hpp"
#include "data/group_insert.hpp"
#include "data/jsonschema.hpp"
#include "data/list_cache.hpp"
#include "data/plan_check.hpp"
#include "platform/api.hpp"

namespace harmar::data {

namespace {

// Takes the next item of a comma-separated query value (sort, expand, fields) off the front of
// `spec`, without surrounding spaces; "" for an empty item.
std::string_view next_list_item(std::string_view& spec) {
  auto comma = spec.find(',');
  std::string_view item = spec.substr(0, comma);
  spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
  while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
  while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
  return item;
}

}  // namespace

RequestContext Caller::context(const js::object* body) const {
  RequestContext ctx;
  if (who) {
    ctx.auth_id = who->user_id.empty() ? who->id : who->user_id;
    ctx.roles = who->roles;
  }
  ctx.body = body;
  return ctx;
}

namespace detail {

std::string select_sql(const Entry& e) {
  std::string sql = fmt::format("SELECT /*r{}*/ ", e.revision);
  bool first = true;
  for (const auto& c : columns(e.c)) {
    if (!first) sql += ", ";
    first = false;
    sql += quote_ident(c);
  }
  sql += " FROM ";
  sql += quote_ident(e.c.table());
  return sql;
}

Error denied(const Caller& caller, Operation op, std::string_view collection) {
  std::string what = fmt::format("only admins may {} records of {}", operation_name(op), collection);
  if (!caller.who) return Error::unauthorized(what + ": sign in");
  return Error::forbidden(what);
}

Result<std::string> rule_sql(const Entry& e, Operation op, const Caller& caller, const js::object* body,
                             SqlParams& params) {
  if (caller.admin) return std::string();
  const Rule& r = e.c.rule(op);
  if (r.admins_only()) return denied(caller, op, e.c.name);
  if (!r.expr) return std::string();
  RequestContext ctx = caller.context(body);
  return compile_rule(r, e.c, params.dialect, ctx, params);
}

std::string where(const std::vector<std::string>& conditions) {
  std::string out;
  for (const auto& c : conditions) {
    if (c.empty()) continue;
    out += out.empty() ? " WHERE " : " AND ";
    out += c;
  }
  return out;
}

}  // namespace detail

using detail::denied;
using detail::rule_sql;
using detail::select_sql;
using detail::where;

namespace {

constexpr int kWriteAttempts = 4;

Error version_mismatch(int64_t current) {
  return Error{412, "version_mismatch",
               fmt::format("the record is at version {}: read it again and retry", current), {}};
}

Error not_found() { return Error{404, "record_not_found", "no such record", {}}; }

bool writable_system_key(std::string_view k) { return is_system_field(k) || k == "expand"; }

struct SortKey {
  std::string column;
  ValueType type = ValueType::Text;
  bool desc = false;
};

Result<std::vector<SortKey>> parse_sort(const Collection& c, std::string_view spec, std::size_t max_keys) {
  std::vector<SortKey> keys;
  auto bad = [](std::string msg) { return Error{422, "invalid_sort", "sort " + msg, {{"sort", msg}}}; };
  while (!spec.empty()) {
    std::string_view item = next_list_item(spec);
    if (item.empty()) continue;
    SortKey k;
    if (item.front() == '-' || item.front() == '+') {
      k.desc = item.front() == '-';
      item.remove_prefix(1);
    }
    if (is_system_field(item)) {
      k.type = item == "id" ? ValueType::Text : item == "version" ? ValueType::Number : ValueType::Time;
    } else if (const Field* f = c.field(item)) {
      switch (f->type) {
        case FieldType::Text:
        case FieldType::Relation: k.type = ValueType::Text; break;
        case FieldType::Number: k.type = ValueType::Number; break;
        case FieldType::Bool: k.type = ValueType::Bool; break;
        case FieldType::Datetime: k.type = ValueType::Time; break;
        default: return bad(fmt::format("cannot use {} (a {} field)", f->name, type_name(f->type)));
      }
    } else {
      return bad(c.document ? fmt::format("of a document collection uses id, created_at, updated_at or version, not '{}'",
                                          std::string(item.substr(0, 64)))
                            : fmt::format("names an unknown field '{}'", std::string(item.substr(0, 64))));
    }
    k.column = std::string(item);
    for (const auto& o : keys)
      if (o.column == k.column) return bad("names " + k.column + " twice");
    keys.push_back(std::move(k));
    if (keys.size() > max_keys) return bad(fmt::format("has more than {} keys", max_keys));
  }
  bool has_id = false;
  for (const auto& k : keys) has_id = has_id || k.column == "id";
  if (!has_id) keys.push_back({"id", ValueType::Text, false});
  return keys;
}

// The value a sort key has on a record, as it is stored (times in ms).
js::value sort_value(const SortKey& k, const js::object& record) {
  const js::value* v = record.if_contains(k.column);
  if (!v || v->is_null()) return nullptr;
  if (k.type == ValueType::Time && v->is_string()) {
    auto ms = parse_rfc3339(v->get_string());
    return ms ? js::value(*ms) : js::value(nullptr);
  }
  return *v;
}

std::optional<store::Param> cursor_param(const SortKey& k, const js::value& v) {
  if (v.is_null()) return store::Param(nullptr);
  switch (k.type) {
    case ValueType::Text:
      if (v.is_string()) return store::Param(std::string(v.get_string()));
      break;
    case ValueType::Number:
      if (v.is_number()) return store::Param(v.to_number<double>());
      break;
    case ValueType::Bool:
      if (v.is_bool()) return store::Param(v.get_bool());
      break;
    case ValueType::Time:
      if (v.is_int64()) return store::Param(v.get_int64());
      break;
    default: break;
  }
  return std::nullopt;
}

std::string order_by(const std::vector<SortKey>& keys, Dialect d) {
  std::string out;
  for (const auto& k : keys) {
    if (!out.empty()) out += ", ";
    out += quote_ident(k.column);
    // NULLs sort first ascending and last descending, as SQLite and MySQL do by default. The
    // system fields are never NULL: saying so on PostgreSQL would keep it from walking their
    // index (a btree is ASC NULLS LAST) and make every page sort the whole table.
    bool nullable = d == Dialect::Postgres && !is_system_field(k.column);
    if (k.desc) out += nullable ? " DESC NULLS LAST" : " DESC";
    else out += nullable ? " ASC NULLS FIRST" : " ASC";
  }
  return out;
}

// Rows strictly after the cursor position in the order of `keys`.
Result<std::string> keyset(const std::vector<SortKey>& keys, const js::array& values, SqlParams& p) {
  if (values.size() != keys.size())
    return Error::validation("cursor does not belong to this sort", {{"cursor", "does not match the sort"}});
  std::vector<std::optional<store::Param>> params;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto v = cursor_param(keys[i], values[i]);
    if (!v) return Error::validation("cursor does not belong to this sort", {{"cursor", "does not match the sort"}});
    params.push_back(std::move(v));
  }
  std::string out;
  std::string close;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const SortKey& k = keys[i];
    std::string col = quote_ident(k.column);
    bool null = std::holds_alternative<std::nullptr_t>(*params[i]);
    std::string value = null ? "" : p.add(*params[i]);
    std::string after, equal;
    if (!k.desc) {
      after = null ? "(" + col + " IS NOT NULL)" : "(" + col + " > " + value + ")";
    } else {
      after = null ? std::string(kFalse) : "(" + col + " < " + value + " OR " + col + " IS NULL)";
    }
    equal = null ? "(" + col + " IS NULL)" : "(" + col + " = " + value + ")";
    if (i + 1 == keys.size()) {
      out += after;
    } else {
      out += "(" + after + " OR (" + equal + " AND ";
      close += "))";
    }
  }
  return out + close;
}

struct ExpandTree {
  std::map<std::string, ExpandTree> children;
};

Result<ExpandTree> parse_expand(std::string_view spec, int max_depth, std::size_t max_paths) {
  ExpandTree root;
  std::size_t paths = 0;
  auto bad = [](std::string msg) { return Error{422, "invalid_expand", "expand " + msg, {{"expand", msg}}}; };
  while (!spec.empty()) {
    std::string_view item = next_list_item(spec);
    if (item.empty()) continue;
    if (++paths > max_paths) return bad(fmt::format("names more than {} paths", max_paths));
    ExpandTree* node = &root;
    int depth = 0;
    while (!item.empty()) {
      auto dot = item.find('.');
      std::string seg(item.substr(0, dot));
      item = dot == std::string_view::npos ? std::string_view() : item.substr(dot + 1);
      if (!valid_field_name(seg)) return bad("names an invalid field '" + seg.substr(0, 64) + "'");
      if (++depth > max_depth) return bad(fmt::format("goes deeper than {} relations", max_depth));
      node = &node->children[seg];
    }
  }
  return root;
}

}  // namespace

Records::Records(store::Database& db, Collections& collections, store::BlobStore& blobs, RecordSettings settings)
    : db_(db),
      collections_(collections),
      blobs_(blobs),
      settings_(std::move(settings)),
      inserts_(std::make_unique<GroupInsert>(db)) {}

Records::~Records() = default;

asio::awaitable<void> Records::publish(std::vector<Event> events) {
  if (list_cache_) {
    for (std::size_t i = 0; i < events.size(); ++i)
      if (i == 0 || events[i].collection != events[i - 1].collection) list_cache_->written(events[i].collection);
  }
  for (auto& ev : events) {
    // Creates too: a client may re-create a deleted record under its old id, and the delete's
    // tombstone must not keep answering 404 for it until the tombstone expires.
    if (cache_) {
      const js::value* id = ev.record.if_contains("id");
      EntryPtr entry = collections_.registry().find(ev.collection);
      if (entry && id && id->is_string()) {
        std::optional<js::object> now;
        if (ev.type != "record.deleted") now = ev.record;
        co_await cache_->written(*entry, std::string(id->get_string()), std::move(now));
      }
    }
    if (publish_) co_await publish_(std::move(ev.collection), std::move(ev.type), std::move(ev.record));
  }
}

asio::awaitable<Result<std::optional<js::object>>> Records::load(store::Querier& q, const Entry& e, const std::string& id,
                                                                 const Caller& caller, Operation op,
                                                                 const js::object* body) {
  SqlParams p(dialect_of(db_));
  std::string id_param = p.add(id);
  auto rule = rule_sql(e, op, caller, body, p);
  if (!rule) co_return std::move(rule).error();
  std::string sql = select_sql(e) + where({"\"id\" = " + id_param, *rule});
  // Outside a transaction the lookup is a plain read, which may share a pipeline with others.
  // (Not a ?: of two co_awaits: g++ 12 miscompiles that.)
  Result<store::Rows> rows = Error{};
  if (&q == static_cast<store::Querier*>(&db_))
    rows = co_await db_.read(sql, std::move(p.params));
  else
    rows = co_await q.query(sql, std::move(p.params));
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<js::object>();
  co_return std::optional<js::object>(record_from_row(e.c, rows->front()));
}

asio::awaitable<Error> Records::refuse_write(store::Querier& q, const Entry& e, const std::string& id,
                                             const Caller& caller) {
  auto visible = co_await load(q, e, id, caller, Operation::View, nullptr);
  if (visible && visible->has_value()) co_return Error::forbidden("the rules do not let you change this record");
  co_return not_found();
}

asio::awaitable<Status> Records::check_relations(store::Querier& q, const Entry& e, const js::object& values,
                                                 const std::vector<std::string>* only) {
  std::vector<FieldError> errors;
  for (const auto& f : e.c.fields) {
    if (f.type != FieldType::Relation) continue;
    if (only && std::find(only->begin(), only->end(), f.name) == only->end()) continue;
    const js::value* v = values.if_contains(f.name);
    if (!v || !v->is_string()) continue;
    auto target = co_await collections_.get(f.collection);
    if (!target) co_return std::move(target).error();
    std::string sql = fmt::format("SELECT 1 FROM {} WHERE \"id\" = $1", quote_ident((*target)->c.table()));
    auto rows = co_await q.query(sql, {std::string(v->get_string())});
    if (!rows) co_return std::move(rows).error();
    if (rows->empty()) errors.push_back({f.name, "points at no record of " + f.collection});
  }
  if (!errors.empty()) co_return Error::validation("a relation points at no record", std::move(errors));
  co_return Status{};
}

asio::awaitable<Status> Records::expand(store::Querier& q, const Entry& e, std::vector<js::object*> records,
                                        const std::string& spec, const Caller& caller) {
  auto tree = parse_expand(spec, settings_.max_expand_depth, settings_.max_expand_paths);
  if (!tree) co_return std::move(tree).error();
  // Breadth first: one query per relation per level.
  struct Level {
    EntryPtr entry;
    std::vector<js::object*> records;
    const ExpandTree* tree;
  };
  std::vector<Level> work;
  auto self = co_await collections_.get(e.c.name);
  if (!self) co_return std::move(self).error();
  work.push_back({*self, std::move(records), &*tree});
  // Expanded records live here until they are copied into their parents.
  std::vector<std::unique_ptr<std::vector<js::object>>> store;
  std::vector<std::tuple<js::object*, std::string, const js::object*>> links;
  for (std::size_t w = 0; w < work.size(); ++w) {
    Level level = work[w];
    for (const auto& [name, sub] : level.tree->children) {
      const Field* f = level.entry->c.field(name);
      if (!f || f->type != FieldType::Relation)
        co_return Error{422, "invalid_expand", "expand names " + name + ", which is not a relation of " + level.entry->c.name,
                        {{"expand", name + " is not a relation field"}}};
      auto target = co_await collections_.get(f->collection);
      if (!target) co_return std::move(target).error();
      std::set<std::string> ids;
      for (auto* r : level.records)
        if (const js::value* v = r->if_contains(name); v && v->is_string()) ids.emplace(v->get_string());
      if (ids.empty()) continue;
      SqlParams p(dialect_of(db_));
      auto rule = rule_sql(**target, Operation::View, caller, nullptr, p);
      if (!rule) continue;  // admins only: nothing to show
      std::string in;
      for (const auto& id : ids) in += (in.empty() ? "" : ", ") + p.add(id);
      std::string sql = select_sql(**target) + where({"\"id\" IN (" + in + ")", *rule});
      auto rows = co_await q.query(sql, std::move(p.params));
      if (!rows) co_return std::move(rows).error();
      auto found = std::make_unique<std::vector<js::object>>();
      found->reserve(rows->size());
      for (const auto& row : *rows) found->push_back(record_from_row((*target)->c, row));
      std::map<std::string, const js::object*> by_id;
      std::vector<js::object*> next;
      for (auto& r : *found) {
        by_id[std::string(r.at("id").as_string())] = &r;
        next.push_back(&r);
      }
      for (auto* r : level.records)
        if (const js::value* v = r->if_contains(name); v && v->is_string())
          if (auto it = by_id.find(std::string(v->get_string())); it != by_id.end()) links.emplace_back(r, name, it->second);
      if (!sub.children.empty()) work.push_back({*target, std::move(next), &sub});
      store.push_back(std::move(found));
    }
  }
  // Deepest first, so a copied record already carries its own expansions.
  for (auto it = links.rbegin(); it != links.rend(); ++it) {
    auto& [parent, name, child] = *it;
    js::value& ex = (*parent)["expand"];
    if (!ex.is_object()) ex = js::object{};
    ex.as_object()[name] = *child;
  }
  co_return Status{};
}

namespace {

Result<std::vector<std::string>> parse_fields(const Collection& c, std::string_view spec) {
  std::vector<std::string> out;
  while (!spec.empty()) {
    std::string_view item = next_list_item(spec);
    if (item.empty()) continue;
    bool ok = is_system_field(item) || item == "expand" || c.field(item) ||
              (c.document && valid_json_path(item) && item.find('.') == std::string_view::npos);
    if (!ok)
      return Error{422, "invalid_fields", "fields names an unknown field",
                   {{"fields", "unknown field '" + std::string(item.substr(0, 64)) + "'"}}};
    out.emplace_back(item);
    if (out.size() > 200) return Error::validation("fields names too many fields", {{"fields", "at most 200"}});
  }
  return out;
}

void project(js::object& record, const std::vector<std::string>& fields) {
  if (fields.empty()) return;
  js::object out;
  out["id"] = record["id"];
  for (const auto& f : fields)
    if (const js::value* v = record.if_contains(f)) out[f] = *v;
  record = std::move(out);
}

}  // namespace

asio::awaitable<Result<Page>> Records::list(std::string collection, Caller caller, ListQuery q, bool as_json) {
  auto er = co_await collections_.get(collection);
  if (!er) co_return std::move(er).error();
  EntryPtr entry = *er;
  const Entry& e = *entry;
  Dialect d = dialect_of(db_);
  SqlParams p(d);
  auto rule = rule_sql(e, Operation::List, caller, nullptr, p);
  if (!rule) co_return std::move(rule).error();
  std::vector<std::string> conds{*rule};
  std::string filter_sql;
  if (q.filter && q.filter->find_first_not_of(" \t\r\n") != std::string::npos) {
    auto n = expr::parse(*q.filter, "filter");
    if (!n) co_return std::move(n).error();
    RequestContext ctx = caller.context();
    auto sql = compile(*n, e.c, d, ctx, p);
    if (!sql) co_return std::move(sql).error();
    filter_sql = *sql;
    conds.push_back(*sql);
  }
  auto keys = parse_sort(e.c, q.sort.value_or(""), settings_.max_sort_keys);
  if (!keys) co_return std::move(keys).error();
  std::vector<std::string> fields;
  if (q.fields) {
    auto f = parse_fields(e.c, *q.fields);
    if (!f) co_return std::move(f).error();
    fields = std::move(*f);
  }
  if (q.after) {
    boost::system::error_code ec;
    js::value cur = js::parse(*q.after, ec);
    if (ec || !cur.is_array())
      co_return Error::validation("cursor is not one this server issued", {{"cursor", "is invalid"}});
    auto ks = keyset(*keys, cur.as_array(), p);
    if (!ks) co_return std::move(ks).error();
    conds.push_back(*ks);
  }
  // The limit is written into the text, not bound: PostgreSQL plans a bound LIMIT as if it kept 10 %
  // of the table, so the generic plan never wins and every execution of the prepared statement
  // was planned again (about a third of the server's time per list). q.limit is a checked int.
  std::string sql = select_sql(e) + where(conds) + " ORDER BY " + order_by(*keys, d) + " LIMIT " +
                    std::to_string(q.limit + 1);
  Page page;
  // The key is taken before the query, with the collection's generation then: a write that
  // commits meanwhile makes what this query reads unreachable.
  bool cacheable = as_json && list_cache_ && !(q.expand && !q.expand->empty());
  std::string cache_key;
  if (cacheable) {
    cache_key = list_cache_->key(e.c.name, sql, p.params, q.fields.value_or(""));
    if (auto hit = list_cache_->get(cache_key)) {
      page.json = std::move(*hit);
      co_return page;
    }
  }
  if (plan_ && !filter_sql.empty()) {
    auto verdict = co_await plan_->check(e, sql, p.params);
    if (!verdict) co_return std::move(verdict).error();
    if (!verdict->empty()) page.warnings.push_back(*verdict);
  }
  auto rows = co_await db_.read(sql, std::move(p.params));
  if (!rows) co_return std::move(rows).error();
  if (as_json && fields.empty() && !(q.expand && !q.expand->empty()) && !e.c.document) {
    // Nothing to project or expand: the rows go to JSON text directly, with no DOM between.
    std::size_t n = std::min(rows->size(), static_cast<std::size_t>(q.limit));
    std::string body;
    body.reserve(64 + n * (160 + 48 * e.c.fields.size()));  // most pages without regrowing
    body += "{\"items\":[";
    RecordJsonWriter writer(e.c);
    for (std::size_t i = 0; i < n; ++i) {
      if (i) body += ',';
      writer.append((*rows)[i], body);
    }
    body += "],\"next_cursor\":";
    if (rows->size() > n) {
      js::object last = record_from_row(e.c, (*rows)[n - 1]);
      js::array pos;
      for (const auto& k : *keys) pos.push_back(sort_value(k, last));
      page.next = js::serialize(pos);
      body += js::serialize(platform::encode_cursor(*page.next));
    } else {
      body += "null";
    }
    body += '}';
    page.json = std::move(body);
    if (cacheable && page.warnings.empty()) list_cache_->put(cache_key, page.json);
    co_return page;
  }
  std::vector<js::object> records;
  records.reserve(rows->size());
  for (const auto& row : *rows) records.push_back(record_from_row(e.c, row));
  if (static_cast<int>(records.size()) > q.limit) {
    records.resize(static_cast<std::size_t>(q.limit));
    js::array pos;
    for (const auto& k : *keys) pos.push_back(sort_value(k, records.back()));
    page.next = js::serialize(pos);
  }
  if (q.expand && !q.expand->empty()) {
    std::vector<js::object*> ptrs;
    for (auto& r : records) ptrs.push_back(&r);
    auto st = co_await expand(db_, e, std::move(ptrs), *q.expand, caller);
    if (!st) co_return std::move(st).error();
  }
  page.items.reserve(records.size());
  for (auto& r : records) {
    project(r, fields);
    page.items.emplace_back(std::move(r));
  }
  if (as_json) {
    page.json = platform::list_response(std::move(page.items), page.next).body;
    page.items = {};
    if (cacheable && page.warnings.empty()) list_cache_->put(cache_key, page.json);
  }
  co_return page;
}

asio::awaitable<Result<js::object>> Records::view(std::string collection, std::string id, Caller caller,
                                                  std::optional<std::string> fields, std::optional<std::string> expand_spec) {
  auto er = co_await collections_.get(collection);
  if (!er) co_return std::move(er).error();
  EntryPtr entry = *er;
  const Entry& e = *entry;
  std::vector<std::string> projection;
  if (fields) {
    auto f = parse_fields(e.c, *fields);
    if (!f) co_return std::move(f).error();
    projection = std::move(*f);
  }
  if (!caller.admin && e.c.rule(Operation::View).admins_only()) co_return denied(caller, Operation::View, e.c.name);
  if (!is_uuid(id)) co_return not_found();
  std::optional<js::object> record;
  if (cache_) {
    // Read through the cache; the view rule is then evaluated in memory, as realtime does.
    auto cached = co_await cache_->get(e, id, db_);
    if (!cached) co_return std::move(cached).error();
    if (!cached->has_value()) co_return not_found();
    RequestContext ctx = caller.context();
    if (!caller.admin && !rule_allows(e.c.rule(Operation::View), e.c, **cached, ctx)) co_return not_found();
    record = std::move(**cached);
  } else {
    auto loaded = co_await load(db_, e, id, caller, Operation::View, nullptr);
    if (!loaded) co_return std::move(loaded).error();
    if (!loaded->has_value()) co_return not_found();
    record = std::move(**loaded);
  }
  if (expand_spec && !expand_spec->empty()) {
    std::vector<js::object*> ptrs{&*record};
    auto st = co_await expand(db_, e, std::move(ptrs), *expand_spec, caller);
    if (!st) co_return std::move(st).error();
  }
  project(*record, projection);
  co_return std::move(*record);
}

asio::awaitable<Result<js::object>> Records::create_in(store::Querier& q, const Entry& e, const Caller& caller,
                                                       js::object body, std::vector<Event>& events,
                                                       bool keep_system_fields, GroupInsert* group) {
  if (!caller.admin && e.c.rule(Operation::Create).admins_only()) co_return denied(caller, Operation::Create, e.c.name);
  std::vector<FieldError> errors;
  std::string id;
  if (const js::value* v = body.if_contains("id"); v && !v->is_null()) {
    if (!v->is_string() || !is_uuid(v->get_string())) errors.push_back({"id", "must be a UUID (or left out)"});
    else id = std::string(v->get_string());
  }
  if (id.empty()) id = new_id();
  int64_t now = now_ms();
  int64_t created = now, updated = now;
  if (keep_system_fields) {
    for (auto [key, out] : {std::pair{"created_at", &created}, std::pair{"updated_at", &updated}}) {
      const js::value* v = body.if_contains(key);
      if (!v || v->is_null()) continue;
      auto ms = v->is_string() ? parse_rfc3339(v->get_string()) : std::nullopt;
      if (!ms) errors.push_back({key, "must be an RFC 3339 time"});
      else *out = *ms;
    }
  }
  js::object record;
  record["id"] = id;
  record["created_at"] = format_rfc3339(created);
  record["updated_at"] = format_rfc3339(updated);
  record["version"] = 1;
  store::Params params{id, created, updated, int64_t{1}};
  std::vector<std::string> cols(std::begin(kSystemFields), std::end(kSystemFields));
  if (e.c.document) {
    js::object doc;
    for (const auto& [k, v] : body)
      if (!writable_system_key(k)) doc[k] = v;
    std::string text = js::serialize(doc);
    if (text.size() > settings_.codec.max_document_bytes)
      errors.push_back({"$", fmt::format("the document is larger than {} bytes", settings_.codec.max_document_bytes)});
    if (e.c.schema) {
      auto problems = jsonschema::validate(doc, *e.c.schema);
      errors.insert(errors.end(), problems.begin(), problems.end());
    }
    if (!errors.empty()) co_return Error::validation("the document is invalid", std::move(errors));
    for (const auto& [k, v] : doc) record[k] = v;
    params.push_back(std::move(text));
    cols.emplace_back("data");
  } else {
    for (const auto& [k, v] : body)
      if (!writable_system_key(k) && !e.c.field(k)) errors.push_back({std::string(k).substr(0, 64), "is not a field of " + e.c.name});
    for (const auto& f : e.c.fields) {
      const js::value* v = body.if_contains(f.name);
      js::value value = v ? *v : f.default_value ? *f.default_value : js::value(nullptr);
      if (f.type == FieldType::File) {
        if (v && !v->is_null()) errors.push_back({f.name, "is a file: upload it with PUT .../records/{id}/files/" + f.name});
        record[f.name] = nullptr;
        continue;
      }
      auto param = field_param(f, value, settings_.codec, errors);
      if (!param) continue;
      record[f.name] = api_value(f, *param);
      params.push_back(std::move(*param));
      cols.push_back(f.name);
    }
    if (!errors.empty()) co_return Error::validation("the record is invalid", std::move(errors));
  }
  if (!caller.admin) {
    const Rule& r = e.c.rule(Operation::Create);
    RequestContext ctx = caller.context(&body);
    if (r.expr && !evaluate(*r.expr, e.c, record, ctx)) co_return Error::forbidden("the create rule does not allow this record");
  }
  auto rel = co_await check_relations(q, e, record);
  if (!rel) co_return std::move(rel).error();
  std::string names, values;
  for (std::size_t i = 0; i < cols.size(); ++i) {
    names += (i ? ", " : "") + quote_ident(cols[i]);
    values += (i ? ", $" : "$") + std::to_string(i + 1);
  }
  std::string head = fmt::format("INSERT INTO {} ({})", quote_ident(e.c.table()), names);
  Status written;
  if (group) {
    written = co_await group->insert(std::move(head), cols.size(), std::move(params));
  } else {
    auto r = co_await q.exec(head + " VALUES (" + values + ")", std::move(params));
    if (!r) written = std::move(r).error();
  }
  if (!written) {
    if (written.error().code == "conflict")
      co_return Error::conflict("a record with this id or with one of these unique values exists", "unique_violation");
    co_return std::move(written).error();
  }
  events.push_back({e.c.name, "record.created", record});
  co_return record;
}

asio::awaitable<Result<js::object>> Records::create(std::string collection, Caller caller, js::object body) {
  auto er = co_await collections_.get(collection);
  if (!er) co_return std::move(er).error();
  EntryPtr entry = *er;
  std::vector<Event> events;
  auto r = co_await create_in(db_, *entry, caller, std::move(body), events, false, inserts_.get());
  if (!r) co_return r;
  co_await publish(std::move(events));
  co_return r;
}

asio::awaitable<Result<js::object>> Records::update_in(store::Querier& q, const Entry& e, const std::string& id,
                                                       const Caller& caller, js::object body, bool replace,
                                                       std::optional<int64_t> if_match, std::vector<Event>& events) {
  if (!caller.admin && e.c.rule(Operation::Update).admins_only()) co_return denied(caller, Operation::Update, e.c.name);
  if (!is_uuid(id)) co_return not_found();
  for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
    auto loaded = co_await load(q, e, id, caller, Operation::Update, &body);
    if (!loaded) co_return std::move(loaded).error();
    if (!loaded->has_value()) co_return co_await refuse_write(q, e, id, caller);
    js::object record = std::move(**loaded);
    int64_t version = record.at("version").to_number<int64_t>();
    if (if_match && *if_match != version) co_return version_mismatch(version);
    std::vector<FieldError> errors;
    std::vector<std::string> cols;
    store::Params params;
    if (e.c.document) {
      js::object current;
      for (const auto& [k, v] : record)
        if (!is_system_field(k)) current[k] = v;
      js::object patch;
      for (const auto& [k, v] : body)
        if (!writable_system_key(k)) patch[k] = v;
      js::value doc = replace ? js::value(patch) : merge_patch(current, patch);
      std::string text = js::serialize(doc);
      if (text.size() > settings_.codec.max_document_bytes)
        errors.push_back({"$", fmt::format("the document is larger than {} bytes", settings_.codec.max_document_bytes)});
      if (e.c.schema) {
        auto problems = jsonschema::validate(doc, *e.c.schema);
        errors.insert(errors.end(), problems.begin(), problems.end());
      }
      if (!errors.empty()) co_return Error::validation("the document is invalid", std::move(errors));
      js::object next;
      for (const auto& k : kSystemFields) next[k] = record[k];
      for (const auto& [k, v] : doc.as_object()) next[k] = v;
      record = std::move(next);
      cols.emplace_back("data");
      params.push_back(std::move(text));
    } else {
      for (const auto& [k, v] : body)
        if (!writable_system_key(k) && !e.c.field(k)) errors.push_back({std::string(k).substr(0, 64), "is not a field of " + e.c.name});
      for (const auto& f : e.c.fields) {
        const js::value* v = body.if_contains(f.name);
        if (f.type == FieldType::File) {
          if (v && !v->is_null()) errors.push_back({f.name, "is a file: upload it with PUT .../records/{id}/files/" + f.name});
          continue;  // files change only through the files endpoints
        }
        if (!v && !replace) continue;
        js::value value = v ? *v : f.default_value ? *f.default_value : js::value(nullptr);
        auto param = field_param(f, value, settings_.codec, errors);
        if (!param) continue;
        record[f.name] = api_value(f, *param);
        params.push_back(std::move(*param));
        cols.push_back(f.name);
      }
      if (!errors.empty()) co_return Error::validation("the record is invalid", std::move(errors));
    }
    // Only the relations this write sets: a target deleted since (deletes do not cascade) must
    // not make every other edit of the record impossible.
    auto rel = co_await check_relations(q, e, record, &cols);
    if (!rel) co_return std::move(rel).error();
    int64_t now = now_ms();
    std::string sets;
    for (std::size_t i = 0; i < cols.size(); ++i) sets += quote_ident(cols[i]) + " = $" + std::to_string(i + 1) + ", ";
    std::size_t n = params.size();
    sets += fmt::format("\"updated_at\" = ${}, \"version\" = \"version\" + 1", n + 1);
    params.push_back(now);
    params.push_back(id);
    params.push_back(version);
    std::string sql = fmt::format("UPDATE {} SET {} WHERE \"id\" = ${} AND \"version\" = ${}", quote_ident(e.c.table()), sets,
                                  n + 2, n + 3);
    auto r = co_await q.exec(sql, std::move(params));
    if (!r) {
      if (r.error().code == "conflict") co_return Error::conflict("another record holds one of these unique values", "unique_violation");
      co_return std::move(r).error();
    }
    if (*r == 0) {
      if (if_match) co_return version_mismatch(version + 1);
      continue;  // another write won: read again
    }
    record["updated_at"] = format_rfc3339(now);
    record["version"] = version + 1;
    events.push_back({e.c.name, "record.updated", record});
    co_return record;
  }
  co_return Error::conflict("the record changes too often to update it now; retry", "write_contention");
}

asio::awaitable<Result<js::object>> Records::update(std::string collection, std::string id, Caller caller, js::object body,
                                                    bool replace, std::optional<int64_t> if_match) {
  auto er = co_await collections_.get(collection);
  if (!er) co_return std::move(er).error();
  EntryPtr entry = *er;
  std::vector<Event> events;
  auto r = co_await update_in(db_, *entry, id, caller, std::move(body), replace, if_match, events);
  if (!r) co_return r;
  co_await publish(std::move(events));
  co_return r;
}

asio::awaitable<Status> Records::remove_in(store::Querier& q, const Entry& e, const std::string& id, const Caller& caller,
                                           std::optional<int64_t> if_match, std::vector<Event>& events) {
  if (!caller.admin && e.c.rule(Operation::Delete).admins_only()) co_return denied(caller, Operation::Delete, e.c.name);
  if (!is_uuid(id)) co_return not_found();
  for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
    auto loaded = co_await load(q, e, id, caller, Operation::Delete, nullptr);
    if (!loaded) co_return std::move(loaded).error();
    if (!loaded->has_value()) co_return co_await refuse_write(q, e, id, caller);
    js::object record = std::move(**loaded);
    int64_t version = record.at("version").to_number<int64_t>();
    if (if_match && *if_match != version) co_return version_mismatch(version);
    std::string sql = fmt::format("DELETE FROM {} WHERE \"id\" = $1 AND \"version\" = $2", quote_ident(e.c.table()));
    auto r = co_await q.exec(sql, {id, version});
    if (!r) co_return std::move(r).error();
    if (*r == 0) {
      if (if_match) co_return version_mismatch(version + 1);
      continue;
    }
    events.push_back({e.c.name, "record.deleted", std::move(record)});
    co_return Status{};
  }
  co_return Error::conflict("the record changes too often to delete it now; retry", "write_contention");
}

asio::awaitable<Status> Records::remove(std::string collection, std::string id, Caller caller,
                                        std::optional<int64_t> if_match) {
  auto er = co_await collections_.get(collection);
  if (!er) co_return std::move(er).error();
  EntryPtr entry = *er;
  std::vector<Event> events;
  auto r = co_await remove_in(db_, *entry, id, caller, if_match, events);
  if (!r) co_return r;
  bool has_files = false;
  for (const auto& f : entry->c.fields) has_files = has_files || f.type == FieldType::File;
  if (has_files) {
    auto blobs = co_await blobs_.list(file_blob_prefix(collection, id), 1000);
    if (blobs) {
      for (const auto& b : *blobs) {
        auto gone = co_await blobs_.remove(b.key);
        (void)gone;
      }
    }
  }
  co_await publish(std::move(events));
  co_return r;
}

asio::awaitable<Result<js::array>> Records::batch(std::string collection, Caller caller, std::vector<WriteOp> ops) {
  if (ops.empty()) co_return Error::validation("a batch needs operations", {{"operations", "is empty"}});
  if (ops.size() > settings_.max_batch)
    co_return Error::validation(fmt::format("a batch has at most {} operations", settings_.max_batch),
                                {{"operations", fmt::format("at most {}", settings_.max_batch)}});
  auto er = co_await collections_.get(collection);
  if (!er) co_return std::move(er).error();
  EntryPtr entry = *er;
  auto txr = co_await db_.begin();
  if (!txr) co_return std::move(txr).error();
  auto& tx = **txr;
  std::vector<Event> events;
  js::array results;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    WriteOp& op = ops[i];
    Error failure;
    bool failed = false;
    switch (op.kind) {
      case WriteOp::Kind::Create: {
        auto r = co_await create_in(tx, *entry, caller, std::move(op.body), events);
        if (r) results.emplace_back(std::move(*r));
        else { failure = std::move(r).error(); failed = true; }
        break;
      }
      case WriteOp::Kind::Update:
      case WriteOp::Kind::Replace: {
        auto r = co_await update_in(tx, *entry, op.id, caller, std::move(op.body), op.kind == WriteOp::Kind::Replace,
                                    op.if_match, events);
        if (r) results.emplace_back(std::move(*r));
        else { failure = std::move(r).error(); failed = true; }
        break;
      }
      case WriteOp::Kind::Delete: {
        auto r = co_await remove_in(tx, *entry, op.id, caller, op.if_match, events);
        if (r) results.emplace_back(nullptr);
        else { failure = std::move(r).error(); failed = true; }
        break;
      }
    }
    if (failed) {
      std::string at = fmt::format("operations[{}]", i);
      failure.detail = at + ": " + failure.detail;
      for (auto& fe : failure.errors) fe.field = at + "." + fe.field;
      co_return failure;  // the transaction rolls back when dropped
    }
  }
  auto committed = co_await tx.commit();
  if (!committed) co_return std::move(committed).error();
  co_await publish(std::move(events));
  co_return results;
}

}  // namespace harmar::data
