// Runs a fuzz target without libFuzzer: every file of the seed corpus, then a fixed, seeded batch
// of mutations of them (byte flips, truncations, splices, repeats). Deterministic, bounded, and
// enough to catch crashes and sanitizer reports on every `make test`; `make fuzz` explores for real.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<std::string> load(const char* dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::ifstream in(e.path(), std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return out;
}

std::string mutate(const std::vector<std::string>& seeds, std::mt19937_64& rng) {
  std::string s = seeds[rng() % seeds.size()];
  int edits = 1 + static_cast<int>(rng() % 8);
  for (int i = 0; i < edits; ++i) {
    switch (rng() % 6) {
      case 0:
        if (!s.empty()) s[rng() % s.size()] = static_cast<char>(rng());
        break;
      case 1:
        if (!s.empty()) s.resize(rng() % s.size());
        break;
      case 2: {
        const std::string& o = seeds[rng() % seeds.size()];
        if (!o.empty()) s.insert(s.empty() ? 0 : rng() % s.size(), o.substr(rng() % o.size()));
        break;
      }
      case 3:
        if (!s.empty()) {
          auto pos = rng() % s.size();
          auto len = 1 + rng() % std::min<std::size_t>(16, s.size() - pos);
          auto piece = s.substr(pos, len);
          for (int k = 0; k < 1 + static_cast<int>(rng() % 64); ++k) s.insert(pos, piece);
        }
        break;
      case 4: s.insert(s.empty() ? 0 : rng() % s.size(), 1, "\r\n\0%{}[]:\"\\/ ?&=#"[rng() % 17]); break;
      case 5:
        if (s.size() > 1) s.erase(rng() % s.size(), 1);
        break;
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [ITERATIONS]\n", argv[0]);
    return 2;
  }
  auto seeds = load(argv[1]);
  if (seeds.empty()) {
    std::fprintf(stderr, "no seeds in %s\n", argv[1]);
    return 1;
  }
  long iterations = argc > 2 ? std::atol(argv[2]) : 20000;
  for (const auto& s : seeds) LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  std::mt19937_64 rng(0x4a524d52);  // fixed: the same inputs every run
  for (long i = 0; i < iterations; ++i) {
    auto s = mutate(seeds, rng);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  std::printf("%zu seeds and %ld mutations ran clean\n", seeds.size(), iterations);
  return 0;
}
