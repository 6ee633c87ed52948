// The records suite: the same tests on SQLite, PostgreSQL and MariaDB (the servers
// scripts/test-services.sh starts).
#include <boost/asio/detached.hpp>
#include <fmt/format.h>

#include <set>

#include "core/ids.hpp"
#include "data/group_insert.hpp"
#include "data/list_cache.hpp"
#include "data_test_support.hpp"
#include "platform/api.hpp"

namespace harmar::data::testing_support {
namespace {

constexpr std::string_view kNotes = R"({
  "name": "notes",
  "fields": [
    {"name": "title", "type": "text", "required": true, "max": 100},
    {"name": "count", "type": "number", "min": 0},
    {"name": "done", "type": "bool", "default": false},
    {"name": "due", "type": "datetime"},
    {"name": "meta", "type": "json"},
    {"name": "owner", "type": "text"}
  ],
  "indexes": [["owner"], ["count"]],
  "rules": {"list": "owner = @request.auth.id", "view": "owner = @request.auth.id",
            "create": "owner = @request.auth.id", "update": "owner = @request.auth.id",
            "delete": "owner = @request.auth.id"}
})";

using Records_ = DataTest;

TEST_P(Records_, create_view_patch_put_delete_round_trip) {
  define(kNotes);
  Caller a = user("user-a");
  js::object r = create("notes", a, R"({"title": "first", "count": 3, "due": "2026-02-01T10:00:00Z",
                                         "meta": {"tags": ["x"], "n": 1.5}, "owner": "user-a"})");
  ASSERT_FALSE(r.empty());
  EXPECT_EQ(r.at("version").as_int64(), 1);
  EXPECT_EQ(r.at("done").as_bool(), false);  // the default
  EXPECT_EQ(r.at("due").as_string(), "2026-02-01T10:00:00.000Z");
  auto viewed = run(records->view("notes", id_of(r), a, std::nullopt, std::nullopt));
  ASSERT_TRUE(viewed.ok()) << viewed.error().detail;
  EXPECT_EQ(*viewed, r);
  EXPECT_EQ(viewed->at("meta").at("tags").as_array()[0].as_string(), "x");

  auto patched = run(records->update("notes", id_of(r), a, js::parse(R"({"count": 4})").as_object(), false, std::nullopt));
  ASSERT_TRUE(patched.ok()) << patched.error().detail;
  EXPECT_EQ(patched->at("count").as_int64(), 4);
  EXPECT_EQ(patched->at("title").as_string(), "first");
  EXPECT_EQ(patched->at("version").as_int64(), 2);

  auto put = run(records->update("notes", id_of(r), a, js::parse(R"({"title": "second", "owner": "user-a"})").as_object(),
                                 true, int64_t{2}));
  ASSERT_TRUE(put.ok()) << put.error().detail;
  EXPECT_TRUE(put->at("count").is_null());  // PUT replaces
  EXPECT_EQ(put->at("done").as_bool(), false);
  EXPECT_EQ(put->at("version").as_int64(), 3);
  auto again = run(records->view("notes", id_of(r), a, std::nullopt, std::nullopt));
  EXPECT_EQ(*again, *put);

  auto del = run(records->remove("notes", id_of(r), a, std::nullopt));
  EXPECT_TRUE(del.ok());
  auto gone = run(records->view("notes", id_of(r), a, std::nullopt, std::nullopt));
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().status, 404);

  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].type, "record.created");
  EXPECT_EQ(events[1].type, "record.updated");
  EXPECT_EQ(events[3].type, "record.deleted");
  EXPECT_EQ(events[3].record.at("title").as_string(), "second");
}

