#include "data/ddl.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace harmar::data {

namespace {

std::string column_type(FieldType t, Dialect d) {
  switch (d) {
    case Dialect::Sqlite:
      switch (t) {
        case FieldType::Number: return "REAL";
        case FieldType::Bool:
        case FieldType::Datetime: return "INTEGER";
        default: return "TEXT";
      }
    case Dialect::Postgres:
      switch (t) {
        case FieldType::Text:
        case FieldType::Relation: return "TEXT COLLATE \"C\"";
        case FieldType::Number: return "DOUBLE PRECISION";
        case FieldType::Bool: return "BOOLEAN";
        case FieldType::Datetime: return "BIGINT";
        case FieldType::Json: return "JSONB";
        case FieldType::File: return "TEXT";
      }
      break;
    case Dialect::Mysql:
      switch (t) {
        case FieldType::Relation: return "VARCHAR(36)";
        case FieldType::Number: return "DOUBLE";
        case FieldType::Bool: return "BOOLEAN";
        case FieldType::Datetime: return "BIGINT";
        default: return "LONGTEXT";
      }
  }
  return "TEXT";
}

// A JSON path from a definition (validated: names of [A-Za-z0-9_] joined by '.') as a literal.
std::string path_literal(const std::string& dotted) { return "'$." + dotted + "'"; }

bool is_path_index(const Collection& c, const Index& idx) {
  return c.document && idx.size() == 1 && !is_system_field(idx[0]);
}

// MariaDB indexes a LONGTEXT by a key prefix: 191 characters of utf8mb4 (764 bytes) narrow a
// lookup well; the full value is compared in the row.
constexpr const char* kMysqlKeyPrefix = "(191)";

std::string index_column(const Collection& c, const std::string& name, Dialect d) {
  if (c.document && !is_system_field(name))
    return quote_ident(path_column(name)) + (d == Dialect::Mysql ? kMysqlKeyPrefix : "");
  if (d == Dialect::Mysql && !is_system_field(name)) {
    const Field* f = c.field(name);
    if (f && f->type == FieldType::Text) return quote_ident(name) + kMysqlKeyPrefix;
  }
  return quote_ident(name);
}

std::string create_index(const Collection& c, const Index& idx, Dialect d) {
  std::string cols;
  for (const auto& n : idx) {
    if (!cols.empty()) cols += ", ";
    cols += index_column(c, n, d);
  }
  return fmt::format("CREATE INDEX {} ON {} ({})", quote_ident(index_name(c, idx)), quote_ident(c.table()), cols);
}

std::string create_unique(const Collection& c, const Field& f, Dialect d) {
  Index idx{f.name};
  return fmt::format("CREATE UNIQUE INDEX {} ON {} ({})", quote_ident(index_name(c, idx, true)),
                     quote_ident(c.table()), quote_ident(f.name));
}

std::string drop_index(const Collection& c, const std::string& name, Dialect d) {
  if (d == Dialect::Mysql) return fmt::format("DROP INDEX {} ON {}", quote_ident(name), quote_ident(c.table()));
  return "DROP INDEX " + quote_ident(name);
}

std::string gin_name(const Collection& c) { return "gx_" + c.name; }

bool needs_gin(const Collection& c) {
  return std::any_of(c.indexes.begin(), c.indexes.end(), [&](const Index& i) { return is_path_index(c, i); });
}

std::string path_column_ddl(const Collection& c, const std::string& dotted, Dialect d) {
  std::string col = quote_ident(path_column(dotted));
  // LONGTEXT, not a VARCHAR: a value longer than the column would make the document's insert fail.
  if (d == Dialect::Mysql)
    return col + " LONGTEXT GENERATED ALWAYS AS (JSON_UNQUOTE(JSON_EXTRACT(\"data\", " + path_literal(dotted) +
           "))) VIRTUAL";
  return col + " GENERATED ALWAYS AS (json_extract(\"data\", " + path_literal(dotted) + ")) VIRTUAL";
}

std::string create_table(const Collection& c, Dialect d) {
  std::string id_type = d == Dialect::Postgres ? "TEXT COLLATE \"C\"" : d == Dialect::Mysql ? "VARCHAR(36)" : "TEXT";
  std::string sql = "CREATE TABLE " + quote_ident(c.table()) + " (\"id\" " + id_type +
                    " PRIMARY KEY, \"created_at\" BIGINT NOT NULL, \"updated_at\" BIGINT NOT NULL, \"version\" BIGINT NOT NULL";
  if (c.document) {
    sql += d == Dialect::Postgres ? ", \"data\" JSONB NOT NULL"
           : d == Dialect::Mysql  ? ", \"data\" LONGTEXT NOT NULL"
                                  : ", \"data\" TEXT NOT NULL";
    if (d != Dialect::Postgres)
      for (const auto& idx : c.indexes)
        if (is_path_index(c, idx)) sql += ", " + path_column_ddl(c, idx[0], d);
  } else {
    for (const auto& f : c.fields) sql += ", " + quote_ident(f.name) + " " + column_type(f.type, d);
  }
  sql += ")";
  // NO PAD: "a" and "a " differ, as they do on SQLite and PostgreSQL.
  if (d == Dialect::Mysql) sql += " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin";
  return sql;
}

struct Step {
  std::string up, down;
};

void add_index_steps(const Collection& c, Dialect d, std::vector<Step>& out) {
  for (const auto& f : c.fields)
    if (f.unique) out.push_back({create_unique(c, f, d), drop_index(c, index_name(c, {f.name}, true), d)});
  for (const auto& idx : c.indexes) {
    if (d == Dialect::Postgres && is_path_index(c, idx)) continue;  // the GIN index serves them
    out.push_back({create_index(c, idx, d), drop_index(c, index_name(c, idx), d)});
  }
  if (d == Dialect::Postgres && needs_gin(c))
    out.push_back({fmt::format("CREATE INDEX {} ON {} USING GIN (\"data\" jsonb_path_ops)", quote_ident(gin_name(c)),
                               quote_ident(c.table())),
                   drop_index(c, gin_name(c), d)});
}

std::string describe_index(const Index& idx) {
  std::string s = "[";
  for (std::size_t i = 0; i < idx.size(); ++i) s += (i ? ", " : "") + idx[i];
  return s + "]";
}

}  // namespace

