// The payload converter's cost for strings, the most common payload: the direct JSON string
// writer and reader (json::EncodeString / ParseString, what ToPayload and FromPayload use) against
// the protobuf JSON library's printer and parser (what they used before, and still use for
// other JSON). Prints one table and its method.
//
//   kiln-converter-bench [--iterations 200000]
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "common/json_scalar.h"
#include "sdk/converter.h"

namespace kiln::bench {
namespace {

namespace ci = ::kiln::sdk::converter_internal;

double ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// CPU ns per call of `f`, the best of 5 rounds of `iterations` (the least disturbed by the host).
template <typename F>
double NsPerCall(int iterations, F&& f) {
  double best = 0;
  for (int round = 0; round < 5; ++round) {
    double began = ThreadCpuNs();
    for (int i = 0; i < iterations; ++i) f();
    double each = (ThreadCpuNs() - began) / iterations;
    if (round == 0 || each < best) best = each;
  }
  return best;
}

std::string Sample(size_t size) {
  // Mostly ASCII with a quote, a backslash, a newline and a two-byte character per 64 bytes.
  static const std::string kPiece =
      "build step \"compile\" at C:\\src\nh\xc3\xa9llo, workflow payload text 0123456789 ok";
  std::string s;
  while (s.size() < size) s += kPiece;
  s.resize(size);
  while (!kiln::json::IsValidUtf8(s)) s.pop_back();  // Do not end inside the two-byte character.
  return s;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  using namespace kiln::bench;
  CLI::App app{"kiln-converter-bench: string payload encoding, direct against the JSON library"};
  int iterations = 200000;
  app.add_option("--iterations", iterations, "Calls per round (5 rounds, the best counts)")
      ->check(CLI::Range(1, 100000000));
  CLI11_PARSE(app, argc, argv);

  std::printf("\nkiln converter benchmark\n\n");
  std::printf(
      "Method: one thread, CPU time (CLOCK_THREAD_CPUTIME_ID) per call, the best of 5 rounds\n"
      "of %d calls (larger strings: fewer calls, same bytes). Encode: a UTF-8 string to\n"
      "its JSON text; decode: that text back to the string. Direct = common/json_scalar's\n"
      "json::EncodeString / ParseString; library = a google.protobuf.Value through protobuf's\n"
      "JSON printer and parser, the converter's path for strings before.\n\n",
      iterations);
  std::printf("| string | encode, direct | encode, library | decode, direct | decode, library |\n");
  std::printf("| --- | --- | --- | --- | --- |\n");
  for (size_t size : {8u, 100u, 10000u}) {
    const std::string text = Sample(size);
    const std::string json = kiln::json::EncodeString(text);
    google::protobuf::Value value;
    value.set_string_value(text);
    if (ci::ValueToJson(value).empty() || kiln::json::ParseString(json).value_or("") != text) {
      std::fprintf(stderr, "kiln-converter-bench: the two paths disagree\n");
      return 1;
    }
    int n = static_cast<int>(std::max<size_t>(1, iterations * 8 / std::max<size_t>(size, 8)));
    size_t sink = 0;
    double enc_direct = NsPerCall(n, [&] { sink += kiln::json::EncodeString(text).size(); });
    double enc_library = NsPerCall(n, [&] {
      google::protobuf::Value v;
      v.set_string_value(text);
      sink += ci::ValueToJson(v).size();
    });
    double dec_direct = NsPerCall(n, [&] { sink += kiln::json::ParseString(json)->size(); });
    double dec_library =
        NsPerCall(n, [&] { sink += ci::JsonToValue(json)->string_value().size(); });
    std::printf("| %zu bytes | %.0f ns | %.0f ns | %.0f ns | %.0f ns |\n", text.size(), enc_direct,
                enc_library, dec_direct, dec_library);
    if (sink == 0) std::printf("(nothing measured)\n");
  }
  return 0;
}