TEST_P(Records_, invalid_values_are_refused_field_by_field) {
  define(kNotes);
  auto r = run(records->create("notes", user("u"), js::parse(R"({"count": -1, "due": "tomorrow", "done": "yes",
                                                                    "nope": 1, "owner": "u"})").as_object()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 422);
  std::set<std::string> fields;
  for (const auto& e : r.error().errors) fields.insert(e.field);
  EXPECT_EQ(fields, (std::set<std::string>{"title", "count", "due", "done", "nope"}));
  auto long_title = run(records->create("notes", user("u"), js::object{{"title", std::string(101, 'x')}, {"owner", "u"}}));
  EXPECT_FALSE(long_title.ok());
}

TEST_P(Records_, list_filters_sorts_and_pages_with_cursors) {
  define(kNotes);
  Caller a = user("a");
  for (int i = 0; i < 23; ++i)
    create("notes", a, fmt::format(R"({{"title": "{}", "count": {}, "owner": "a", "done": {}}})",
                                   i % 2 ? "alpha" : "beta", i % 5, i % 3 == 0 ? "true" : "false"));
  auto all = list_all("notes", a, std::nullopt, std::string("-count,title"), 4);
  ASSERT_EQ(all.size(), 23u);
  for (std::size_t i = 1; i < all.size(); ++i) {
    double c0 = all[i - 1].at("count").to_number<double>(), c1 = all[i].at("count").to_number<double>();
    EXPECT_GE(c0, c1);
    if (c0 == c1) {
      EXPECT_LE(all[i - 1].at("title").as_string(), all[i].at("title").as_string());
    }
  }
  std::set<std::string> ids;
  for (const auto& r : all) ids.insert(id_of(r));
  EXPECT_EQ(ids.size(), 23u);  // every record exactly once across pages

  auto filtered = list_all("notes", a, std::string("count >= 3 && title ~ \"ALP\" && done = false"), std::nullopt, 2);
  for (const auto& r : filtered) {
    EXPECT_GE(r.at("count").to_number<double>(), 3);
    EXPECT_EQ(r.at("title").as_string(), "alpha");
    EXPECT_FALSE(r.at("done").as_bool());
  }
  std::size_t expected = 0;
  for (int i = 0; i < 23; ++i) expected += (i % 5 >= 3 && i % 2 == 1 && i % 3 != 0);
  EXPECT_EQ(filtered.size(), expected);

  ListQuery q;
  q.fields = "title";
  q.limit = 1;
  auto page = run(records->list("notes", a, q));
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->items[0].as_object().size(), 2u);  // id and title
  q.fields = "nope";
  EXPECT_EQ(run(records->list("notes", a, q)).error().code, "invalid_fields");
  q.fields.reset();
  q.sort = "meta";
  EXPECT_EQ(run(records->list("notes", a, q)).error().code, "invalid_sort");
  q.sort.reset();
  q.filter = "title = 1";
  EXPECT_EQ(run(records->list("notes", a, q)).error().code, "invalid_expression");
}

TEST_P(Records_, nulls_sort_first_ascending_and_last_descending_across_pages) {
  define(kNotes);
  Caller a = user("a");
  for (int i = 0; i < 9; ++i)
    create("notes", a, i % 3 == 0 ? std::string(R"({"title": "n", "owner": "a"})")
                                  : fmt::format(R"({{"title": "n", "owner": "a", "count": {}}})", i));
  for (const char* sort : {"count", "-count"}) {
    auto all = list_all("notes", a, std::nullopt, std::string(sort), 2);
    ASSERT_EQ(all.size(), 9u) << sort;
    bool desc = sort[0] == '-';
    std::size_t nulls = 0;
    for (std::size_t i = 0; i < all.size(); ++i) {
      bool null = all[i].at("count").is_null();
      nulls += null;
      if (null) {
        EXPECT_TRUE(desc ? i >= 6 : i < 3) << sort << " at " << i;
      }
    }
    EXPECT_EQ(nulls, 3u);
  }
}

TEST_P(Records_, stale_if_match_is_412_and_the_current_version_wins) {
  define(kNotes);
  Caller a = user("a");
  js::object r = create("notes", a, R"({"title": "t", "owner": "a"})");
  auto ok = run(records->update("notes", id_of(r), a, js::parse(R"({"count": 1})").as_object(), false, int64_t{1}));
  ASSERT_TRUE(ok.ok());
  auto stale = run(records->update("notes", id_of(r), a, js::parse(R"({"count": 2})").as_object(), false, int64_t{1}));
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().status, 412);
  auto del = run(records->remove("notes", id_of(r), a, int64_t{1}));
  EXPECT_EQ(del.error().status, 412);
  EXPECT_TRUE(run(records->remove("notes", id_of(r), a, int64_t{2})).ok());
}

