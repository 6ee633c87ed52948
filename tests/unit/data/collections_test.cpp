// Collection definitions: schema changes as migrations that can be rolled back, on every backend,
// and the query-plan check.
#include <functional>

#include "data/plan_check.hpp"
#include "data/sqlgen.hpp"
#include "data_test_support.hpp"

namespace harmar::data::testing_support {
namespace {

class Collections_ : public DataTest {
 public:
  // 3000 records, `body(n)` each: large enough that PostgreSQL's planner prefers an index when
  // there is one.
  void fill_for_the_planner(const std::string& coll, const std::function<js::object(int)>& body) {
    for (int batch = 0; batch < 30; ++batch) {
      std::vector<WriteOp> ops(100);
      for (int i = 0; i < 100; ++i) ops[i].body = body(batch * 100 + i);
      ASSERT_TRUE(run(records->batch(coll, admin(), ops)).ok());
    }
    if (GetParam() == "postgres") {
      ASSERT_TRUE(run(db->exec("ANALYZE " + quote_ident("c_" + coll))).ok());
    }
  }
};

Change change(std::optional<Collection> before, std::optional<Collection> after) {
  Change c;
  c.before = std::move(before);
  c.after = std::move(after);
  return c;
}

Collection parsed(std::string_view json) {
  auto c = parse_collection(js::parse(json).as_object());
  if (!c.ok()) throw std::runtime_error(c.error().detail);
  return *c;
}

TEST_P(Collections_, fields_and_indexes_are_added_and_dropped_and_the_last_change_rolls_back) {
  Collection v1 = define(R"({"name": "items", "fields": [{"name": "a", "type": "text"}, {"name": "b", "type": "number"}],
                             "rules": {"create": ""}})");
  create("items", admin(), R"({"a": "x", "b": 1})");
  Collection v2 = parsed(R"({"name": "items", "fields": [{"name": "a", "type": "text", "unique": true},
                              {"name": "c", "type": "bool", "default": true}],
                             "indexes": [["c", "a"]], "rules": {"create": "", "list": ""}})");
  std::vector<Change> changes{change(v1, v2)};
  auto dry = run(collections->apply(changes, "test", true));
  ASSERT_TRUE(dry.ok()) << dry.error().detail;
  EXPECT_TRUE(dry->destructive);  // b goes away
  EXPECT_EQ(run(collections->get("items")).value()->c.fields.size(), 2u);  // a dry run changes nothing
  auto plan = run(collections->apply(changes, "test", false));
  ASSERT_TRUE(plan.ok()) << plan.error().detail;
  std::string steps;
  for (const auto& s : plan->steps) steps += s + "\n";
  EXPECT_NE(steps.find("- field b"), std::string::npos) << steps;
  EXPECT_NE(steps.find("+ field c"), std::string::npos) << steps;
  EXPECT_NE(steps.find("+ unique a"), std::string::npos) << steps;
  EXPECT_NE(steps.find("+ index [c, a]"), std::string::npos) << steps;
  auto rows = list_all("items", anonymous());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_FALSE(rows[0].contains("b"));
  EXPECT_TRUE(rows[0].at("c").is_null());  // added columns start empty; defaults apply to new records
  EXPECT_EQ(create("items", admin(), R"({"a": "y"})").at("c").as_bool(), true);
  EXPECT_EQ(run(records->create("items", admin(), js::parse(R"({"a": "y"})").as_object())).error().status, 409);

  // Undo: b comes back (empty), c and the indexes go.
  auto undo = run(collections->rollback_last(false));
  ASSERT_TRUE(undo.ok()) << undo.error().detail;
  auto back = run(collections->get("items"));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(js::serialize(to_json((*back)->c)), js::serialize(to_json(v1)));
  create("items", admin(), R"({"a": "y", "b": 2})");  // "a" is no longer unique
  auto all = list_all("items", admin());
  EXPECT_EQ(all.size(), 3u);
  // Nothing left to undo from this test but the creation itself, then nothing at all.
  ASSERT_TRUE(run(collections->rollback_last(false)).ok());
  EXPECT_EQ(run(collections->get("items")).error().status, 404);
  EXPECT_EQ(run(collections->rollback_last(false)).error().status, 404);
}

