// The Notifier: events → subscriptions → dedupe and rate limit → outbox → delivery with retries.

#include <algorithm>
#include <cmath>
#include <random>

#include "base/log.h"
#include "notify/notify.h"

namespace gantry::notify {
namespace {

using WallTime = std::chrono::system_clock::time_point;

bool Matches(const Subscription& s, const Event& e) {
  const Trigger wanted = e.trigger == Trigger::kHealthRecovered ? Trigger::kHealthDegraded : e.trigger;
  if (std::find(s.triggers.begin(), s.triggers.end(), wanted) == s.triggers.end()) return false;
  const bool any = std::find(s.projects.begin(), s.projects.end(), "*") != s.projects.end();
  if (!any && std::find(s.projects.begin(), s.projects.end(), e.project) == s.projects.end()) return false;
  if (!s.environments.empty() &&
      std::find(s.environments.begin(), s.environments.end(), e.environment) == s.environments.end()) {
    return false;
  }
  return true;
}

std::string AlertKey(const Event& e) {
  if (!e.key.empty()) return e.key;
  const Trigger t = e.trigger == Trigger::kHealthRecovered ? Trigger::kHealthDegraded : e.trigger;
  return fmt::format("{}|{}|{}|{}|{}|{}", Name(t), e.app, e.environment, e.cluster, e.run, e.release);
}

}  // namespace

Notifier::Notifier(NotifierOptions options)
    : options_(std::move(options)), clock_(options_.clock != nullptr ? *options_.clock : SystemClock()) {
  if (options_.metrics != nullptr) {
    counters_ = &options_.metrics->AddCounterFamily(
        "gantry_notifications_total",
        "Notifications by provider and result (delivered, retried, failed, rate_limited, deduped, dropped).",
        {"provider", "result"});
  }
}

Notifier::~Notifier() { Stop(); }

bool Notifier::Submit(Event event) {
  {
    MutexLock lock(mu_);
    if (queue_.size() < options_.queue_size) {
      queue_.push_back(std::move(event));
      cv_.NotifyAll();
      return true;
    }
  }
  log::Warn("notifications: the queue is full ({} events); event {} dropped", options_.queue_size, event.id);
  Count("", "dropped");
  return false;
}

void Notifier::Start() {
  if (thread_) return;
  thread_ = std::make_unique<std::thread>([this] { Loop(); });
}

void Notifier::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
    cv_.NotifyAll();
  }
  if (thread_ && thread_->joinable()) thread_->join();
  thread_.reset();
  // What was submitted but not yet accepted goes into the outbox, to be delivered after a restart.
  MutexLock run(run_mu_);
  std::vector<Event> rest;
  {
    MutexLock lock(mu_);
    rest.swap(queue_);
  }
  for (const Event& e : rest) Accept(e);
}

void Notifier::Loop() {
  while (true) {
    RunOnce();
    MutexLock lock(mu_);
    if (stop_) return;
    if (queue_.empty()) cv_.WaitFor(mu_, options_.poll);
    if (stop_) return;
  }
}

void Notifier::RunOnce() {
  MutexLock run(run_mu_);
  std::vector<Event> events;
  {
    MutexLock lock(mu_);
    events.swap(queue_);
  }
  for (const Event& e : events) Accept(e);
  DeliverDue();
}

