#include "data/collections.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <set>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"

namespace harmar::data {

namespace {

Error not_found(std::string_view name) {
  return Error{404, "collection_not_found", fmt::format("no collection named '{}'", name.substr(0, 64)), {}};
}

Result<Collection> parse_stored(const std::string& text) {
  boost::system::error_code ec;
  js::value v = js::parse(text, ec);
  if (ec || !v.is_object()) return Error::internal("a stored collection definition is not JSON");
  return parse_collection(v.as_object());
}

js::array strings(const std::vector<std::string>& v) {
  js::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

std::vector<std::string> string_list(const js::value& v) {
  std::vector<std::string> out;
  if (!v.is_array()) return out;
  for (const auto& s : v.as_array())
    if (s.is_string()) out.emplace_back(s.as_string());
  return out;
}

}  // namespace

Collections::Collections(store::Database& db, store::PubSub* pubsub, Registry& registry)
    : db_(db), pubsub_(pubsub), registry_(registry) {}

asio::awaitable<Status> Collections::reload() {
  auto rows = co_await db_.query("SELECT name, definition, revision FROM data_collections ORDER BY name");
  if (!rows) co_return std::move(rows).error();
  std::map<std::string, EntryPtr, std::less<>> entries;
  for (const auto& r : *rows) {
    auto c = parse_stored(r.text(1));
    if (!c) {
      log::get("data")->error(log::fields({{"msg", "stored collection definition is invalid"}, {"collection", r.text(0)},
                                           {"error", c.error().detail}}));
      continue;
    }
    auto e = std::make_shared<Entry>();
    e->c = std::move(*c);
    e->revision = r.integer(2);
    entries.emplace(r.text(0), std::move(e));
  }
  registry_.replace(std::move(entries));
  co_return Status{};
}

asio::awaitable<Result<EntryPtr>> Collections::get(std::string name) {
  if (auto e = registry_.find(name)) co_return e;
  if (!valid_collection_name(name)) co_return not_found(name);
  auto rows = co_await db_.query("SELECT 1 FROM data_collections WHERE name = $1", {name});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return not_found(name);
  auto st = co_await reload();
  if (!st) co_return std::move(st).error();
  if (auto e = registry_.find(name)) co_return e;
  co_return not_found(name);
}

asio::awaitable<Result<std::vector<Collection>>> Collections::list(std::optional<std::string> after, int limit) {
  auto rows = co_await db_.query(
      "SELECT definition FROM data_collections WHERE name > $1 ORDER BY name LIMIT $2",
      {after.value_or(std::string()), static_cast<int64_t>(limit)});
  if (!rows) co_return std::move(rows).error();
  std::vector<Collection> out;
  for (const auto& r : *rows) {
    auto c = parse_stored(r.text(0));
    if (c) out.push_back(std::move(*c));
  }
  co_return out;
}

asio::awaitable<Result<Plan>> Collections::apply(std::vector<Change> changes, std::string source, bool dry_run) {
  Dialect d = dialect_of(db_);
  // The state after the change, to check relations across collections.
  std::map<std::string, const Collection*> final_state;
  auto known = registry_.all();
  for (const auto& e : known) final_state[e->c.name] = &e->c;
  std::set<std::string> touched;
  for (const auto& ch : changes) {
    const std::string& name = ch.after ? ch.after->name : ch.before->name;
    if (!touched.insert(name).second)
      co_return Error::validation("a collection appears twice in one change", {{name, "appears twice"}});
    if (ch.after) final_state[name] = &*ch.after;
    else final_state.erase(name);
  }
  std::vector<FieldError> problems;
  for (const auto& [name, c] : final_state) {
    for (const auto& f : c->fields) {
      if (f.type != FieldType::Relation) continue;
      if (final_state.count(f.collection)) continue;
      bool dropped = false;
      for (const auto& ch : changes)
        if (ch.before && !ch.after && ch.before->name == f.collection) dropped = true;
      if (dropped)
        co_return Error::conflict(fmt::format("collection {} is the target of relation {}.{}: drop or change that first",
                                              f.collection, name, f.name),
                                  "collection_referenced");
      if (touched.count(name)) problems.push_back({name + "." + f.name, "points at unknown collection " + f.collection});
    }
  }
  if (!problems.empty()) co_return Error::validation("a relation points at an unknown collection", std::move(problems));

  Plan plan;
  for (const auto& ch : changes) {
    auto st = plan_collection(ch.before ? &*ch.before : nullptr, ch.after ? &*ch.after : nullptr, d, plan);
    if (!st) co_return std::move(st).error();
  }
  if (dry_run) co_return plan;
  bool definitions_changed = false;
  for (const auto& ch : changes) {
    if (!ch.before || !ch.after) definitions_changed = true;
    else if (js::serialize(to_json(*ch.before)) != js::serialize(to_json(*ch.after))) definitions_changed = true;
  }
  if (!definitions_changed) co_return plan;

  auto txr = co_await db_.begin();
  if (!txr) co_return std::move(txr).error();
  auto& tx = **txr;
  int64_t now = now_ms();
  js::object before_defs, after_defs;
  for (const auto& ch : changes) {
    const std::string& name = ch.after ? ch.after->name : ch.before->name;
    auto cur = co_await tx.query("SELECT definition, revision FROM data_collections WHERE name = $1", {name});
    if (!cur) co_return std::move(cur).error();
    bool exists = !cur->empty();
    bool same = exists && ch.before && cur->front().text(0) == js::serialize(to_json(*ch.before));
    if (exists != ch.before.has_value() || (exists && !same))
      co_return Error::conflict(fmt::format("collection {} changed meanwhile; read it again and retry", name));
    before_defs[name] = ch.before ? js::value(to_json(*ch.before)) : js::value(nullptr);
    after_defs[name] = ch.after ? js::value(to_json(*ch.after)) : js::value(nullptr);
  }
  for (const auto& sql : plan.up) {
    auto r = co_await tx.exec(sql);
    if (!r) {
      log::get("data")->error(log::fields({{"msg", "schema change failed"}, {"sql", sql}, {"error", r.error().detail}}));
      if (r.error().code == "conflict")
        co_return Error::conflict("existing records hold duplicate values: the unique index cannot be created",
                                  "unique_violation");
      co_return std::move(r).error();
    }
  }
  for (const auto& ch : changes) {
    if (!ch.after) {
      auto r = co_await tx.exec("DELETE FROM data_collections WHERE name = $1", {ch.before->name});
      if (!r) co_return std::move(r).error();
      continue;
    }
    std::string def = js::serialize(to_json(*ch.after));
    if (!ch.before) {
      auto r = co_await tx.exec(
          "INSERT INTO data_collections (name, definition, revision, created_at, updated_at) VALUES ($1, $2, $3, $3, $3)",
          {ch.after->name, def, now});
      if (!r) co_return std::move(r).error();
    } else {
      auto r = co_await tx.exec(
          "UPDATE data_collections SET definition = $2, revision = CASE WHEN revision >= $3 THEN revision + 1 ELSE $3 END,"
          " updated_at = $3 WHERE name = $1",
          {ch.after->name, def, now});
      if (!r) co_return std::move(r).error();
    }
  }
  auto hist = co_await tx.exec(
      "INSERT INTO data_schema_history (id, applied_at, source, steps, up_sql, down_sql, before_defs, after_defs)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
      {new_id(), now, source, js::serialize(strings(plan.steps)), js::serialize(strings(plan.up)),
       js::serialize(strings(plan.down)), js::serialize(before_defs), js::serialize(after_defs)});
  if (!hist) co_return std::move(hist).error();
  auto committed = co_await tx.commit();
  if (!committed) co_return std::move(committed).error();

  auto reloaded = co_await reload();
  if (!reloaded)
    log::get("data")->warn(log::fields({{"msg", "reload after a schema change failed"}, {"error", reloaded.error().detail}}));
  if (pubsub_) {
    auto sent = co_await pubsub_->publish(kSchemaChannel, std::to_string(now));
    (void)sent;  // other nodes also reload periodically
  }
  if (on_dropped_)
    for (const auto& ch : changes)
      if (ch.before && !ch.after) on_dropped_(*ch.before);
  log::get("data")->info(log::fields({{"msg", "schema changed"}, {"source", source},
                                      {"steps", js::serialize(strings(plan.steps))}}));
  co_return plan;
}

asio::awaitable<Result<Plan>> Collections::rollback_last(bool dry_run) {
  auto rows = co_await db_.query(
      "SELECT id, steps, up_sql, down_sql, before_defs, after_defs FROM data_schema_history"
      " WHERE rolled_back_at IS NULL ORDER BY applied_at DESC, id DESC LIMIT 1");
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return Error::not_found("no schema change to roll back");
  auto row = rows->front();
  std::string id = row.text(0);
  boost::system::error_code ec;
  js::value steps = js::parse(row.text(1), ec);
  js::value up = js::parse(row.text(2), ec);
  js::value down = js::parse(row.text(3), ec);
  js::value before = js::parse(row.text(4), ec);
  js::value after = js::parse(row.text(5), ec);
  if (ec || !before.is_object() || !after.is_object()) co_return Error::internal("the schema history row is not JSON");
  Plan plan;
  for (const auto& s : string_list(steps)) plan.steps.push_back("undo: " + s);
  plan.up = string_list(down);
  plan.down = string_list(up);
  if (dry_run) co_return plan;

  auto txr = co_await db_.begin();
  if (!txr) co_return std::move(txr).error();
  auto& tx = **txr;
  for (const auto& [name, def] : after.as_object()) {
    auto cur = co_await tx.query("SELECT definition FROM data_collections WHERE name = $1", {std::string(name)});
    if (!cur) co_return std::move(cur).error();
    bool matches = def.is_null() ? cur->empty() : (!cur->empty() && cur->front().text(0) == js::serialize(def));
    if (!matches)
      co_return Error::conflict(fmt::format("collection {} changed after that migration; it cannot be rolled back", name),
                                "rollback_stale");
  }
  for (const auto& sql : plan.up) {
    auto r = co_await tx.exec(sql);
    if (!r) co_return std::move(r).error();
  }
  int64_t now = now_ms();
  for (const auto& [name, def] : before.as_object()) {
    std::string n(name);
    auto del = co_await tx.exec("DELETE FROM data_collections WHERE name = $1", {n});
    if (!del) co_return std::move(del).error();
    if (def.is_null()) continue;
    auto ins = co_await tx.exec(
        "INSERT INTO data_collections (name, definition, revision, created_at, updated_at) VALUES ($1, $2, $3, $3, $3)",
        {n, js::serialize(def), now});
    if (!ins) co_return std::move(ins).error();
  }
  auto mark = co_await tx.exec("UPDATE data_schema_history SET rolled_back_at = $2 WHERE id = $1", {id, now});
  if (!mark) co_return std::move(mark).error();
  auto committed = co_await tx.commit();
  if (!committed) co_return std::move(committed).error();
  auto reloaded = co_await reload();
  (void)reloaded;
  if (pubsub_) {
    auto sent = co_await pubsub_->publish(kSchemaChannel, std::to_string(now));
    (void)sent;
  }
  co_return plan;
}

}  // namespace harmar::data