TEST_P(Collections_, type_changes_relations_and_stale_changes_are_refused) {
  Collection v1 = define(R"({"name": "t1", "fields": [{"name": "a", "type": "text"}]})");
  auto retyped = run(collections->apply({change(v1, parsed(R"({"name": "t1", "fields": [{"name": "a", "type": "number"}]})"))},
                                        "test", false));
  EXPECT_EQ(retyped.error().code, "type_change_unsupported");
  auto dangling = run(collections->apply(
      {change(std::nullopt, parsed(R"({"name": "t2", "fields": [{"name": "r", "type": "relation", "collection": "nope"}]})"))},
      "test", false));
  EXPECT_EQ(dangling.error().status, 422);
  define(R"({"name": "t3", "fields": [{"name": "r", "type": "relation", "collection": "t1"}]})");
  auto referenced = run(collections->apply({change(v1, std::nullopt)}, "test", false));
  EXPECT_EQ(referenced.error().code, "collection_referenced");
  Collection stale = parsed(R"({"name": "t1", "fields": [{"name": "zz", "type": "text"}]})");
  auto lost = run(collections->apply({change(stale, v1)}, "test", false));
  EXPECT_EQ(lost.error().status, 409);
}

TEST_P(Collections_, document_path_indexes_come_and_go) {
  Collection v1 = define(R"({"name": "docs", "type": "document", "rules": {"create": "", "list": ""}})");
  create("docs", admin(), R"({"a": {"b": "x"}})");
  Collection v2 = parsed(R"({"name": "docs", "type": "document", "indexes": [["a.b"], ["created_at"]], "rules": {"create": "", "list": ""}})");
  auto plan = run(collections->apply({change(v1, v2)}, "test", false));
  ASSERT_TRUE(plan.ok()) << plan.error().detail;
  EXPECT_EQ(list_all("docs", anonymous(), std::string("a.b = \"x\"")).size(), 1u);
  auto back = run(collections->apply({change(v2, v1)}, "test", false));
  ASSERT_TRUE(back.ok()) << back.error().detail;
  EXPECT_EQ(list_all("docs", anonymous(), std::string("a.b = \"x\"")).size(), 1u);
}

TEST_P(Collections_, long_strings_at_an_indexed_document_path_are_stored_whole_and_found) {
  // Longer than a MariaDB key prefix (191 characters), in bytes and in characters; the two differ
  // only after the prefix.
  std::string head;
  for (int i = 0; i < 300; ++i) head += "\xc3\xa9";  // é
  std::string one = head + "-one", two = head + "-two";
  auto doc = [](const std::string& s) { return js::serialize(js::object{{"a", js::object{{"b", s}}}}); };
  Collection v1 = define(R"({"name": "docs", "type": "document", "rules": {"create": "", "list": ""}})");
  create("docs", admin(), doc(one));  // before the index: adding it must take this value
  Collection v2 = parsed(R"({"name": "docs", "type": "document", "indexes": [["a.b"]], "rules": {"create": "", "list": ""}})");
  auto plan = run(collections->apply({change(v1, v2)}, "test", false));
  ASSERT_TRUE(plan.ok()) << plan.error().detail;
  create("docs", admin(), doc(two));  // with the index
  create("docs", admin(), doc("short"));
  for (const auto& s : {one, two}) {
    auto found = list_all("docs", anonymous(), "a.b = " + js::serialize(js::value(s)));
    ASSERT_EQ(found.size(), 1u) << s.size();
    EXPECT_EQ(found[0].at("a").at("b").as_string(), s);
  }
  EXPECT_EQ(list_all("docs", anonymous(), "a.b = " + js::serialize(js::value(head))).size(), 0u);
  EXPECT_EQ(list_all("docs", anonymous(), std::string("a.b ~ \"-TWO\"")).size(), 1u);
  EXPECT_EQ(list_all("docs", anonymous(), "a.b > " + js::serialize(js::value(one))).size(), 1u);  // -two
  EXPECT_EQ(list_all("docs", anonymous(), "a.b < " + js::serialize(js::value(two))).size(), 2u);  // -one, short
}