void Notifier::Accept(const Event& e) {
  const WallTime now = clock_.WallNow();
  for (const Subscription& s : options_.config.subscriptions) {
    if (!Matches(s, e)) continue;
    const Provider* provider = options_.config.FindProvider(s.provider);
    if (provider == nullptr) continue;  // ParseConfig refuses this
    // Dedupe: the same alert within the window sends nothing; a recovery sends once, for a sent alert.
    const std::string key = s.name + "|" + AlertKey(e);
    if (e.trigger == Trigger::kHealthRecovered) {
      if (sent_.erase(key) == 0) continue;
    } else if (auto it = sent_.find(key); it != sent_.end() && now - it->second < options_.config.dedupe_window) {
      Count(provider->name, "deduped");
      continue;
    }
    // The rate limit: at most rate_count accepted within rate_period.
    auto& recent = recent_[s.name];
    std::erase_if(recent, [&](WallTime t) { return now - t >= s.rate_period; });
    const Rendered r = RenderFor(options_.config, *provider, e, options_.public_url, now);
    store::Notification n{.event_id = e.id,
                          .subscription = s.name,
                          .provider = provider->name,
                          .trigger = std::string(Name(e.trigger)),
                          .project = e.project,
                          .app = e.app,
                          .environment = e.environment,
                          .subject = r.subject,
                          .body = r.body,
                          .next_attempt_at = now,
                          .deadline = now + options_.config.deadline};
    const bool limited = recent.size() >= static_cast<size_t>(s.rate_count);
    if (limited) {
      n.state = store::NotificationState::kFailed;
      n.last_error = fmt::format("rate limited: subscription {} allows {} per {}s", s.name, s.rate_count,
                                 s.rate_period.count());
    }
    auto id = options_.store->EnqueueNotification(n);
    if (!id.ok()) {
      if (id.status().code() != Code::kAlreadyExists) {
        log::Warn("notifications: event {} for subscription {}: {}", e.id, s.name, id.status().ToString());
      }
      continue;
    }
    if (limited) {
      Count(provider->name, "rate_limited");
      continue;
    }
    recent.push_back(now);
    if (e.trigger != Trigger::kHealthRecovered) sent_[key] = now;
  }
}

void Notifier::DeliverDue() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  while (true) {
    {
      MutexLock lock(mu_);
      if (stop_) return;
    }
    if (!options_.lease_holder.empty()) {
      auto held = options_.store->AcquireLease("notifications", options_.lease_holder, options_.lease);
      if (!held.ok()) log::Warn("notifications: the delivery lease: {}", held.status().ToString());
      if (!held.ok() || !*held) return;  // another server delivers
    }
    const WallTime now = clock_.WallNow();
    auto due = options_.store->ListNotifications({.due_by = now, .limit = 20});
    if (!due.ok()) {
      log::Warn("notifications: read the outbox: {}", due.status().ToString());
      return;
    }
    if (due->empty()) return;
    for (const store::Notification& n : *due) {
      const Provider* provider = options_.config.FindProvider(n.provider);
      Attempt a;
      if (provider == nullptr) {
        a = {NotFoundError("provider {} is no longer in the notifications config", n.provider), false};
      } else {
        a = Deliver(*provider, n, options_.send_timeout);
      }
      const WallTime after = clock_.WallNow();
      store::NotificationState state = store::NotificationState::kDelivered;
      WallTime next = after;
      std::string error;
      if (!a.status.ok()) {
        error = std::string(a.status.message());
        // Exponential backoff with jitter: base·2^attempts, ×[0.5, 1.5), capped.
        const double doubling = std::min(30, n.attempts);
        auto delay = std::chrono::duration<double, std::milli>(options_.initial_backoff.count() * std::pow(2.0, doubling));
        delay = std::min(delay, std::chrono::duration<double, std::milli>(options_.max_backoff.count()));
        delay *= std::uniform_real_distribution<double>(0.5, 1.5)(rng);
        next = after + std::chrono::duration_cast<std::chrono::system_clock::duration>(delay);
        if (!a.retryable || next > n.deadline) {
          state = store::NotificationState::kFailed;
          if (a.retryable) error += fmt::format(" (gave up after {} attempts)", n.attempts + 1);
        } else {
          state = store::NotificationState::kPending;
        }
      }
      Status recorded = options_.store->RecordNotificationAttempt(n.id, state, error, next);
      if (!recorded.ok()) {
        log::Warn("notifications: {}", recorded.ToString());
        return;  // the store is unwell: try again at the next poll
      }
      Count(n.provider, state == store::NotificationState::kDelivered ? "delivered"
                        : state == store::NotificationState::kFailed  ? "failed"
                                                                      : "retried");
      if (state == store::NotificationState::kFailed) {
        log::Warn("notification {} ({} to {}) failed: {}", n.id, n.trigger, n.provider, error);
      }
    }
    if (due->size() < 20) return;
  }
}

void Notifier::Count(std::string_view provider, std::string_view result) {
  if (counters_ != nullptr) counters_->With({std::string(provider), std::string(result)}).Inc();
}

}  // namespace gantry::notify
