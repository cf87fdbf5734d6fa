// YAML parse throughput on a corpus of realistic manifests: Gantry's ParseYaml (its own scanner,
// and forced onto its libyaml path), yaml-cpp's YAML::LoadAll and libyaml's bare event loop,
// single thread, best of N runs, by CPU time (MB per CPU-second: per core) and by wall time.
// The two Gantry paths must give the same documents and marks.
// run.sh adds the Go parser (sigs.k8s.io/yaml) and rapidyaml and prints the table.
//
//   yaml_parse_bench --generate FILE [MB]   write the corpus (default 50 MB)
//   yaml_parse_bench FILE [RUNS]            print "parser cpu-MB/s wall-MB/s docs=N" lines
//   yaml_parse_bench FILE RUNS gantry       only Gantry's own scanner, no comparison (for
//                                           callgrind: valgrind --tool=callgrind ... corpus 1 gantry)

#include <yaml.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "corpus.h"
#include "value/value.h"

namespace {

// Best wall-clock and best CPU seconds (user + system of this process, page faults included) of
// `runs` calls. On a shared machine the CPU time is the per-core figure: wall time also counts
// the time other processes held the core.
struct Timing {
  double wall = 1e100;
  double cpu = 1e100;
  size_t docs = 0;  // what the parse returned
};

double CpuNow() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

Timing Best(int runs, const std::function<size_t()>& parse) {
  Timing best;
  for (int i = 0; i < runs; ++i) {
    double cpu = CpuNow();
    auto start = std::chrono::steady_clock::now();
    best.docs = parse();
    std::chrono::duration<double> d = std::chrono::steady_clock::now() - start;
    best.wall = std::min(best.wall, d.count());
    best.cpu = std::min(best.cpu, CpuNow() - cpu);
  }
  return best;
}

void Print(const char* name, double mb, const Timing& t) {
  std::printf("%s %.1f %.1f docs=%zu\n", name, mb / t.cpu, mb / t.wall, t.docs);
  std::fflush(stdout);
}

size_t LibyamlEvents(const std::string& text) {
  yaml_parser_t p;
  yaml_parser_initialize(&p);
  yaml_parser_set_input_string(&p, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  size_t docs = 0;
  for (;;) {
    yaml_event_t e;
    if (!yaml_parser_parse(&p, &e)) {
      std::fprintf(stderr, "libyaml: %s\n", p.problem);
      std::exit(1);
    }
    yaml_event_type_t type = e.type;
    yaml_event_delete(&e);
    if (type == YAML_DOCUMENT_END_EVENT) ++docs;
    if (type == YAML_STREAM_END_EVENT) break;
  }
  yaml_parser_delete(&p);
  return docs;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "--generate") {
    size_t mb = argc >= 4 ? std::strtoul(argv[3], nullptr, 10) : 50;
    std::string corpus = gantry::bench::GenerateManifestCorpus(mb * 1000 * 1000);
    std::ofstream(argv[2], std::ios::binary) << corpus;
    return 0;
  }
  if (argc < 2) {
    std::fprintf(stderr, "usage: yaml_parse_bench --generate FILE [MB] | FILE [RUNS]\n");
    return 2;
  }
  int runs = argc >= 3 ? std::atoi(argv[2]) : 3;
  std::ifstream in(argv[1], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  double mb = static_cast<double>(text.size()) / 1e6;

  gantry::value::ParseOptions options;
  options.max_documents = 1 << 20;  // the corpus is one 50 MB stream of ~13k documents
  gantry::value::ParseOptions libyaml = options;
  libyaml.use_libyaml = true;
  // One timed ParseYaml of the whole corpus; exits on an error.
  auto parse = [&](const char* name, const gantry::value::ParseOptions& opts) {
    return [&text, file = argv[1], name, opts] {
      auto r = gantry::value::ParseYaml(text, file, opts);
      if (!r.ok()) {
        std::fprintf(stderr, "%s: %s\n", name, r.status().ToString().c_str());
        std::exit(1);
      }
      return r->size();
    };
  };
  if (argc >= 4 && std::string(argv[3]) == "gantry") {
    Print("gantry", mb, Best(runs, parse("gantry", options)));
    return 0;
  }
  std::string diff = gantry::value::DiffParses(gantry::value::ParseYaml(text, argv[1], options),
                                               gantry::value::ParseYaml(text, argv[1], libyaml));
  if (!diff.empty()) {
    std::fprintf(stderr, "gantry's two YAML paths differ: %s\n", diff.c_str());
    std::exit(1);
  }
  for (const auto& [name, opts] : {std::pair{"gantry", options}, std::pair{"gantry-libyaml", libyaml}}) {
    Print(name, mb, Best(runs, parse(name, opts)));
  }
  Print("libyaml-events", mb, Best(runs, [&] { return LibyamlEvents(text); }));
  Print("yaml-cpp", mb, Best(runs, [&] { return YAML::LoadAll(text).size(); }));
  return 0;
}
