#include "http/metrics.h"

#include <algorithm>
#include <cmath>
#include <variant>

#include <fmt/format.h>

#include "base/mutex.h"
#include "base/status.h"

namespace gantry::http {
namespace {

bool ValidName(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

void AppendValue(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) {
    fmt::format_to(std::back_inserter(out), "{}", static_cast<int64_t>(v));
  } else {
    fmt::format_to(std::back_inserter(out), "{}", v);
  }
}

// Escapes for HELP text (label_value = false) or label values (true).
void AppendEscaped(std::string& out, std::string_view s, bool label_value) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && label_value) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// `name{a="x",b="y"` plus `extra` (e.g. le="1"), closed with '}' when there is any label.
void AppendSeries(std::string& out, std::string_view name, std::string_view suffix,
                  const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, std::string_view extra = {}) {
  out += name;
  out += suffix;
  if (label_names.empty() && extra.empty()) return;
  out += '{';
  for (size_t i = 0; i < label_names.size(); ++i) {
    if (i > 0) out += ',';
    out += label_names[i];
    out += "=\"";
    AppendEscaped(out, label_values[i], true);
    out += '"';
  }
  if (!extra.empty()) {
    if (!label_names.empty()) out += ',';
    out += extra;
  }
  out += '}';
}

template <typename M>
std::unique_ptr<M> MakeChild(const std::vector<double>& /*bounds*/) {
  return std::make_unique<M>();
}
template <>
std::unique_ptr<Histogram> MakeChild<Histogram>(const std::vector<double>& bounds) {
  return std::make_unique<Histogram>(bounds);
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    GANTRY_CHECK(!std::isnan(bounds_[i]) && !std::isinf(bounds_[i]));
    GANTRY_CHECK(i == 0 || bounds_[i - 1] < bounds_[i]);
  }
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  // The first bucket whose upper bound is >= v (Prometheus buckets are inclusive); NaN goes to +Inf.
  size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                 bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = total;
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> DefaultBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

template <typename M>
M& Family<M>::With(const std::vector<std::string>& label_values) {
  GANTRY_CHECK(label_values.size() == label_names_.size());
  MutexLock lock(mu_);
  auto& child = children_[label_values];
  if (child == nullptr) child = MakeChild<M>(bounds_);
  return *child;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

struct Registry::Entry {
  std::string name;
  std::string help;
  std::string_view type;
  std::variant<std::unique_ptr<Family<Counter>>, std::unique_ptr<Family<Gauge>>,
               std::unique_ptr<Family<Histogram>>>
      family;
};

Registry::Registry() = default;
Registry::~Registry() = default;

template <typename M>
Family<M>& Registry::Add(std::string name, std::string help, std::string_view type,
                         std::vector<std::string> label_names, std::vector<double> bounds) {
  GANTRY_CHECK(ValidName(name, true));
  for (size_t i = 0; i < label_names.size(); ++i) {
    GANTRY_CHECK(ValidName(label_names[i], false) && !label_names[i].starts_with("__"));
    GANTRY_CHECK(!(type == "histogram" && label_names[i] == "le"));
    for (size_t j = 0; j < i; ++j) GANTRY_CHECK(label_names[i] != label_names[j]);
  }
  auto family = std::unique_ptr<Family<M>>(new Family<M>(std::move(label_names), std::move(bounds)));
  Family<M>& ref = *family;
  MutexLock lock(mu_);
  for (const auto& e : entries_) GANTRY_CHECK(e->name != name);
  entries_.push_back(std::make_unique<Entry>(Entry{std::move(name), std::move(help), type,
                                                   std::move(family)}));
  return ref;
}

Family<Counter>& Registry::AddCounterFamily(std::string name, std::string help,
                                            std::vector<std::string> label_names) {
  return Add<Counter>(std::move(name), std::move(help), "counter", std::move(label_names), {});
}

Family<Gauge>& Registry::AddGaugeFamily(std::string name, std::string help,
                                        std::vector<std::string> label_names) {
  return Add<Gauge>(std::move(name), std::move(help), "gauge", std::move(label_names), {});
}

Family<Histogram>& Registry::AddHistogramFamily(std::string name, std::string help,
                                                std::vector<std::string> label_names,
                                                std::vector<double> bounds) {
  Histogram check(bounds);  // validates the bounds now rather than at the first With()
  return Add<Histogram>(std::move(name), std::move(help), "histogram", std::move(label_names),
                        std::move(bounds));
}

Counter& Registry::AddCounter(std::string name, std::string help) {
  return AddCounterFamily(std::move(name), std::move(help), {}).With({});
}
Gauge& Registry::AddGauge(std::string name, std::string help) {
  return AddGaugeFamily(std::move(name), std::move(help), {}).With({});
}
Histogram& Registry::AddHistogram(std::string name, std::string help, std::vector<double> bounds) {
  return AddHistogramFamily(std::move(name), std::move(help), {}, std::move(bounds)).With({});
}

std::string Registry::Render() const {
  std::string out;
  MutexLock lock(mu_);
  for (const auto& e : entries_) {
    std::visit(
        [&](const auto& family) {
          if (family == nullptr) return;
          MutexLock family_lock(family->mu_);
          if (family->children_.empty()) return;
          out += "# HELP ";
          out += e->name;
          out += ' ';
          AppendEscaped(out, e->help, false);
          out += "\n# TYPE ";
          out += e->name;
          out += ' ';
          out += e->type;
          out += '\n';
          for (const auto& [values, child] : family->children_) {
            using M = std::decay_t<decltype(*child)>;
            if constexpr (std::is_same_v<M, Histogram>) {
              Histogram::Snapshot s = child->Read();
              std::string le;
              for (size_t i = 0; i < s.cumulative.size(); ++i) {
                le = "le=\"";
                if (i < child->bounds().size()) {
                  AppendValue(le, child->bounds()[i]);
                } else {
                  le += "+Inf";
                }
                le += '"';
                AppendSeries(out, e->name, "_bucket", family->label_names_, values, le);
                out += ' ';
                AppendValue(out, static_cast<double>(s.cumulative[i]));
                out += '\n';
              }
              AppendSeries(out, e->name, "_sum", family->label_names_, values);
              out += ' ';
              AppendValue(out, s.sum);
              out += '\n';
              AppendSeries(out, e->name, "_count", family->label_names_, values);
              out += ' ';
              AppendValue(out, static_cast<double>(s.cumulative.back()));
              out += '\n';
            } else {
              AppendSeries(out, e->name, "", family->label_names_, values);
              out += ' ';
              AppendValue(out, child->Value());
              out += '\n';
            }
          }
        },
        e->family);
  }
  return out;
}

}  // namespace gantry::http