TEST_P(Records_, another_user_never_reads_or_writes_what_the_rules_forbid) {
  define(kNotes);
  Caller a = user("a"), b = user("b");
  js::object mine = create("notes", a, R"({"title": "a's", "owner": "a"})");
  create("notes", b, R"({"title": "b's", "owner": "b"})");
  // Lists hold only the caller's records, whatever the filter says.
  for (const char* f : {"owner = \"a\"", "owner != \"zzz\" || title ~ \"\"", "1 = 1", "owner = null || owner != null",
                        "@request.auth.id = \"b\" || id != \"\""}) {
    auto seen = list_all("notes", b, std::string(f));
    for (const auto& r : seen) EXPECT_EQ(r.at("owner").as_string(), "b") << f;
  }
  // By id: as if it did not exist.
  EXPECT_EQ(run(records->view("notes", id_of(mine), b, std::nullopt, std::nullopt)).error().status, 404);
  EXPECT_EQ(run(records->update("notes", id_of(mine), b, js::parse(R"({"title": "x"})").as_object(), false, std::nullopt))
                .error().status,
            404);
  EXPECT_EQ(run(records->remove("notes", id_of(mine), b, std::nullopt)).error().status, 404);
  // Creating a record for someone else is refused by the create rule.
  auto forged = run(records->create("notes", b, js::parse(R"({"title": "x", "owner": "a"})").as_object()));
  EXPECT_EQ(forged.error().status, 403);
  // Anonymous callers see nothing and may not create.
  EXPECT_TRUE(list_all("notes", anonymous()).empty());
  EXPECT_EQ(run(records->create("notes", anonymous(), js::parse(R"({"title": "x", "owner": "a"})").as_object())).error().status,
            403);
  // Admins bypass the rules.
  EXPECT_EQ(list_all("notes", admin()).size(), 2u);
  auto still = run(records->view("notes", id_of(mine), a, std::nullopt, std::nullopt));
  EXPECT_EQ(still->at("title").as_string(), "a's");
}

TEST_P(Records_, a_visible_record_the_caller_may_not_change_is_403) {
  define(R"({"name": "posts", "fields": [{"name": "body", "type": "text"}, {"name": "author", "type": "text"}],
             "rules": {"list": "", "view": "", "create": "author = @request.auth.id",
                       "update": "author = @request.auth.id", "delete": "author = @request.auth.id"}})");
  js::object p = create("posts", user("a"), R"({"body": "hi", "author": "a"})");
  auto r = run(records->update("posts", id_of(p), user("b"), js::parse(R"({"body": "mine"})").as_object(), false, std::nullopt));
  EXPECT_EQ(r.error().status, 403);
  EXPECT_EQ(run(records->remove("posts", id_of(p), user("b"), std::nullopt)).error().status, 403);
  EXPECT_EQ(list_all("posts", anonymous()).size(), 1u);
}

TEST_P(Records_, missing_rules_mean_admins_only_and_empty_rules_anyone) {
  define(R"({"name": "secrets", "fields": [{"name": "v", "type": "text"}], "rules": {"create": ""}})");
  auto created = run(records->create("secrets", anonymous(), js::parse(R"({"v": "x"})").as_object()));
  ASSERT_TRUE(created.ok());
  ListQuery q;
  EXPECT_EQ(run(records->list("secrets", anonymous(), q)).error().status, 401);
  EXPECT_EQ(run(records->list("secrets", user("a"), q)).error().status, 403);
  EXPECT_EQ(run(records->view("secrets", id_of(*created), user("a"), std::nullopt, std::nullopt)).error().status, 403);
  EXPECT_EQ(run(records->remove("secrets", id_of(*created), user("a"), std::nullopt)).error().status, 403);
  EXPECT_TRUE(run(records->list("secrets", admin(), q)).ok());
}

TEST_P(Records_, roles_and_request_body_in_rules) {
  define(R"({"name": "docs2", "fields": [{"name": "title", "type": "text"}, {"name": "team", "type": "text"}],
             "rules": {"list": "@request.auth.roles ~ \"editor\" || @request.auth.roles ~ team", "view": "",
                       "create": "@request.auth.roles = \"editor\" && @request.body.title != \"forbidden\""}})");
  Caller editor = user("e", {"user", "editor"}), red = user("r", {"user", "red"});
  EXPECT_EQ(run(records->create("docs2", red, js::parse(R"({"title": "x"})").as_object())).error().status, 403);
  EXPECT_EQ(run(records->create("docs2", editor, js::parse(R"({"title": "forbidden"})").as_object())).error().status, 403);
  create("docs2", editor, R"({"title": "a", "team": "red"})");
  create("docs2", editor, R"({"title": "b", "team": "blue"})");
  EXPECT_EQ(list_all("docs2", editor).size(), 2u);
  auto reds = list_all("docs2", red);
  ASSERT_EQ(reds.size(), 1u);
  EXPECT_EQ(reds[0].at("team").as_string(), "red");
  EXPECT_TRUE(list_all("docs2", user("n", {})).empty());
}

