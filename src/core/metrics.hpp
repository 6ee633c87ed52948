#pragma once
// A Prometheus metrics registry. Counters and histograms are sharded by thread so the hot path is
// one relaxed add on a cache line no other thread writes; a scrape sums the shards.
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace harmar::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::size_t kShards = 16;
// This thread's shard, assigned on first use.
std::size_t shard();

class Counter {
 public:
  void inc(uint64_t n = 1) { cells_[shard()].v.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const;

 private:
  struct alignas(64) Cell {
    std::atomic<uint64_t> v{0};
  };
  std::array<Cell, kShards> cells_{};
};

class Gauge {
 public:
  void set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void add(int64_t d) { v_.fetch_add(d, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  struct alignas(64) Shard {
    std::unique_ptr<std::atomic<uint64_t>[]> buckets;
    std::atomic<uint64_t> sum_micros{0};
  };
  std::vector<double> bounds_;
  std::array<Shard, kShards> shards_;
};

// Latency buckets in seconds, 100 µs .. 10 s.
const std::vector<double>& latency_buckets();

class Registry {
 public:
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help, const Labels& labels = {},
                       const std::vector<double>& bounds = latency_buckets());
  // A gauge read at scrape time (queue depth, open connections, ...).
  void gauge_fn(const std::string& name, const std::string& help, std::function<double()> fn,
                const Labels& labels = {});
  // A counter read at scrape time from something that already counts (e.g. /proc).
  void counter_fn(const std::string& name, const std::string& help, std::function<double()> fn,
                  const Labels& labels = {});
  // Prometheus text exposition format 0.0.4, families in registration order.
  std::string render() const;

 private:
  enum class Kind { Counter, Gauge, Histogram };
  struct Child {
    Labels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> fn;
  };
  struct Family {
    std::string name, help;
    Kind kind;
    std::vector<std::unique_ptr<Child>> children;
  };
  Child& child(const std::string& name, const std::string& help, Kind kind, const Labels& labels);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;
};

Registry& registry();

// Registers process_* gauges (RSS, CPU, fds, start time) read from /proc at scrape time.
void register_process_metrics(Registry& r);

}  // namespace harmar::metrics