TEST_P(Collections_, definitions_are_validated_as_a_whole) {
  auto c = parse_collection(js::parse(R"({"name": "Bad Name", "type": "graph", "fields": [
      {"name": "id", "type": "text"}, {"name": "x", "type": "blob"}, {"name": "y", "type": "text", "regex": "("},
      {"name": "z", "type": "number", "min": 5, "max": 1}, {"name": "r", "type": "relation"}],
      "indexes": [["nope"]], "rules": {"list": "nope = 1", "view": "(", "other": ""}, "extra": 1})").as_object());
  ASSERT_FALSE(c.ok());
  std::set<std::string> fields;
  for (const auto& e : c.error().errors) fields.insert(e.field);
  for (const char* f : {"name", "type", "fields[0].name", "fields[1].type", "fields[2].regex", "fields[3].min",
                        "fields[4].collection", "indexes[0]", "rules.list", "rules.view", "rules.other", "extra"})
    EXPECT_TRUE(fields.count(f)) << f;
}

TEST_P(Collections_, the_plan_check_warns_about_unindexed_filters_on_large_collections) {
  define(R"({"name": "big", "fields": [{"name": "a", "type": "text"}, {"name": "b", "type": "text"}],
             "indexes": [["a"]], "rules": {"create": "", "list": ""}})");
  fill_for_the_planner("big", [](int n) {
    return js::object{{"a", "v" + std::to_string(n)}, {"b", "w" + std::to_string(n % 7)}};
  });
  records->set_plan_checker(std::make_shared<PlanChecker>(*db, PlanChecker::Mode::Refuse, 50));
  ListQuery q;
  q.filter = "b = \"w3\"";
  auto refused = run(records->list("big", anonymous(), q));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, "unindexed_filter");
  q.filter = "a = \"v3\"";
  auto fine = run(records->list("big", anonymous(), q));
  ASSERT_TRUE(fine.ok()) << fine.error().detail;
  EXPECT_EQ(fine->items.size(), 1u);
  records->set_plan_checker(std::make_shared<PlanChecker>(*db, PlanChecker::Mode::Warn, 50));
  q.filter = "b = \"w3\"";
  auto warned = run(records->list("big", anonymous(), q));
  ASSERT_TRUE(warned.ok());
  ASSERT_EQ(warned->warnings.size(), 1u);
  EXPECT_EQ(warned->warnings[0],
            "this filter reads every record of big (at least 50 records): add an index on the fields it compares");
  EXPECT_FALSE(warned->items.empty());
}

TEST_P(Collections_, the_plan_check_tells_indexed_from_unindexed_document_paths) {
  define(R"({"name": "bigdocs", "type": "document", "indexes": [["a.b"]], "rules": {"create": "", "list": ""}})");
  fill_for_the_planner("bigdocs", [](int n) {
    return js::object{{"a", js::object{{"b", "v" + std::to_string(n)}}}, {"c", "w" + std::to_string(n % 7)}};
  });
  records->set_plan_checker(std::make_shared<PlanChecker>(*db, PlanChecker::Mode::Refuse, 50));
  ListQuery q;
  q.filter = "a.b = \"v3\"";
  auto fine = run(records->list("bigdocs", anonymous(), q));
  ASSERT_TRUE(fine.ok()) << fine.error().detail;
  EXPECT_EQ(fine->items.size(), 1u);
  // An unindexed path reads every document, but on PostgreSQL the GIN index serves every path.
  q.filter = "c = \"w3\"";
  auto other = run(records->list("bigdocs", anonymous(), q));
  if (GetParam() == "postgres") {
    ASSERT_TRUE(other.ok()) << other.error().detail;
    EXPECT_FALSE(other->items.empty());
  } else {
    ASSERT_FALSE(other.ok());
    EXPECT_EQ(other.error().code, "unindexed_filter");
  }
}

TEST_P(Collections_, the_plan_check_counts_one_record_in_the_singular) {
  define(R"({"name": "one", "fields": [{"name": "b", "type": "text"}], "rules": {"create": "", "list": ""}})");
  create("one", admin(), R"({"b": "w"})");
  records->set_plan_checker(std::make_shared<PlanChecker>(*db, PlanChecker::Mode::Refuse, 1));
  ListQuery q;
  q.filter = "b = \"w\"";
  auto refused = run(records->list("one", anonymous(), q));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().detail,
            "this filter reads every record of one (at least 1 record): add an index on the fields it compares");
}

INSTANTIATE_TEST_SUITE_P(Backends, Collections_, ::testing::ValuesIn(backends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace harmar::data::testing_support