TEST_P(Records_, expansion_shows_only_related_records_the_caller_may_view) {
  define(R"({"name": "people", "fields": [{"name": "name", "type": "text"}, {"name": "account", "type": "text"}],
             "rules": {"list": "account = @request.auth.id", "view": "account = @request.auth.id", "create": ""}})");
  define(R"({"name": "tasks", "fields": [{"name": "title", "type": "text"},
               {"name": "assignee", "type": "relation", "collection": "people"}],
             "rules": {"list": "", "view": "", "create": ""}})");
  js::object pa = create("people", user("a"), R"({"name": "Ann", "account": "a"})");
  js::object pb = create("people", user("b"), R"({"name": "Bob", "account": "b"})");
  create("tasks", user("a"), fmt::format(R"({{"title": "t1", "assignee": "{}"}})", id_of(pa)));
  create("tasks", user("a"), fmt::format(R"({{"title": "t2", "assignee": "{}"}})", id_of(pb)));
  ListQuery q;
  q.expand = "assignee";
  q.sort = "title";
  auto page = run(records->list("tasks", user("a"), q));
  ASSERT_TRUE(page.ok()) << page.error().detail;
  ASSERT_EQ(page->items.size(), 2u);
  const auto& t1 = page->items[0].as_object();
  const auto& t2 = page->items[1].as_object();
  EXPECT_EQ(t1.at("expand").at("assignee").at("name").as_string(), "Ann");
  EXPECT_FALSE(t2.contains("expand"));  // Bob's person is not visible to a
  auto as_admin = run(records->list("tasks", admin(), q));
  EXPECT_EQ(as_admin->items[1].at("expand").at("assignee").at("name").as_string(), "Bob");
  // A relation to a record that does not exist is refused; expand only follows relations.
  auto bad = run(records->create("tasks", user("a"),
                                 js::object{{"title", "x"}, {"assignee", "0190a000-0000-7000-8000-000000000000"}}));
  EXPECT_EQ(bad.error().status, 422);
  // Deletes do not cascade: a record whose target is gone can still be edited, as long as the
  // edit does not set the dangling relation again.
  js::object t3 = create("tasks", user("a"), fmt::format(R"({{"title": "t3", "assignee": "{}"}})", id_of(pb)));
  ASSERT_TRUE(run(records->remove("people", id_of(pb), admin(), std::nullopt)).ok());
  auto renamed = run(records->update("tasks", id_of(t3), admin(), js::object{{"title", "t3 again"}}, false, std::nullopt));
  ASSERT_TRUE(renamed.ok()) << renamed.error().detail;
  EXPECT_EQ(renamed->at("title").as_string(), "t3 again");
  auto repointed =
      run(records->update("tasks", id_of(t3), admin(), js::object{{"assignee", id_of(pb)}}, false, std::nullopt));
  ASSERT_FALSE(repointed.ok());
  EXPECT_EQ(repointed.error().status, 422);
  q.expand = "title";
  EXPECT_EQ(run(records->list("tasks", user("a"), q)).error().code, "invalid_expand");
  q.expand = "a.b.c.d";
  EXPECT_EQ(run(records->list("tasks", user("a"), q)).error().code, "invalid_expand");
}

TEST_P(Records_, document_collections_validate_against_their_schema_and_filter_json_paths) {
  define(R"({"name": "profiles", "type": "document", "indexes": [["address.city"]],
             "schema": {"type": "object", "required": ["name"],
                        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0},
                                       "address": {"type": "object", "properties": {"city": {"type": "string"}}}}},
             "rules": {"list": "", "view": "", "create": "", "update": ""}})");
  Caller a = user("a");
  auto bad = run(records->create("profiles", a, js::parse(R"({"age": -1})").as_object()));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().errors.size(), 2u);  // name required, age minimum
  create("profiles", a, R"({"name": "Ann", "age": 31, "address": {"city": "Oslo"}, "tags": ["x"]})");
  create("profiles", a, R"({"name": "Bob", "age": 25, "address": {"city": "Bergen"}})");
  auto c = run(records->create("profiles", a, js::parse(R"({"name": "Cy", "age": "old"})").as_object()));
  EXPECT_EQ(c.error().status, 422);  // age must be an integer
  create("profiles", a, R"({"name": "Di", "address": {"city": "oslo"}})");
  auto oslo = list_all("profiles", a, std::string("address.city = \"Oslo\""));
  ASSERT_EQ(oslo.size(), 1u);
  EXPECT_EQ(oslo[0].at("name").as_string(), "Ann");
  EXPECT_EQ(oslo[0].at("address").at("city").as_string(), "Oslo");
  EXPECT_EQ(list_all("profiles", a, std::string("address.city ~ \"OSL\"")).size(), 2u);
  EXPECT_EQ(list_all("profiles", a, std::string("age > 30")).size(), 1u);
  EXPECT_EQ(list_all("profiles", a, std::string("age = null")).size(), 1u);
  EXPECT_EQ(list_all("profiles", a, std::string("age != null && age < 100")).size(), 2u);
  EXPECT_EQ(list_all("profiles", a, std::string("name = 31")).size(), 0u);  // typed: a number never equals a string
  // PATCH is a JSON merge patch; null removes a key.
  auto ann = list_all("profiles", a, std::string("name = \"Ann\""))[0];
  auto patched = run(records->update("profiles", id_of(ann), a, js::parse(R"({"age": null, "address": {"zip": "0150"}})").as_object(),
                                     false, std::nullopt));
  ASSERT_TRUE(patched.ok()) << patched.error().detail;
  EXPECT_FALSE(patched->contains("age"));
  EXPECT_EQ(patched->at("address").at("city").as_string(), "Oslo");
  EXPECT_EQ(patched->at("address").at("zip").as_string(), "0150");
}

