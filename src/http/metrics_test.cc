#include "http/metrics.h"

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gantry::http {
namespace {

TEST(MetricsTest, EmptyRegistryRendersNothing) {
  Registry registry;
  EXPECT_EQ(registry.Render(), "");
}

TEST(MetricsTest, CounterAndGaugeWithoutLabels) {
  Registry registry;
  Counter& c = registry.AddCounter("gantry_syncs_total", "Syncs started.");
  Gauge& g = registry.AddGauge("gantry_queue_depth", "Items waiting.");
  c.Inc();
  c.Add(2);
  c.Add(-5);  // ignored: counters only go up
  g.Set(7);
  g.Dec();
  EXPECT_EQ(registry.Render(),
            "# HELP gantry_syncs_total Syncs started.\n"
            "# TYPE gantry_syncs_total counter\n"
            "gantry_syncs_total 3\n"
            "# HELP gantry_queue_depth Items waiting.\n"
            "# TYPE gantry_queue_depth gauge\n"
            "gantry_queue_depth 6\n");
}

TEST(MetricsTest, LabelsAreSortedAndEscaped) {
  Registry registry;
  auto& family = registry.AddCounterFamily("gantry_webhook_requests_total",
                                           "Webhook deliveries.\nBy provider \\ code.",
                                           {"provider", "code"});
  family.With({"github", "202"}).Inc();
  family.With({"gitea", "401"}).Add(2);
  family.With({"a\"b\\c\nd", "500"}).Inc();
  family.With({"github", "202"}).Inc();
  EXPECT_EQ(registry.Render(),
            "# HELP gantry_webhook_requests_total Webhook deliveries.\\nBy provider \\\\ code.\n"
            "# TYPE gantry_webhook_requests_total counter\n"
            "gantry_webhook_requests_total{provider=\"a\\\"b\\\\c\\nd\",code=\"500\"} 1\n"
            "gantry_webhook_requests_total{provider=\"gitea\",code=\"401\"} 2\n"
            "gantry_webhook_requests_total{provider=\"github\",code=\"202\"} 2\n");
}

TEST(MetricsTest, FamilyWithoutChildrenIsOmitted) {
  Registry registry;
  registry.AddGaugeFamily("gantry_unused", "Nothing yet.", {"app"});
  registry.AddGauge("gantry_used", "Something.").Set(0.25);
  EXPECT_EQ(registry.Render(),
            "# HELP gantry_used Something.\n"
            "# TYPE gantry_used gauge\n"
            "gantry_used 0.25\n");
}

TEST(MetricsTest, HistogramIsCumulativeWithInf) {
  Registry registry;
  Histogram& h = registry.AddHistogram("gantry_request_seconds", "Request latency.", {0.1, 1, 2.5});
  h.Observe(0.05);
  h.Observe(0.1);  // bounds are inclusive
  h.Observe(2);
  h.Observe(30);
  EXPECT_EQ(registry.Render(),
            "# HELP gantry_request_seconds Request latency.\n"
            "# TYPE gantry_request_seconds histogram\n"
            "gantry_request_seconds_bucket{le=\"0.1\"} 2\n"
            "gantry_request_seconds_bucket{le=\"1\"} 2\n"
            "gantry_request_seconds_bucket{le=\"2.5\"} 3\n"
            "gantry_request_seconds_bucket{le=\"+Inf\"} 4\n"
            "gantry_request_seconds_sum 32.15\n"
            "gantry_request_seconds_count 4\n");
}

TEST(MetricsTest, HistogramWithLabels) {
  Registry registry;
  auto& family = registry.AddHistogramFamily("gantry_step_seconds", "Step time.", {"step"}, {1});
  family.With({"render"}).Observe(0.5);
  EXPECT_EQ(registry.Render(),
            "# HELP gantry_step_seconds Step time.\n"
            "# TYPE gantry_step_seconds histogram\n"
            "gantry_step_seconds_bucket{step=\"render\",le=\"1\"} 1\n"
            "gantry_step_seconds_bucket{step=\"render\",le=\"+Inf\"} 1\n"
            "gantry_step_seconds_sum{step=\"render\"} 0.5\n"
            "gantry_step_seconds_count{step=\"render\"} 1\n");
}

TEST(MetricsTest, SpecialValues) {
  Registry registry;
  auto& g = registry.AddGaugeFamily("g", "h", {"v"});
  g.With({"inf"}).Set(std::numeric_limits<double>::infinity());
  g.With({"nan"}).Set(std::nan(""));
  g.With({"neg"}).Set(-std::numeric_limits<double>::infinity());
  g.With({"big"}).Set(1e300);
  g.With({"int"}).Set(-42);
  EXPECT_EQ(registry.Render(),
            "# HELP g h\n"
            "# TYPE g gauge\n"
            "g{v=\"big\"} 1e+300\n"
            "g{v=\"inf\"} +Inf\n"
            "g{v=\"int\"} -42\n"
            "g{v=\"nan\"} NaN\n"
            "g{v=\"neg\"} -Inf\n");
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  Registry registry;
  Counter& c = registry.AddCounter("c_total", "c");
  Histogram& h = registry.AddHistogram("h", "h", DefaultBuckets());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.Inc();
        h.Observe(0.3);
        if (i % 1000 == 0) (void)registry.Render();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Value(), 40000);
  EXPECT_EQ(h.Read().cumulative.back(), 40000u);
  EXPECT_THAT(registry.Render(), testing::HasSubstr("h_bucket{le=\"0.5\"} 40000\n"));
}

TEST(MetricsDeathTest, ProgrammerErrorsAbort) {
  Registry registry;
  registry.AddCounter("dup_total", "x");
  EXPECT_DEATH(registry.AddCounter("dup_total", "x"), "check failed");
  EXPECT_DEATH(registry.AddCounter("bad-name", "x"), "check failed");
  auto& f = registry.AddCounterFamily("f_total", "x", {"a"});
  EXPECT_DEATH(f.With({"1", "2"}), "check failed");
  EXPECT_DEATH(registry.AddHistogram("hh", "x", {2, 1}), "check failed");
}

}  // namespace
}  // namespace gantry::http
