#pragma once
// Records of a collection: the rules of shared/API.md "Data services" without HTTP.
//
// Access: every operation has a rule (model.hpp). Admins (Caller::admin) bypass rules. A missing
// rule refuses everyone else (401 when anonymous, 403 otherwise). list and view apply their
// rule inside the SQL query; create evaluates its rule on the new record; update and delete
// select the record with their rule, so a record the caller may view but not change is 403 and
// one they may not even view is 404 (its existence is not revealed).
// Writes are optimistic: each bumps `version`; a write with If-Match that finds another version
// is 412 `version_mismatch`; without If-Match a lost race is retried.
#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/principal.hpp"
#include "core/result.hpp"
#include "data/codec.hpp"
#include "data/collections.hpp"
#include "store/blobs.hpp"

namespace harmar::data {

class GroupInsert;
class ListCache;
class RecordCache;
class PlanChecker;

struct Caller {
  std::optional<Principal> who;  // nullopt: anonymous
  bool admin = false;
  // The values rules see; `body` is the request body of a create or update.
  RequestContext context(const js::object* body = nullptr) const;
};

struct ListQuery {
  std::optional<std::string> filter, sort, fields, expand;
  int limit = 50;
  std::optional<std::string> after;  // a decoded cursor
};

struct Page {
  js::array items;
  std::optional<std::string> next;  // the cursor position after the last item
  std::vector<std::string> warnings;  // e.g. an unindexed filter over a large collection
  std::string json;  // list(..., as_json = true): the page as the API's body, instead of items
};

struct WriteOp {
  enum class Kind : uint8_t { Create, Update, Replace, Delete };
  Kind kind = Kind::Create;
  std::string id;
  js::object body;
  std::optional<int64_t> if_match;
};

struct RecordSettings {
  CodecLimits codec;
  std::size_t max_batch = 100;
  int max_expand_depth = 3;
  std::size_t max_expand_paths = 8;
  std::size_t max_sort_keys = 4;
  std::size_t max_import_records = 100'000;
  std::size_t max_export_records = 100'000;
  int64_t max_file_bytes = 20 << 20;
};

// Live changes: (collection, "record.created" | "record.updated" | "record.deleted", record).
using PublishFn = std::function<asio::awaitable<void>(std::string collection, std::string type, js::object record)>;

struct FileDownload {
  std::string type;
  std::string name;
  std::string body;
};

class Records {
 public:
  Records(store::Database& db, Collections& collections, store::BlobStore& blobs, RecordSettings settings);
  ~Records();

  void set_publisher(PublishFn p) { publish_ = std::move(p); }
  void set_cache(std::shared_ptr<RecordCache> c) { cache_ = std::move(c); }
  void set_list_cache(std::shared_ptr<ListCache> c) { list_cache_ = std::move(c); }
  void set_plan_checker(std::shared_ptr<PlanChecker> p) { plan_ = std::move(p); }
  const RecordSettings& settings() const { return settings_; }

  // With as_json the page comes as the API's body ({items, next_cursor}) in Page::json, from the
  // list cache when it holds it.
  asio::awaitable<Result<Page>> list(std::string collection, Caller caller, ListQuery q, bool as_json = false);
  asio::awaitable<Result<js::object>> view(std::string collection, std::string id, Caller caller,
                                           std::optional<std::string> fields, std::optional<std::string> expand);
  asio::awaitable<Result<js::object>> create(std::string collection, Caller caller, js::object body);
  // PATCH (replace = false: only the fields given change) or PUT (replace = true: the record
  // becomes the body; fields not given become null or their default; files are kept).
  asio::awaitable<Result<js::object>> update(std::string collection, std::string id, Caller caller, js::object body,
                                             bool replace, std::optional<int64_t> if_match);
  asio::awaitable<Status> remove(std::string collection, std::string id, Caller caller, std::optional<int64_t> if_match);
  // Up to max_batch writes in one transaction: all happen or none. Each result is the record
  // written (null for a delete).
  asio::awaitable<Result<js::array>> batch(std::string collection, Caller caller, std::vector<WriteOp> ops);