TEST_P(Records_, batches_apply_all_or_nothing) {
  define(kNotes);
  Caller a = user("a");
  js::object first = create("notes", a, R"({"title": "keep", "owner": "a"})");
  std::vector<WriteOp> ops(3);
  ops[0].kind = WriteOp::Kind::Create;
  ops[0].body = js::parse(R"({"title": "new", "owner": "a"})").as_object();
  ops[1].kind = WriteOp::Kind::Update;
  ops[1].id = id_of(first);
  ops[1].body = js::parse(R"({"count": 9})").as_object();
  ops[2].kind = WriteOp::Kind::Create;
  ops[2].body = js::parse(R"({"owner": "a"})").as_object();  // no title: invalid
  events.clear();
  auto failed = run(records->batch("notes", a, ops));
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().detail.find("operations[2]"), std::string::npos);
  EXPECT_EQ(list_all("notes", a).size(), 1u);
  EXPECT_TRUE(list_all("notes", a)[0].at("count").is_null());
  EXPECT_TRUE(events.empty());
  ops[2].kind = WriteOp::Kind::Delete;
  ops[2].id = id_of(first);
  ops[2].if_match = 2;  // after op 1
  auto ok = run(records->batch("notes", a, ops));
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  EXPECT_EQ(ok->size(), 3u);
  auto left = list_all("notes", a);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].at("title").as_string(), "new");
  EXPECT_EQ(events.size(), 3u);
}

TEST_P(Records_, export_then_import_restores_records_as_ndjson_and_csv) {
  define(kNotes);
  Caller a = user("a");
  create("notes", a, R"({"title": "one, \"quoted\"", "count": 1.5, "owner": "a", "meta": {"k": [1, "x"]}, "due": "2026-03-01T00:00:00Z"})");
  create("notes", a, R"({"title": "two\nlines", "owner": "a", "meta": "just a string"})");
  auto before = list_all("notes", admin(), std::nullopt, std::string("title"));
  for (const char* format : {"ndjson", "csv"}) {
    auto out = run(records->export_records("notes", admin(), format, std::nullopt));
    ASSERT_TRUE(out.ok()) << out.error().detail;
    for (const auto& r : before) ASSERT_TRUE(run(records->remove("notes", id_of(r), admin(), std::nullopt)).ok());
    auto n = run(records->import_records("notes", admin(), format, *out));
    ASSERT_TRUE(n.ok()) << format << ": " << n.error().detail;
    EXPECT_EQ(*n, 2);
    auto after = list_all("notes", admin(), std::nullopt, std::string("title"));
    ASSERT_EQ(after.size(), before.size()) << format;
    for (std::size_t i = 0; i < after.size(); ++i) EXPECT_EQ(after[i], before[i]) << format << "\n" << *out;
  }
  EXPECT_EQ(run(records->import_records("notes", a, "ndjson", "{}")).error().status, 403);
  auto broken = run(records->import_records("notes", admin(), "ndjson", "{\"title\":\"ok\"}\n{\"count\": 1}\n"));
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.error().detail.find("line 2"), std::string::npos);
  EXPECT_EQ(list_all("notes", admin()).size(), 2u);  // nothing of the failed import stayed
}

