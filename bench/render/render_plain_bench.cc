// In-process plain render of a directory (render::RenderPlain: read every file, parse, check each
// object) with ParseYaml's own scanner against the same call forced onto its libyaml path, best
// of RUNS wall times each, so the parser's share of a render shows end to end. run.sh prints it
// beside the `gantry render` process and the kustomize peers.
//
//   render_plain_bench DIR [RUNS]      prints "render-own SECONDS OBJECTS" and "render-libyaml ..."

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "render/render.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: render_plain_bench DIR [RUNS]\n");
    return 2;
  }
  int runs = argc >= 3 ? std::atoi(argv[2]) : 3;
  for (bool libyaml : {false, true}) {
    gantry::render::Limits limits;
    limits.parse.use_libyaml = libyaml;
    double best = 1e100;
    size_t objects = 0;
    for (int i = 0; i < runs; ++i) {
      auto start = std::chrono::steady_clock::now();
      auto manifests = gantry::render::RenderPlain(argv[1], limits);
      std::chrono::duration<double> d = std::chrono::steady_clock::now() - start;
      if (!manifests.ok()) {
        std::fprintf(stderr, "render: %s\n", manifests.status().ToString().c_str());
        return 1;
      }
      objects = manifests->size();
      best = std::min(best, d.count());
    }
    std::printf("%s %.4f %zu\n", libyaml ? "render-libyaml" : "render-own", best, objects);
  }
  return 0;
}
