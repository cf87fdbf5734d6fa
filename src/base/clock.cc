#include "base/clock.h"

#include <thread>

namespace gantry {

void RealClock::SleepFor(std::chrono::nanoseconds d) { std::this_thread::sleep_for(d); }

Clock& SystemClock() {
  static RealClock clock;
  return clock;
}

}  // namespace gantry