std::vector<std::string> columns(const Collection& c) {
  std::vector<std::string> out(std::begin(kSystemFields), std::end(kSystemFields));
  if (c.document) {
    out.emplace_back("data");
  } else {
    for (const auto& f : c.fields) out.push_back(f.name);
  }
  return out;
}

Status plan_collection(const Collection* before, const Collection* after, Dialect d, Plan& plan) {
  std::vector<Step> steps;
  if (!before && !after) return Status{};
  if (!before) {
    const Collection& c = *after;
    plan.steps.push_back(fmt::format("+ collection {} ({}{})", c.name, c.document ? "document" : "table",
                                     c.document ? "" : fmt::format(", {} fields", c.fields.size())));
    steps.push_back({create_table(c, d), "DROP TABLE " + quote_ident(c.table())});
    add_index_steps(c, d, steps);
  } else if (!after) {
    const Collection& c = *before;
    plan.steps.push_back(fmt::format("- collection {} (its records are deleted)", c.name));
    plan.destructive = true;
    std::vector<Step> recreate;
    recreate.push_back({create_table(c, d), ""});
    add_index_steps(c, d, recreate);
    plan.up.push_back("DROP TABLE " + quote_ident(c.table()));
    // Down recreates the table and its indexes, empty.
    std::vector<std::string> down;
    for (const auto& s : recreate) down.push_back(s.up);
    plan.down.insert(plan.down.begin(), down.begin(), down.end());
    return Status{};
  } else {
    const Collection& b = *before;
    const Collection& a = *after;
    if (b.document != a.document)
      return Error::conflict(fmt::format("collection {} is a {} collection; its type cannot change", b.name,
                                         b.document ? "document" : "table"),
                             "type_change_unsupported");
    std::string t = quote_ident(a.table());
    // Indexes that go away, first: a column cannot be dropped while an index uses it.
    std::set<Index> old_idx(b.indexes.begin(), b.indexes.end()), new_idx(a.indexes.begin(), a.indexes.end());
    for (const auto& f : b.fields) {
      const Field* nf = a.field(f.name);
      if (f.unique && (!nf || !nf->unique || nf->type != f.type)) {
        plan.steps.push_back(fmt::format("~ {}: - unique {}", a.name, f.name));
        steps.push_back({drop_index(b, index_name(b, {f.name}, true), d), create_unique(b, f, d)});
      }
    }
    for (const auto& idx : b.indexes) {
      if (new_idx.count(idx)) continue;
      plan.steps.push_back(fmt::format("~ {}: - index {}", a.name, describe_index(idx)));
      if (d == Dialect::Postgres && is_path_index(b, idx)) continue;
      steps.push_back({drop_index(b, index_name(b, idx), d), create_index(b, idx, d)});
      if (is_path_index(b, idx) && d != Dialect::Postgres) {
        steps.push_back({fmt::format("ALTER TABLE {} DROP COLUMN {}", t, quote_ident(path_column(idx[0]))),
                         fmt::format("ALTER TABLE {} ADD COLUMN {}", t, path_column_ddl(b, idx[0], d))});
      }
    }
    if (d == Dialect::Postgres && needs_gin(b) && !needs_gin(a))
      steps.push_back({drop_index(b, gin_name(b), d),
                       fmt::format("CREATE INDEX {} ON {} USING GIN (\"data\" jsonb_path_ops)", quote_ident(gin_name(b)), t)});
    for (const auto& f : b.fields) {
      const Field* nf = a.field(f.name);
      if (!nf) {
        plan.steps.push_back(fmt::format("~ {}: - field {} (its values are deleted)", a.name, f.name));
        plan.destructive = true;
        steps.push_back({fmt::format("ALTER TABLE {} DROP COLUMN {}", t, quote_ident(f.name)),
                         fmt::format("ALTER TABLE {} ADD COLUMN {} {}", t, quote_ident(f.name), column_type(f.type, d))});
      } else if (nf->type != f.type) {
        return Error::conflict(fmt::format("field {}.{} is {}; changing the type of a field is not supported (add a new "
                                           "field, copy, then drop the old one)",
                                           a.name, f.name, type_name(f.type)),
                               "type_change_unsupported");
      } else if (!(*nf == f)) {
        plan.steps.push_back(fmt::format("~ {}: ~ field {} options", a.name, f.name));
      }
    }
    for (const auto& f : a.fields) {
      if (b.field(f.name)) continue;
      plan.steps.push_back(fmt::format("~ {}: + field {} ({})", a.name, f.name, type_name(f.type)));
      steps.push_back({fmt::format("ALTER TABLE {} ADD COLUMN {} {}", t, quote_ident(f.name), column_type(f.type, d)),
                       fmt::format("ALTER TABLE {} DROP COLUMN {}", t, quote_ident(f.name))});
    }
    for (const auto& f : a.fields) {
      const Field* of = b.field(f.name);
      if (f.unique && (!of || !of->unique)) {
        plan.steps.push_back(fmt::format("~ {}: + unique {}", a.name, f.name));
        steps.push_back({create_unique(a, f, d), drop_index(a, index_name(a, {f.name}, true), d)});
      }
    }
    for (const auto& idx : a.indexes) {
      if (old_idx.count(idx)) continue;
      plan.steps.push_back(fmt::format("~ {}: + index {}", a.name, describe_index(idx)));
      if (is_path_index(a, idx) && d != Dialect::Postgres) {
        steps.push_back({fmt::format("ALTER TABLE {} ADD COLUMN {}", t, path_column_ddl(a, idx[0], d)),
                         fmt::format("ALTER TABLE {} DROP COLUMN {}", t, quote_ident(path_column(idx[0])))});
      }
      if (d == Dialect::Postgres && is_path_index(a, idx)) continue;
      steps.push_back({create_index(a, idx, d), drop_index(a, index_name(a, idx), d)});
    }
    if (d == Dialect::Postgres && !needs_gin(b) && needs_gin(a))
      steps.push_back({fmt::format("CREATE INDEX {} ON {} USING GIN (\"data\" jsonb_path_ops)", quote_ident(gin_name(a)), t),
                       drop_index(a, gin_name(a), d)});
    for (Operation op : kOperations) {
      if (b.rule(op).text != a.rule(op).text) plan.steps.push_back(fmt::format("~ {}: rules.{}", a.name, operation_name(op)));
    }
    if (b.schema != a.schema) plan.steps.push_back(fmt::format("~ {}: schema", a.name));
  }
  for (const auto& s : steps) plan.up.push_back(s.up);
  std::vector<std::string> down;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) down.push_back(it->down);
  // The plan's down runs this collection's undo before what earlier collections need undone.
  plan.down.insert(plan.down.begin(), down.begin(), down.end());
  return Status{};
}

}  // namespace harmar::data