TEST_P(Records_, an_export_with_files_imports_with_copies_of_the_files_still_on_this_server) {
  auto albums = [](const std::string& name, const std::string& types) {
    return R"({"name": ")" + name + R"(", "fields": [{"name": "title", "type": "text"},
               {"name": "cover", "type": "file", "types": [)" + types + "]}]}";
  };
  define(albums("albums", R"("image/*")"));
  std::string png = "\x89PNG\r\n\x1a\nfake";
  js::object with_file = create("albums", admin(), R"({"title": "with"})");
  create("albums", admin(), R"({"title": "without"})");
  ASSERT_TRUE(run(records->put_file("albums", id_of(with_file), "cover", admin(), "image/png", "c.png", png, std::nullopt)).ok());
  auto before = list_all("albums", admin());
  for (const char* format : {"ndjson", "csv"}) {
    std::string copy = std::string("copy_") + format;
    define(albums(copy, R"("image/png")"));
    auto out = run(records->export_records("albums", admin(), format, std::nullopt));
    ASSERT_TRUE(out.ok()) << out.error().detail;
    auto n = run(records->import_records(copy, admin(), format, *out));
    ASSERT_TRUE(n.ok()) << format << ": " << n.error().detail;
    EXPECT_EQ(*n, 2);
    auto after = list_all(copy, admin());
    ASSERT_EQ(after.size(), before.size()) << format;
    for (std::size_t i = 0; i < after.size(); ++i) {
      js::object expected = before[i];
      expected["version"] = 1;  // an import starts records at 1
      if (expected.at("cover").is_object())
        expected["cover"].as_object()["url"] = "/v1/collections/" + copy + "/records/" + id_of(expected) + "/files/cover";
      EXPECT_EQ(js::serialize(after[i]), js::serialize(expected)) << format;
    }
    auto file = run(records->get_file(copy, id_of(with_file), "cover", admin()));
    ASSERT_TRUE(file.ok()) << format << ": " << file.error().detail;
    EXPECT_EQ(file->body, png);
    EXPECT_EQ(file->type, "image/png");
  }
  // Each copy has a blob of its own.
  ASSERT_TRUE(run(records->delete_file("albums", id_of(with_file), "cover", admin(), std::nullopt)).ok());
  EXPECT_EQ(run(records->get_file("copy_ndjson", id_of(with_file), "cover", admin()))->body, png);

  // A file that is no longer there is left out; a file value that is not an exported one, or a
  // file the field does not take, is refused.
  auto out = run(records->export_records("copy_ndjson", admin(), "ndjson", std::nullopt));
  ASSERT_TRUE(out.ok());
  define(albums("texts", R"("text/plain")"));
  auto refused = run(records->import_records("texts", admin(), "ndjson", *out));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().status, 422);
  ASSERT_EQ(refused.error().errors.size(), 1u);
  EXPECT_EQ(refused.error().errors[0].field, "line 1.cover");
  EXPECT_TRUE(list_all("texts", admin()).empty());
  for (const auto& r : list_all("copy_ndjson", admin()))
    ASSERT_TRUE(run(records->remove("copy_ndjson", id_of(r), admin(), std::nullopt)).ok());
  auto n = run(records->import_records("copy_ndjson", admin(), "ndjson", *out));
  ASSERT_TRUE(n.ok()) << n.error().detail;
  EXPECT_EQ(*n, 2);
  for (const auto& r : list_all("copy_ndjson", admin())) EXPECT_TRUE(r.at("cover").is_null());
  auto bad = run(records->import_records("copy_ndjson", admin(), "ndjson", R"({"title": "x", "cover": {"name": "x"}})"));
  ASSERT_FALSE(bad.ok());
  ASSERT_EQ(bad.error().errors.size(), 1u);
  EXPECT_EQ(bad.error().errors[0].field, "line 1.cover");
}

TEST_P(Records_, files_go_to_blob_storage_within_limits_and_rules) {
  define(R"({"name": "albums", "fields": [{"name": "title", "type": "text"}, {"name": "owner", "type": "text"},
               {"name": "cover", "type": "file", "max": 1024, "types": ["image/*"]}],
             "rules": {"list": "owner = @request.auth.id", "view": "owner = @request.auth.id", "create": "",
                       "update": "owner = @request.auth.id", "delete": "owner = @request.auth.id"}})");
  Caller a = user("a"), b = user("b");
  js::object al = create("albums", a, R"({"title": "t", "owner": "a"})");
  std::string png = "\x89PNG\r\n\x1a\nfake";
  auto up = run(records->put_file("albums", id_of(al), "cover", a, "image/png", "cover.png", png, std::nullopt));
  ASSERT_TRUE(up.ok()) << up.error().detail;
  EXPECT_EQ(up->at("cover").at("size").as_int64(), static_cast<int64_t>(png.size()));
  EXPECT_EQ(up->at("cover").at("name").as_string(), "cover.png");
  EXPECT_EQ(up->at("version").as_int64(), 2);
  auto down = run(records->get_file("albums", id_of(al), "cover", a));
  ASSERT_TRUE(down.ok());
  EXPECT_EQ(down->body, png);
  EXPECT_EQ(down->type, "image/png");
  EXPECT_EQ(run(records->get_file("albums", id_of(al), "cover", b)).error().status, 404);
  EXPECT_EQ(run(records->put_file("albums", id_of(al), "cover", b, "image/png", "x", png, std::nullopt)).error().status, 404);
  EXPECT_EQ(run(records->put_file("albums", id_of(al), "cover", a, "text/html", "x", "<b>", std::nullopt)).error().status, 415);
  EXPECT_EQ(run(records->put_file("albums", id_of(al), "cover", a, "image/png", "x", std::string(2000, 'x'), std::nullopt))
                .error().status,
            413);
  EXPECT_EQ(run(records->put_file("albums", id_of(al), "title", a, "image/png", "x", png, std::nullopt)).error().status, 404);
  // Replacing the file removes the old blob; deleting the record removes the rest.
  auto second = run(records->put_file("albums", id_of(al), "cover", a, "image/jpeg", "c.jpg", "jpeg!", std::nullopt));
  ASSERT_TRUE(second.ok());
  auto listed = run(blobs->list("data/albums/" + id_of(al) + "/", 100));
  EXPECT_EQ(listed->size(), 1u);
  auto cleared = run(records->delete_file("albums", id_of(al), "cover", a, std::nullopt));
  ASSERT_TRUE(cleared.ok());
  EXPECT_TRUE(cleared->at("cover").is_null());
  EXPECT_TRUE(run(blobs->list("data/albums/" + id_of(al) + "/", 100))->empty());
  auto setting_directly = run(records->update("albums", id_of(al), a, js::parse(R"({"cover": {"name": "x"}})").as_object(), false, std::nullopt));
  EXPECT_EQ(setting_directly.error().status, 422);
}

TEST_P(Records_, unique_fields_refuse_duplicates) {
  define(R"({"name": "users2", "fields": [{"name": "email", "type": "text", "unique": true}], "rules": {"create": ""}})");
  create("users2", anonymous(), R"({"email": "a@x"})");
  auto dup = run(records->create("users2", anonymous(), js::parse(R"({"email": "a@x"})").as_object()));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().status, 409);
}

TEST_P(Records_, concurrent_creates_each_get_their_own_outcome) {
  define(R"({"name": "users3", "fields": [{"name": "email", "type": "text", "unique": true}, {"name": "n", "type": "number"}],
             "rules": {"create": "", "list": ""}})");
  create("users3", anonymous(), R"({"email": "taken@x"})");
  events.clear();
  // Started together on one event loop, so that they are written in groups: two of them take an
  // address that exists, two share one, the rest are fine.
  constexpr int kCreates = 40;
  std::vector<std::optional<Result<js::object>>> results(kCreates);
  auto keep = [&results](std::size_t i, asio::awaitable<Result<js::object>> a) -> asio::awaitable<void> {
    results[i] = co_await std::move(a);
  };
  for (int i = 0; i < kCreates; ++i) {
    std::string email = i == 7 || i == 30 ? "taken@x" : i == 12 || i == 13 ? "twice@x" : fmt::format("u{}@x", i);
    js::object body{{"email", email}, {"n", i}};
    asio::co_spawn(ioc, keep(static_cast<std::size_t>(i), records->create("users3", anonymous(), std::move(body))),
                   asio::detached);
  }
  ioc.restart();
  ioc.run();
  int created = 0, twice = 0;
  for (int i = 0; i < kCreates; ++i) {
    ASSERT_TRUE(results[static_cast<std::size_t>(i)].has_value()) << i;
    const auto& r = *results[static_cast<std::size_t>(i)];
    if (i == 7 || i == 30) {
      ASSERT_FALSE(r.ok()) << i;
      EXPECT_EQ(r.error().status, 409);
      EXPECT_EQ(r.error().code, "unique_violation");
    } else if (i == 12 || i == 13) {
      twice += r.ok() ? 1 : 0;
      if (!r.ok()) {
        EXPECT_EQ(r.error().code, "unique_violation");
      }
    } else {
      ASSERT_TRUE(r.ok()) << i << ": " << r.error().detail;
      EXPECT_EQ(r->at("n").as_int64(), i);
      EXPECT_EQ(r->at("version").as_int64(), 1);
    }
    created += r.ok() ? 1 : 0;
  }
  EXPECT_EQ(twice, 1);
  EXPECT_EQ(created, kCreates - 3);
  EXPECT_EQ(events.size(), static_cast<std::size_t>(kCreates - 3));
  auto all = list_all("users3", anonymous());
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kCreates - 3 + 1));
  std::set<std::string> emails;
  for (const auto& r : all) emails.insert(std::string(r.at("email").as_string()));
  EXPECT_EQ(emails.size(), all.size());
  EXPECT_EQ(emails.count("u39@x"), 1u);
}

TEST_P(Records_, cached_list_pages_follow_every_write_and_are_never_shared_between_callers) {
  define(kNotes);
  auto cache = std::make_shared<ListCache>(ListCache::Options{});
  records->set_list_cache(cache);
  Caller a = user("user-a"), b = user("user-b");
  js::object a1 = create("notes", a, R"({"title": "a1", "owner": "user-a"})");
  create("notes", b, R"({"title": "b1", "owner": "user-b"})");
  auto titles = [&](const Caller& who, std::optional<std::string> fields = {}) {
    ListQuery q;
    q.fields = std::move(fields);
    auto p = run(records->list("notes", who, q, true));
    EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().detail);
    std::vector<std::string> out;
    if (!p.ok()) return out;
    EXPECT_TRUE(p->items.empty());
    js::object body = js::parse(p->json).as_object();
    EXPECT_TRUE(body.at("next_cursor").is_null());
    for (const auto& r : body.at("items").as_array()) {
      const auto& o = r.as_object();
      out.push_back(o.contains("title") ? std::string(o.at("title").as_string()) : "?");
      if (fields) {
        EXPECT_EQ(o.size(), 2u);  // id and title
      }
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(titles(a), V{"a1"});
  EXPECT_EQ(titles(a), V{"a1"});
  EXPECT_EQ(cache->stats().hits, 1u);
  EXPECT_EQ(titles(b), V{"b1"});  // another caller's rule: another page
  EXPECT_EQ(titles(a, "title"), V{"a1"});
  EXPECT_EQ(cache->stats().hits, 1u);

  // Each kind of write is seen by the very next list.
  js::object a2 = create("notes", a, R"({"title": "a2", "owner": "user-a"})");
  EXPECT_EQ(titles(a), (V{"a1", "a2"}));
  auto patched = run(records->update("notes", id_of(a1), a, js::parse(R"({"title": "a1!"})").as_object(), false, std::nullopt));
  ASSERT_TRUE(patched.ok());
  EXPECT_EQ(titles(a), (V{"a1!", "a2"}));
  ASSERT_TRUE(run(records->remove("notes", id_of(a2), a, std::nullopt)).ok());
  EXPECT_EQ(titles(a), V{"a1!"});
  std::vector<WriteOp> ops(1);
  ops[0].body = js::parse(R"({"title": "a3", "owner": "user-a"})").as_object();
  ASSERT_TRUE(run(records->batch("notes", a, ops)).ok());
  EXPECT_EQ(titles(a), (V{"a1!", "a3"}));
  auto imported = run(records->import_records("notes", admin(), "ndjson", R"({"title": "a4", "owner": "user-a"})"));
  ASSERT_TRUE(imported.ok()) << imported.error().detail;
  EXPECT_EQ(titles(a), (V{"a1!", "a3", "a4"}));
  EXPECT_EQ(titles(a, "title"), (V{"a1!", "a3", "a4"}));
  EXPECT_EQ(titles(b), V{"b1"});

  // The page as JSON is the page as records.
  ListQuery q;
  auto plain = run(records->list("notes", a, q));
  auto json = run(records->list("notes", a, q, true));
  ASSERT_TRUE(plain.ok() && json.ok());
  EXPECT_EQ(js::parse(json->json).at("items").as_array(), plain->items);
}

TEST_P(Records_, a_page_as_json_is_the_page_of_records_serialized) {
  define(kNotes);
  Caller a = user("a");
  create("notes", a, R"({"title": "quote \" back \\ \/ \b\t\n\f\r \u0001\u001f\u007f \u00fc \ud83d\ude00", "count": 2.5, "done": true,
                         "due": "2026-02-01T10:00:00Z", "meta": {"k": [1, "x", null], "f": 0.1}, "owner": "a"})");
  create("notes", a, R"({"title": "n", "count": 3, "owner": "a", "meta": "text"})");
  create("notes", a, R"({"title": "m", "count": 1e300, "owner": "a"})");
  ListQuery q;
  for (int limit : {2, 3}) {
    q.limit = limit;
    auto plain = run(records->list("notes", a, q));
    auto json = run(records->list("notes", a, q, true));
    ASSERT_TRUE(plain.ok() && json.ok());
    js::object expected{{"items", plain->items}, {"next_cursor", nullptr}};
    if (plain->next) expected["next_cursor"] = platform::encode_cursor(*plain->next);
    EXPECT_EQ(json->json, js::serialize(expected));
    EXPECT_EQ(json->next, plain->next);
  }
}

TEST_P(Records_, inserts_that_wait_together_go_in_one_statement) {
  define(R"({"name": "pairs", "fields": [{"name": "k", "type": "text"}], "rules": {"list": ""}})");
  GroupInsert inserts(*db);
  constexpr int kRows = 20;
  std::vector<std::optional<Status>> results(kRows);
  std::string dup = new_id();
  for (int i = 0; i < kRows; ++i) {
    std::string id = i == 5 || i == 17 ? dup : new_id();
    store::Params row{id, int64_t{1}, int64_t{1}, int64_t{1}, fmt::format("k{}", i)};
    asio::co_spawn(ioc, inserts.insert(R"(INSERT INTO "c_pairs" ("id", "created_at", "updated_at", "version", "k"))", 5,
                                       std::move(row)),
                   [&results, i](std::exception_ptr e, Status s) {
                     if (!e) results[static_cast<std::size_t>(i)] = std::move(s);
                   });
  }
  ioc.restart();
  ioc.run();
  EXPECT_GT(inserts.largest_group(), 1u);
  int refused = 0;
  for (int i = 0; i < kRows; ++i) {
    ASSERT_TRUE(results[static_cast<std::size_t>(i)].has_value()) << i;
    const Status& s = *results[static_cast<std::size_t>(i)];
    if (i == 5 || i == 17) {  // one of the two that share an id
      refused += s.ok() ? 0 : 1;
      if (!s.ok()) {
        EXPECT_EQ(s.error().code, "conflict");
      }
    } else {
      EXPECT_TRUE(s.ok()) << i << ": " << s.error().detail;
    }
  }
  EXPECT_EQ(refused, 1);
  EXPECT_EQ(list_all("pairs", anonymous()).size(), static_cast<std::size_t>(kRows - 1));
}

INSTANTIATE_TEST_SUITE_P(Backends, Records_, ::testing::ValuesIn(backends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace harmar::data::testing_support
