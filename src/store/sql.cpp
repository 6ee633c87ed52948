// The backend-independent half of the SQL interface: results, error words, URL dispatch.
#include "store/sql.hpp"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <cassert>

#include "store/detail/sql_common.hpp"

namespace harmar::store {

namespace {

std::optional<int64_t> parse_integer(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc() && end == s.data() + s.size()) return v;
  // "1.0", "1e3" (numeric columns) truncate like a cast would.
  std::string copy(s);
  char* stop = nullptr;
  double d = std::strtod(copy.c_str(), &stop);
  if (stop && stop != copy.c_str() && *stop == '\0') return static_cast<int64_t>(d);
  return std::nullopt;
}

double parse_real(std::string_view text) {
  std::string s(text);  // strtod wants a terminated string
  char* stop = nullptr;
  double d = std::strtod(s.c_str(), &stop);
  return stop == s.c_str() ? 0.0 : d;
}

// The text of a text cell, owned or a view; nullopt for the other kinds.
std::optional<std::string_view> text_of(const Rows::Cell& c) {
  if (auto* v = std::get_if<std::string>(&c)) return *v;
  if (auto* v = std::get_if<std::string_view>(&c)) return *v;
  return std::nullopt;
}

bool parse_bool(std::string_view s) {
  if (s.empty()) return false;
  switch (std::tolower(static_cast<unsigned char>(s.front()))) {
    case 't': case 'y': return true;  // t, true, y, yes
    case 'f': case 'n': return false;
    case 'o': return s.size() > 1 && std::tolower(static_cast<unsigned char>(s[1])) == 'n';  // on / off
    default: return parse_integer(s).value_or(0) != 0;
  }
}

std::string format_real(double d) { return fmt::format("{}", d); }

}  // namespace

Rows::Rows(std::vector<std::string> columns, std::vector<Cell> cells, int64_t affected,
           std::shared_ptr<const void> owner)
    : columns_(std::move(columns)), cells_(std::move(cells)), affected_(affected), owner_(std::move(owner)) {
  assert(columns_.empty() ? cells_.empty() : cells_.size() % columns_.size() == 0);
}

std::optional<std::size_t> Rows::column(std::string_view name) const {
  for (std::size_t i = 0; i < columns_.size(); ++i)
    if (columns_[i] == name) return i;
  return std::nullopt;
}

std::size_t Row::size() const { return rows_->columns().size(); }

bool Row::is_null(std::size_t col) const {
  return std::holds_alternative<std::monostate>(rows_->cell(index_, col));
}

int64_t Row::integer(std::size_t col) const {
  const auto& c = rows_->cell(index_, col);
  if (auto* v = std::get_if<int64_t>(&c)) return *v;
  if (auto* v = std::get_if<double>(&c)) return static_cast<int64_t>(*v);
  if (auto v = text_of(c)) {
    if (*v == "t" || *v == "true") return 1;  // a PostgreSQL bool read as a number
    return parse_integer(*v).value_or(0);
  }
  return 0;
}

double Row::real(std::size_t col) const {
  const auto& c = rows_->cell(index_, col);
  if (auto* v = std::get_if<double>(&c)) return *v;
  if (auto* v = std::get_if<int64_t>(&c)) return static_cast<double>(*v);
  if (auto v = text_of(c)) return parse_real(*v);
  return 0.0;
}

bool Row::boolean(std::size_t col) const {
  const auto& c = rows_->cell(index_, col);
  if (auto* v = std::get_if<int64_t>(&c)) return *v != 0;
  if (auto* v = std::get_if<double>(&c)) return *v != 0.0;
  if (auto v = text_of(c)) return parse_bool(*v);
  return false;
}

std::string Row::text(std::size_t col) const {
  const auto& c = rows_->cell(index_, col);
  if (auto v = text_of(c)) return std::string(*v);
  if (auto* v = std::get_if<int64_t>(&c)) return std::to_string(*v);
  if (auto* v = std::get_if<double>(&c)) return format_real(*v);
  return {};
}

std::string_view Row::text_view(std::size_t col, std::string& scratch) const {
  if (auto v = text_of(rows_->cell(index_, col))) return *v;
  scratch = text(col);
  return scratch;
}

std::string Row::bytes(std::size_t col) const { return text(col); }

std::optional<int64_t> Row::opt_integer(std::size_t col) const {
  if (is_null(col)) return std::nullopt;
  return integer(col);
}

std::optional<std::string> Row::opt_text(std::size_t col) const {
  if (is_null(col)) return std::nullopt;
  return text(col);
}

asio::awaitable<Result<int64_t>> Querier::exec(std::string_view sql, Params params) {
  auto rows = co_await query(sql, std::move(params));
  if (!rows) co_return std::move(rows).error();
  co_return rows->affected();
}

asio::awaitable<Result<Rows>> Database::read(std::string_view sql, Params params) {
  co_return co_await query(sql, std::move(params));
}

