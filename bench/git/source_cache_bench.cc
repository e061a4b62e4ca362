// The source cache benchmark: cold and warm fetch + checkout of a generated repository through
// kiln::builder::SourceCache, over the local transport and over smart HTTP on 127.0.0.1 (git
// http-backend with Basic auth), next to the same steps run by hand with the git CLI (bare
// clone or fetch, then `checkout -f` into a work tree). Prints one table and its method.
// See docs/benchmarks.md.
//
//   kiln-source-cache-bench [--files 3000] [--runs 5]
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "builder-agent/git/smart_http_server.h"
#include "builder-agent/git/source_cache.h"
#include "common/logging.h"
#include "tests/testutil/process.h"

namespace kiln::bench {
namespace {

namespace fs = std::filesystem;
using builder::GitFetchResult;
using builder::SourceCache;

constexpr char kToken[] = "bench-token";

void Git(const std::vector<std::string>& args) {
  absl::StatusOr<std::string> output = testutil::Git(args);
  if (!output.ok()) {
    std::fprintf(stderr, "%s\n", std::string(output.status().message()).c_str());
    std::exit(1);
  }
}

void MakeOrigin(const std::string& origin, int files) {
  fs::create_directories(origin);
  Git({"-C", origin, "init", "-q", "-b", "main"});
  for (int i = 0; i < files; ++i) {
    std::string dir = absl::StrCat(origin, "/d", i / 100);
    fs::create_directories(dir);
    std::ofstream(absl::StrCat(dir, "/f", i, ".txt"))
        << std::string(2000 + (i * 37) % 5000, static_cast<char>('a' + i % 26)) << i << "\n";
  }
  Git({"-C", origin, "add", "-A"});
  Git({"-C", origin, "commit", "-q", "-m", "initial"});
}

void ChangeOneFile(const std::string& origin, int serial) {
  std::ofstream(absl::StrCat(origin, "/d0/f0.txt"), std::ios::app) << "change " << serial << "\n";
  Git({"-C", origin, "commit", "-q", "-a", "-m", absl::StrCat("change ", serial)});
}

struct Sample {
  double fetch_ms = 0, checkout_ms = 0, cli_ms = 0;
  int64_t objects = 0, files_written = 0;
};

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values.empty() ? 0 : values[values.size() / 2];
}

GitFetchResult MustFetch(SourceCache& cache, const std::string& url, const std::string& rev) {
  auto result = cache.Fetch({url, rev, kToken, {}}, {}, {});
  if (!result.ok()) {
    std::fprintf(stderr, "fetch failed: %s\n", result.status().ToString().c_str());
    std::exit(1);
  }
  return *result;
}

double TimeCli(const std::vector<std::vector<std::string>>& commands) {
  absl::Time start = absl::Now();
  for (const auto& args : commands) Git(args);
  return Ms(absl::Now() - start);
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  kiln::testutil::CleanUpOnInterrupt();  // Ctrl-C leaves no data or process behind
  using namespace kiln::bench;
  CLI::App app{"kiln-source-cache-bench: cold and warm fetch + checkout through the source cache"};
  int files = 3000;
  int runs = 5;
  app.add_option("--files", files, "Files in the generated repository")
      ->check(CLI::Range(1, 200000));
  app.add_option("--runs", runs, "Runs per transport (medians are printed)")
      ->check(CLI::Range(1, 100));
  CLI11_PARSE(app, argc, argv);
  kiln::ConfigureDefaultLogger(kiln::LogFormat::kText, kiln::LogLevel::kWarn);

  kiln::testutil::TempDir work;
  std::string origin = work.path() + "/origin";
  MakeOrigin(origin, files);
  auto server = kiln::builder::testing::SmartHttpServer::Start(work.path(), kToken);
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  struct Transport {
    std::string name, url, cli_url;
  };
  std::string http = (*server)->Url("origin/.git");
  std::vector<Transport> transports = {
      {"local", origin, origin},
      {"http", http, absl::StrCat("http://x-access-token:", kToken, "@", http.substr(7))}};

  std::printf(
      "| transport | step | fetch | checkout | total | git CLI by hand | objects | files written "
      "|\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  int serial = 0;
  for (const Transport& t : transports) {
    std::vector<Sample> cold, warm, same;
    for (int run = 0; run < runs; ++run) {
      std::string volume = absl::StrCat(work.path(), "/volume-", t.name, run);
      auto cache = SourceCache::Create(volume + "/git");
      if (!cache.ok()) return 1;
      GitFetchResult c = MustFetch(**cache, t.url, "main");
      std::string mirror = volume + "/cli.git", tree = volume + "/cli-tree";
      fs::create_directories(tree);
      double cli_cold =
          TimeCli({{"clone", "-q", "--bare", t.cli_url, mirror},
                   {"--git-dir", mirror, "--work-tree", tree, "checkout", "-q", "-f", "main"}});
      cold.push_back({Ms(c.fetch_duration), Ms(c.checkout_duration), cli_cold, c.received_objects,
                      c.files_written});
      ChangeOneFile(origin, ++serial);
      GitFetchResult w = MustFetch(**cache, t.url, "main");
      double cli_warm =
          TimeCli({{"--git-dir", mirror, "fetch", "-q", t.cli_url, "+refs/heads/*:refs/heads/*"},
                   {"--git-dir", mirror, "--work-tree", tree, "checkout", "-q", "-f", "main"}});
      warm.push_back({Ms(w.fetch_duration), Ms(w.checkout_duration), cli_warm, w.received_objects,
                      w.files_written});
      GitFetchResult s = MustFetch(**cache, t.url, w.commit_sha);
      double cli_same = TimeCli(
          {{"--git-dir", mirror, "--work-tree", tree, "checkout", "-q", "-f", w.commit_sha}});
      same.push_back({Ms(s.fetch_duration), Ms(s.checkout_duration), cli_same, s.received_objects,
                      s.files_written});
    }
    auto row = [&](const char* step, const std::vector<Sample>& samples) {
      std::vector<double> fetch, checkout, total, cli;
      for (const Sample& s : samples) {
        fetch.push_back(s.fetch_ms);
        checkout.push_back(s.checkout_ms);
        total.push_back(s.fetch_ms + s.checkout_ms);
        cli.push_back(s.cli_ms);
      }
      std::printf("| %s | %s | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %lld | %lld |\n",
                  t.name.c_str(), step, Median(fetch), Median(checkout), Median(total), Median(cli),
                  static_cast<long long>(samples.back().objects),
                  static_cast<long long>(samples.back().files_written));
    };
    row("cold (new mirror)", cold);
    row("warm (one file changed)", warm);
    row("same sha again", same);
  }
  std::printf(
      "\nMethod: a generated repository of %d files (2-7 KB each, 30 directories of 100), one "
      "commit;\nper run a fresh volume: cold fetch of main, then one file changed and committed "
      "and main\nfetched again, then that commit by full sha. Medians of %d runs. The git CLI "
      "column runs\nthe same steps as processes (clone --bare / fetch, then checkout -f into a "
      "work tree).\n",
      files, runs);
  return 0;
}
