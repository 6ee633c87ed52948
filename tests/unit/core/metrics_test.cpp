#include <gtest/gtest.h>

#include <thread>

#include "core/metrics.hpp"

namespace harmar::metrics {
namespace {

TEST(Metrics, counters_sum_their_shards_across_threads) {
  Registry r;
  Counter& c = r.counter("test_events_total", "Events.", {{"kind", "a"}});
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) c.inc();
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.value(), 40000u);
  EXPECT_EQ(&r.counter("test_events_total", "Events.", {{"kind", "a"}}), &c);
  auto text = r.render();
  EXPECT_NE(text.find("# TYPE test_events_total counter\ntest_events_total{kind=\"a\"} 40000\n"), std::string::npos)
      << text;
}

TEST(Metrics, histogram_renders_cumulative_buckets) {
  Registry r;
  auto& h = r.histogram("test_latency_seconds", "Latency.", {}, {0.1, 1});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5);
  auto text = r.render();
  EXPECT_NE(text.find("test_latency_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("test_latency_seconds_bucket{le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("test_latency_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("test_latency_seconds_count 3\n"), std::string::npos);
  EXPECT_NE(text.find("test_latency_seconds_sum 5.55\n"), std::string::npos);
}

TEST(Metrics, label_values_are_escaped) {
  Registry r;
  r.gauge("test_g", "G.", {{"path", "a\"b\\c"}}).set(2);
  EXPECT_NE(r.render().find("test_g{path=\"a\\\"b\\\\c\"} 2"), std::string::npos);
}

}  // namespace
}  // namespace harmar::metrics