  // Bulk transfer (transfer.cpp). Import is for admins: NDJSON (one record object per line) or
  // CSV (a header row of field names), all in one transaction; ids and times in the input are
  // kept. Export follows the list rule and `filter`.
  asio::awaitable<Result<int64_t>> import_records(std::string collection, Caller caller, std::string format,
                                                  std::string body);
  asio::awaitable<Result<std::string>> export_records(std::string collection, Caller caller, std::string format,
                                                      std::optional<std::string> filter);

  // Files (files.cpp): upload needs the update rule, download the view rule.
  asio::awaitable<Result<js::object>> put_file(std::string collection, std::string id, std::string field, Caller caller,
                                               std::string content_type, std::string name, std::string bytes,
                                               std::optional<int64_t> if_match);
  asio::awaitable<Result<FileDownload>> get_file(std::string collection, std::string id, std::string field,
                                                 Caller caller);
  asio::awaitable<Result<js::object>> delete_file(std::string collection, std::string id, std::string field,
                                                  Caller caller, std::optional<int64_t> if_match);
  // Removes the blobs of a dropped collection (in the background).
  asio::awaitable<void> remove_collection_blobs(std::string collection);

  struct Event {
    std::string collection, type;
    js::object record;
  };

 private:
  friend class Transfer;
  struct Loaded;
  // With `group`, the row is written through it (outside any transaction) instead of through `q`.
  asio::awaitable<Result<js::object>> create_in(store::Querier& q, const Entry& e, const Caller& caller, js::object body,
                                                std::vector<Event>& events, bool keep_system_fields = false,
                                                GroupInsert* group = nullptr);
  asio::awaitable<Result<js::object>> update_in(store::Querier& q, const Entry& e, const std::string& id,
                                                const Caller& caller, js::object body, bool replace,
                                                std::optional<int64_t> if_match, std::vector<Event>& events);
  asio::awaitable<Status> remove_in(store::Querier& q, const Entry& e, const std::string& id, const Caller& caller,
                                    std::optional<int64_t> if_match, std::vector<Event>& events);
  // The record with `id` that `op`'s rule lets the caller act on; nullopt if none.
  asio::awaitable<Result<std::optional<js::object>>> load(store::Querier& q, const Entry& e, const std::string& id,
                                                          const Caller& caller, Operation op, const js::object* body);
  // 403 when the caller may view the record, 404 when they may not.
  asio::awaitable<Error> refuse_write(store::Querier& q, const Entry& e, const std::string& id, const Caller& caller);
  // Every relation in `values` points at a record, or a 422 naming the field; with `only`, just
  // the relations among those columns (a PATCH checks what it writes, not what it leaves alone).
  asio::awaitable<Status> check_relations(store::Querier& q, const Entry& e, const js::object& values,
                                          const std::vector<std::string>* only = nullptr);
  asio::awaitable<Status> expand(store::Querier& q, const Entry& e, std::vector<js::object*> records,
                                 const std::string& spec, const Caller& caller);
  asio::awaitable<void> publish(std::vector<Event> events);
  // Writes a file field's stored value with optimistic concurrency.
  asio::awaitable<Result<js::object>> set_file(const Entry& e, const std::string& id, const std::string& field,
                                               const Caller& caller, std::optional<js::object> stored,
                                               std::optional<int64_t> if_match, std::optional<std::string>* old_key);

  store::Database& db_;
  Collections& collections_;
  store::BlobStore& blobs_;
  RecordSettings settings_;
  PublishFn publish_;
  std::shared_ptr<RecordCache> cache_;
  std::shared_ptr<ListCache> list_cache_;
  std::shared_ptr<PlanChecker> plan_;
  std::unique_ptr<GroupInsert> inserts_;  // creates outside a batch, grouped per event loop
};

// Shared by records.cpp, files.cpp and transfer.cpp.
namespace detail {
// "SELECT "id", ... FROM "c_x"" (with the definition's revision, so cached statements follow
// schema changes).
std::string select_sql(const Entry& e);
Error denied(const Caller& caller, Operation op, std::string_view collection);
// The rule of `op` as SQL for the caller: "" when it lets everyone (or the caller is an admin),
// an Error when it lets no one but admins.
Result<std::string> rule_sql(const Entry& e, Operation op, const Caller& caller, const js::object* body,
                             SqlParams& params);
// "WHERE a AND b" from the non-empty conditions ("" when none).
std::string where(const std::vector<std::string>& conditions);
}  // namespace detail

}  // namespace harmar::data
