#include "core/metrics.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/log.hpp"

namespace harmar::metrics {

std::size_t shard() {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed) % kShards;
  return mine;
}

uint64_t Counter::value() const {
  uint64_t sum = 0;
  for (const auto& c : cells_) sum += c.v.load(std::memory_order_relaxed);
  return sum;
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  for (auto& s : shards_) {
    s.buckets.reset(new std::atomic<uint64_t>[bounds_.size() + 1]);
    for (std::size_t i = 0; i <= bounds_.size(); ++i) s.buckets[i].store(0, std::memory_order_relaxed);
  }
}

void Histogram::observe(double v) {
  auto& s = shards_[shard()];
  std::size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  s.buckets[i].fetch_add(1, std::memory_order_relaxed);
  s.sum_micros.fetch_add(static_cast<uint64_t>(std::llround(std::max(0.0, v) * 1e6)), std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot snap;
  snap.cumulative.assign(bounds_.size() + 1, 0);
  uint64_t sum_micros = 0;
  for (const auto& s : shards_) {
    for (std::size_t i = 0; i <= bounds_.size(); ++i) snap.cumulative[i] += s.buckets[i].load(std::memory_order_relaxed);
    sum_micros += s.sum_micros.load(std::memory_order_relaxed);
  }
  for (std::size_t i = 1; i < snap.cumulative.size(); ++i) snap.cumulative[i] += snap.cumulative[i - 1];
  snap.count = snap.cumulative.back();
  snap.sum = static_cast<double>(sum_micros) / 1e6;
  return snap;
}

const std::vector<double>& latency_buckets() {
  static const std::vector<double> b = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                        0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5, 5, 10};
  return b;
}

Registry::Child& Registry::child(const std::string& name, const std::string& help, Kind kind, const Labels& labels) {
  std::lock_guard lock(mu_);
  Family* fam = nullptr;
  for (auto& f : families_)
    if (f->name == name) fam = f.get();
  if (!fam) {
    families_.push_back(std::make_unique<Family>(Family{name, help, kind, {}}));
    fam = families_.back().get();
  }
  for (auto& c : fam->children)
    if (c->labels == labels) return *c;
  fam->children.push_back(std::make_unique<Child>());
  fam->children.back()->labels = labels;
  return *fam->children.back();
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  Child& c = child(name, help, Kind::Counter, labels);
  std::lock_guard lock(mu_);
  if (!c.counter) c.counter = std::make_unique<Counter>();
  return *c.counter;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  Child& c = child(name, help, Kind::Gauge, labels);
  std::lock_guard lock(mu_);
  if (!c.gauge) c.gauge = std::make_unique<Gauge>();
  return *c.gauge;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, const Labels& labels,
                               const std::vector<double>& bounds) {
  Child& c = child(name, help, Kind::Histogram, labels);
  std::lock_guard lock(mu_);
  if (!c.histogram) c.histogram = std::make_unique<Histogram>(bounds);
  return *c.histogram;
}

void Registry::gauge_fn(const std::string& name, const std::string& help, std::function<double()> fn,
                        const Labels& labels) {
  Child& c = child(name, help, Kind::Gauge, labels);
  std::lock_guard lock(mu_);
  c.fn = std::move(fn);
}

void Registry::counter_fn(const std::string& name, const std::string& help, std::function<double()> fn,
                          const Labels& labels) {
  Child& c = child(name, help, Kind::Counter, labels);
  std::lock_guard lock(mu_);
  c.fn = std::move(fn);
}

namespace {

void append_labels(std::string& out, const Labels& labels, const char* extra_key = nullptr,
                   const std::string& extra_val = {}) {
  if (labels.empty() && !extra_key) return;
  out += '{';
  bool first = true;
  auto one = [&](const std::string& k, const std::string& v) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    for (char ch : v) {
      if (ch == '\\' || ch == '"') out += '\\';
      if (ch == '\n') {
        out += "\\n";
        continue;
      }
      out += ch;
    }
    out += '"';
  };
  for (const auto& [k, v] : labels) one(k, v);
  if (extra_key) one(extra_key, extra_val);
  out += '}';
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace

std::string Registry::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  out.reserve(8192);
  for (const auto& f : families_) {
    out += "# HELP " + f->name + " " + f->help + "\n";
    out += "# TYPE " + f->name + " " +
           (f->kind == Kind::Counter ? "counter" : f->kind == Kind::Gauge ? "gauge" : "histogram") + "\n";
    for (const auto& c : f->children) {
      if (f->kind == Kind::Histogram && c->histogram) {
        auto snap = c->histogram->snapshot();
        const auto& bounds = c->histogram->bounds();
        for (std::size_t i = 0; i <= bounds.size(); ++i) {
          out += f->name + "_bucket";
          append_labels(out, c->labels, "le", i < bounds.size() ? number(bounds[i]) : "+Inf");
          out += " " + std::to_string(snap.cumulative[i]) + "\n";
        }
        out += f->name + "_sum";
        append_labels(out, c->labels);
        out += " " + number(snap.sum) + "\n";
        out += f->name + "_count";
        append_labels(out, c->labels);
        out += " " + std::to_string(snap.count) + "\n";
        continue;
      }
      double v = c->counter ? static_cast<double>(c->counter->value())
                 : c->gauge ? static_cast<double>(c->gauge->value())
                 : c->fn    ? c->fn()
                            : 0.0;
      out += f->name;
      append_labels(out, c->labels);
      out += " " + number(v) + "\n";
    }
  }
  return out;
}

Registry& registry() {
  static Registry r;
  return r;
}

namespace {

// Fields 14 (utime), 15 (stime), 22 (starttime) and 24 (rss) of /proc/self/stat.
std::vector<std::string> proc_stat() {
  std::ifstream in("/proc/self/stat");
  std::string all((std::istreambuf_iterator<char>(in)), {});
  auto close = all.rfind(')');
  std::vector<std::string> fields{"", ""};
  if (close == std::string::npos) return fields;
  std::istringstream rest(all.substr(close + 2));
  std::string f;
  while (rest >> f) fields.push_back(f);
  return fields;
}

double field(const std::vector<std::string>& f, std::size_t i) { return i < f.size() ? std::atof(f[i].c_str()) : 0; }

double boot_time() {
  std::ifstream in("/proc/stat");
  std::string key;
  double v = 0;
  while (in >> key) {
    if (key == "btime") {
      in >> v;
      break;
    }
    in.ignore(1 << 16, '\n');
  }
  return v;
}

}  // namespace

void register_process_metrics(Registry& r) {
  static const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  static const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  r.gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes.",
             [] { return field(proc_stat(), 23) * page; });
  r.gauge_fn("process_virtual_memory_bytes", "Virtual memory size in bytes.", [] { return field(proc_stat(), 22); });
  r.gauge_fn("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds.",
             [] { return boot_time() + field(proc_stat(), 21) / ticks; });
  r.gauge_fn("process_open_fds", "Number of open file descriptors.", [] {
    int n = 0;
    if (DIR* d = opendir("/proc/self/fd")) {
      while (readdir(d)) ++n;
      closedir(d);
    }
    return static_cast<double>(std::max(0, n - 3));  // ".", ".." and the directory's own fd
  });
  r.counter_fn("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", [] {
    auto f = proc_stat();
    return (field(f, 13) + field(f, 14)) / ticks;
  });
}

}  // namespace harmar::metrics
