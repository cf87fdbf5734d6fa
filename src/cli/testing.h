#pragma once
// Test-only: runs `gantry ARGS...` through cli::Main with the given Deps, capturing what it prints
// in memory (open_memstream), the way the command tests drive the CLI.

#include <stdio.h>

#include <cstdlib>
#include <ostream>
#include <string>
#include <vector>

#include "cli/cli.h"

namespace gantry::cli {

struct Ran {
  int code = -1;
  std::string out, err;
};

inline std::ostream& operator<<(std::ostream& os, const Ran& r) {
  return os << "exit " << r.code << "\n--- out:\n" << r.out << "--- err:\n" << r.err;
}

// `args` without the program name; deps.out and deps.err are replaced by memory streams.
inline Ran RunForTest(std::vector<std::string> args, Deps deps) {
  args.insert(args.begin(), "gantry");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  char* out_buf = nullptr;
  char* err_buf = nullptr;
  size_t out_len = 0, err_len = 0;
  deps.out = ::open_memstream(&out_buf, &out_len);
  deps.err = ::open_memstream(&err_buf, &err_len);
  Ran r;
  r.code = Main(static_cast<int>(argv.size()), argv.data(), deps);
  std::fclose(deps.out);
  std::fclose(deps.err);
  r.out.assign(out_buf, out_len);
  r.err.assign(err_buf, err_len);
  std::free(out_buf);
  std::free(err_buf);
  return r;
}

}  // namespace gantry::cli
