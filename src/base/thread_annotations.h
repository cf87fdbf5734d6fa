#pragma once
// Clang's thread-safety annotations (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html), so that
// `clang++ -Wthread-safety` checks at compile time that a member marked GUARDED_BY(mu_) is only
// touched with mu_ held, that a function marked REQUIRES(mu_) is only called with it held, and that
// every lock taken is released. They expand to nothing on other compilers.
//
// libstdc++'s std::mutex carries no annotations; lock a gantry::Mutex (base/mutex.h) instead.
// The names are the ones Clang's documentation and LevelDB use.

#if defined(__clang__)
#define GANTRY_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define GANTRY_THREAD_ANNOTATION(x)
#endif

// On a class: objects of it are capabilities (locks); `x` names the kind in diagnostics ("mutex").
#define CAPABILITY(x) GANTRY_THREAD_ANNOTATION(capability(x))
// On a class: an RAII object that holds a capability from construction to destruction.
#define SCOPED_CAPABILITY GANTRY_THREAD_ANNOTATION(scoped_lockable)

// On a data member: read and written only with `x` held.
#define GUARDED_BY(x) GANTRY_THREAD_ANNOTATION(guarded_by(x))
// On a pointer member: what it points to is read and written only with `x` held.
#define PT_GUARDED_BY(x) GANTRY_THREAD_ANNOTATION(pt_guarded_by(x))
// On a mutex member: taken before / after the listed ones (lock order).
#define ACQUIRED_BEFORE(...) GANTRY_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) GANTRY_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))

// On a function: callers must hold the capabilities (exclusively / at least shared).
#define REQUIRES(...) GANTRY_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) GANTRY_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
// On a function: it takes / releases the capabilities (none listed: `this`).
#define ACQUIRE(...) GANTRY_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) GANTRY_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) GANTRY_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) GANTRY_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
// On a function returning bool: it took the capability when it returned `b`.
#define TRY_ACQUIRE(...) GANTRY_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// On a function: callers must not hold the capabilities (it takes them itself).
#define EXCLUDES(...) GANTRY_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// On a function: aborts unless the capability is held; afterwards the analysis assumes it is.
#define ASSERT_CAPABILITY(x) GANTRY_THREAD_ANNOTATION(assert_capability(x))
// On a function: it returns a reference to the capability `x`.
#define RETURN_CAPABILITY(x) GANTRY_THREAD_ANNOTATION(lock_returned(x))

// On a function: the analysis skips its body. Only for what it cannot follow, with a comment why.
#define NO_THREAD_SAFETY_ANALYSIS GANTRY_THREAD_ANNOTATION(no_thread_safety_analysis)
