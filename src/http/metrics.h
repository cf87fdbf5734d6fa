#pragma once
// Metrics: a Prometheus registry of counters, gauges and histograms, rendered in the text
// exposition format 0.0.4 (what /metrics serves and every Prometheus scrapes).
//
//   http::Registry registry;
//   auto& requests = registry.AddCounterFamily("gantry_webhook_requests_total",
//                                              "Webhook deliveries by provider and outcome.",
//                                              {"provider", "code"});
//   requests.With({"github", "202"}).Inc();   // cache the Counter& on hot paths
//
// Updating a metric is lock-free (relaxed atomics). Family::With() takes a mutex to find or create
// the child for a set of label values; the reference it returns stays valid as long as the
// registry. Render() may run concurrently with updates; it sees each value at some moment
// during the call (a histogram's buckets and sum are read one after the other).
//
// Output, per family in registration order: "# HELP name text" (backslash and newline escaped),
// "# TYPE name counter|gauge|histogram", then one line per child in label-value order:
// `name{a="x",b="y"} value` with backslash, double quote and newline escaped in label values.
// Histograms write cumulative name_bucket{...,le="bound"} lines ending with le="+Inf", then
// name_sum and name_count. Values that are whole numbers below 2^53 are written without a
// fraction ("3"), others in shortest round-trip form ("0.25", "1e+300"), plus "+Inf", "-Inf" and
// "NaN". A family without children is omitted.
//
// Invalid metric or label names, a name registered twice and a wrong number of label values are
// programmer errors (abort). Thread-safety: all methods may be called from any thread.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/mutex.h"

namespace gantry::http {

class Counter {
 public:
  void Inc() { Add(1); }
  // `v` must not be negative (a counter only goes up); a negative value is ignored.
  void Add(double v) {
    if (v > 0) value_.fetch_add(v, std::memory_order_relaxed);
  }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  void Inc() { Add(1); }
  void Dec() { Add(-1); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds`: upper bounds of the buckets, strictly increasing, without +Inf (always added).
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf (= count)
    double sum = 0;
  };
  Snapshot Read() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative; last is +Inf
  std::atomic<double> sum_{0};
};

// Prometheus' default buckets: .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 (seconds).
std::vector<double> DefaultBuckets();

// A metric and its children, one per combination of label values.
template <typename M>
class Family {
 public:
  // The child for `label_values` (one per label name, in order), created on first use.
  M& With(const std::vector<std::string>& label_values);

 private:
  friend class Registry;
  Family(std::vector<std::string> label_names, std::vector<double> bounds)
      : label_names_(std::move(label_names)), bounds_(std::move(bounds)) {}

  std::vector<std::string> label_names_;
  std::vector<double> bounds_;  // histograms only
  mutable Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_ GUARDED_BY(mu_);
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Metrics without labels.
  Counter& AddCounter(std::string name, std::string help);
  Gauge& AddGauge(std::string name, std::string help);
  Histogram& AddHistogram(std::string name, std::string help, std::vector<double> bounds);

  // Metrics with labels.
  Family<Counter>& AddCounterFamily(std::string name, std::string help,
                                    std::vector<std::string> label_names);
  Family<Gauge>& AddGaugeFamily(std::string name, std::string help,
                                std::vector<std::string> label_names);
  Family<Histogram>& AddHistogramFamily(std::string name, std::string help,
                                        std::vector<std::string> label_names,
                                        std::vector<double> bounds);

  // The text exposition format 0.0.4 of every metric; see the file comment.
  std::string Render() const;

  // The Content-Type of Render()'s output.
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  struct Entry;
  template <typename M>
  Family<M>& Add(std::string name, std::string help, std::string_view type,
                 std::vector<std::string> label_names, std::vector<double> bounds);

  mutable Mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_ GUARDED_BY(mu_);
};

}  // namespace gantry::http
