// `harmar collections apply FILE.yaml` and `harmar collections rollback`: declarative collection
// definitions applied to the database of the configuration, as one reversible migration.
//
//   collections:
//     - name: notes
//       fields:
//         - {name: title, type: text, required: true}
//       rules: {list: "owner = @request.auth.id", view: "owner = @request.auth.id"}
#include <boost/json.hpp>

#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "core/blocking.hpp"
#include "core/json.hpp"
#include "data/collections.hpp"
#include "data/data.hpp"
#include "platform/run.hpp"

namespace harmar::data {

namespace {

int fail(const std::string& what, const Error& e) {
  std::cerr << "harmar: " << what << ": " << e.detail << "\n";
  for (const auto& f : e.errors) std::cerr << "  " << f.field << ": " << f.message << "\n";
  return 1;
}

void print_plan(const Plan& plan, bool dry_run) {
  if (plan.empty()) {
    std::cout << "nothing to change: the database matches the file\n";
    return;
  }
  std::cout << "plan:\n";
  for (const auto& s : plan.steps) std::cout << "  " << s << "\n";
  if (!plan.up.empty()) {
    std::cout << "sql:\n";
    for (const auto& s : plan.up) std::cout << "  " << s << ";\n";
  }
  if (plan.destructive) std::cout << "warning: this drops data; rolling back recreates the structure, not the data\n";
  std::cout << (dry_run ? "dry run: nothing was changed\n" : "applied (undo with: harmar collections rollback)\n");
}

Result<std::vector<Collection>> read_file(const std::string& file) {
  std::ifstream in(file);
  if (!in) return Error::validation("cannot read " + file);
  std::stringstream ss;
  ss << in.rdbuf();
  auto doc = json::yaml_to_json(ss.str());
  if (!doc) return std::move(doc).error();
  const js::array* list = nullptr;
  if (doc->is_array()) list = &doc->as_array();
  else if (doc->is_object())
    if (const js::value* c = doc->as_object().if_contains("collections"); c && c->is_array()) list = &c->as_array();
  if (!list) return Error::validation(file + " must hold a list of collections under `collections:`");
  std::vector<Collection> out;
  std::vector<FieldError> errors;
  std::set<std::string> names;
  for (std::size_t i = 0; i < list->size(); ++i) {
    std::string at = "collections[" + std::to_string(i) + "]";
    if (!(*list)[i].is_object()) {
      errors.push_back({at, "must be a collection definition"});
      continue;
    }
    auto c = parse_collection((*list)[i].as_object());
    if (!c) {
      for (const auto& e : c.error().errors) errors.push_back({at + "." + e.field, e.message});
      continue;
    }
    if (!names.insert(c->name).second) errors.push_back({at + ".name", "defines " + c->name + " twice"});
    out.push_back(std::move(*c));
  }
  if (!errors.empty()) return Error::validation(file + " has invalid definitions", std::move(errors));
  return out;
}

asio::awaitable<Result<Plan>> apply_file(store::Database& db, store::PubSub* pubsub, std::vector<Collection> desired,
                                         std::string source, bool dry_run, bool prune) {
  Registry registry;
  Collections collections(db, pubsub, registry);
  auto loaded = co_await collections.reload();
  if (!loaded) co_return std::move(loaded).error();
  std::vector<Change> changes;
  std::set<std::string> wanted;
  for (auto& c : desired) {
    wanted.insert(c.name);
    EntryPtr cur = registry.find(c.name);
    if (cur && js::serialize(to_json(cur->c)) == js::serialize(to_json(c))) continue;
    Change ch;
    if (cur) ch.before = cur->c;
    ch.after = std::move(c);
    changes.push_back(std::move(ch));
  }
  if (prune) {
    for (const auto& e : registry.all()) {
      if (wanted.count(e->c.name)) continue;
      Change ch;
      ch.before = e->c;
      changes.push_back(std::move(ch));
    }
  }
  if (changes.empty()) co_return Plan{};
  co_return co_await collections.apply(std::move(changes), std::move(source), dry_run);
}

asio::awaitable<Result<Plan>> rollback(store::Database& db, store::PubSub* pubsub, bool dry_run) {
  Registry registry;
  Collections collections(db, pubsub, registry);
  co_return co_await collections.rollback_last(dry_run);
}

}  // namespace

int cli_apply(const config::Config& cfg, const std::string& file, bool dry_run, bool prune) {
  auto desired = read_file(file);
  if (!desired) return fail("invalid collections file", desired.error());
  auto db = store::Database::open(platform::database_url(cfg));
  if (!db) return fail("cannot open the database", db.error());
  auto pubsub = store::PubSub::open(cfg.get_string("redis"));  // tells running nodes to reload
  int rc = 0;
  {
    auto plan = platform::run_sync(apply_file(**db, pubsub ? pubsub->get() : nullptr, std::move(*desired), "cli:" + file, dry_run, prune));
    if (!plan) rc = fail("cannot apply " + file, plan.error());
    else print_plan(*plan, dry_run);
  }
  if (pubsub) pubsub->reset();
  db->reset();
  stop_blocking_pool();
  return rc;
}

int cli_rollback(const config::Config& cfg, bool dry_run) {
  auto db = store::Database::open(platform::database_url(cfg));
  if (!db) return fail("cannot open the database", db.error());
  auto pubsub = store::PubSub::open(cfg.get_string("redis"));
  int rc = 0;
  {
    auto plan = platform::run_sync(rollback(**db, pubsub ? pubsub->get() : nullptr, dry_run));
    if (!plan) {
      rc = fail("cannot roll back", plan.error());
    } else {
      std::cout << "rollback plan:\n";
      for (const auto& s : plan->steps) std::cout << "  " << s << "\n";
      for (const auto& s : plan->up) std::cout << "  " << s << ";\n";
      std::cout << (dry_run ? "dry run: nothing was changed\n" : "rolled back\n");
    }
  }
  if (pubsub) pubsub->reset();
  db->reset();
  stop_blocking_pool();
  return rc;
}

}  // namespace harmar::data