Result<std::unique_ptr<Database>> Database::open(const std::string& url, const Options& opts) {
  if (opts.pool_per_worker < 1 || opts.sqlite_readers < 0 || opts.busy_timeout_ms < 0)
    return Error::bad_request("invalid_database_options",
                              "database options: pool_per_worker must be >= 1, sqlite_readers and "
                              "busy_timeout_ms >= 0");
  std::string_view u = url;
  if (u.starts_with("sqlite://")) {
    std::string path(u.substr(9));
    if (path.empty())
      return Error::bad_request("invalid_database_url", "sqlite URL without a path: use sqlite://./data/harmar.db");
    return detail::open_sqlite(path, opts);
  }
  if (u.starts_with("postgres://") || u.starts_with("postgresql://")) return detail::open_postgres(url, opts);
  if (u.starts_with("mysql://") || u.starts_with("mariadb://")) {
#ifdef HARMAR_STORE_HAS_MYSQL
    return detail::open_mysql(url, opts);
#else
    return Error::bad_request("invalid_database_url", "this harmar was built without MariaDB/MySQL (libmariadb-dev)");
#endif
  }
  return Error::bad_request("invalid_database_url",
                            "unsupported database URL '" + detail::redact_url(url) +
                                "': expected sqlite://PATH, postgres://USER@HOST:PORT/DB or mysql://USER@HOST:PORT/DB");
}

namespace detail {

std::string sqlite_placeholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 8);
  const std::size_t n = sql.size();
  std::size_t i = 0;
  auto copy_until = [&](std::size_t end) {
    out.append(sql.substr(i, end - i));
    i = end;
  };
  while (i < n) {
    char c = sql[i];
    char next = i + 1 < n ? sql[i + 1] : '\0';
    if (c == '\'' || c == '"' || c == '`') {  // a doubled quote inside escapes it
      std::size_t j = i + 1;
      while (j < n) {
        if (sql[j] == c) {
          if (j + 1 < n && sql[j + 1] == c) {
            j += 2;
            continue;
          }
          ++j;
          break;
        }
        ++j;
      }
      copy_until(j);
    } else if (c == '[') {  // [identifier]
      std::size_t j = sql.find(']', i + 1);
      copy_until(j == std::string_view::npos ? n : j + 1);
    } else if (c == '-' && next == '-') {
      std::size_t j = sql.find('\n', i);
      copy_until(j == std::string_view::npos ? n : j + 1);
    } else if (c == '/' && next == '*') {
      std::size_t j = sql.find("*/", i + 2);
      copy_until(j == std::string_view::npos ? n : j + 2);
    } else if (c == '$' && std::isdigit(static_cast<unsigned char>(next))) {
      out += '?';
      ++i;
      while (i < n && std::isdigit(static_cast<unsigned char>(sql[i]))) out += sql[i++];
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

bool is_blank_sql(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c)) || c == ';') {
      ++i;
    } else if (s.substr(i, 2) == "--") {
      std::size_t j = s.find('\n', i);
      i = j == std::string_view::npos ? s.size() : j + 1;
    } else if (s.substr(i, 2) == "/*") {
      std::size_t j = s.find("*/", i + 2);
      i = j == std::string_view::npos ? s.size() : j + 2;
    } else {
      return false;
    }
  }
  return true;
}

std::string redact_url(std::string_view url) {
  std::string out(url);
  auto scheme_end = out.find("://");
  if (scheme_end != std::string::npos) {
    std::size_t auth_begin = scheme_end + 3;
    std::size_t auth_end = out.find_first_of("/?#", auth_begin);
    if (auth_end == std::string::npos) auth_end = out.size();
    std::size_t at = out.rfind('@', auth_end);
    if (at != std::string::npos && at >= auth_begin) {
      std::size_t colon = out.find(':', auth_begin);
      if (colon != std::string::npos && colon < at) out.erase(colon, at - colon);
    }
  }
  // password=… in the query string
  for (std::size_t p = out.find("password="); p != std::string::npos; p = out.find("password=", p)) {
    bool at_param_start = p > 0 && (out[p - 1] == '?' || out[p - 1] == '&');
    if (!at_param_start) {
      p += 9;
      continue;
    }
    std::size_t end = out.find('&', p);
    if (end == std::string::npos) {
      out.erase(p - 1);  // also the '?' or '&' before it
      break;
    }
    out.erase(p, end + 1 - p);
  }
  return out;
}

Status check_params(const Params& params) {
  for (const auto& p : params) {
    if (auto* s = std::get_if<std::string>(&p); s && s->find('\0') != std::string::npos)
      return Error::bad_request("invalid_text", "text must not contain NUL characters");
  }
  return {};
}

Error conflict_error() { return Error::conflict("conflicts with an existing record"); }
Error unavailable_error(std::string_view what) { return Error::unavailable(std::string(what)); }
Error internal_error() { return Error::internal("database error"); }
Error aborted_transaction_error() {
  return Error::internal("transaction aborted by an earlier error");
}
Error finished_transaction_error() { return Error::internal("transaction already finished"); }

}  // namespace detail

}  // namespace harmar::store
