#include "samples/samples.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "sdk/converter.h"

namespace kiln::samples {
namespace {

using sdk::FromPayloadAt;
using sdk::ToPayloads;
using sdk::api::Payloads;

sdk::ActivityOptions Quick() {
  sdk::ActivityOptions options;
  options.start_to_close_timeout = absl::Seconds(10);
  return options;
}

// Calls an activity with one string argument and decodes its string result.
sdk::Task<absl::StatusOr<std::string>> Call(sdk::WorkflowContext& ctx, const char* activity,
                                            std::string argument) {
  auto result = co_await ctx.ExecuteActivity(activity, ToPayloads(argument), Quick());
  if (!result.ok()) co_return result.status();
  co_return FromPayloadAt<std::string>(*result, 0);
}

}  // namespace

sdk::Task<absl::StatusOr<Payloads>> Hello(sdk::WorkflowContext& ctx, Payloads input) {
  auto name = FromPayloadAt<std::string>(input, 0);
  if (!name.ok()) co_return name.status();
  auto greeting = co_await Call(ctx, "Greet", *name);
  if (!greeting.ok()) co_return greeting.status();
  co_return ToPayloads(*greeting);
}

sdk::Task<absl::StatusOr<Payloads>> ThreeSteps(sdk::WorkflowContext& ctx, Payloads input) {
  auto text = FromPayloadAt<std::string>(input, 0);
  if (!text.ok()) co_return text.status();
  std::string value = *text;
  for (const char* step : {"Upper", "Reverse", "Exclaim"}) {
    auto next = co_await Call(ctx, step, value);
    if (!next.ok()) co_return next.status();
    value = *next;
  }
  co_return ToPayloads(value);
}

sdk::Task<absl::StatusOr<Payloads>> TimerParallel(sdk::WorkflowContext& ctx, Payloads input) {
  auto seconds = FromPayloadAt<int64_t>(input, 0);
  if (!seconds.ok()) co_return seconds.status();
  absl::Status slept = co_await ctx.Sleep(absl::Seconds(*seconds));
  if (!slept.ok()) co_return slept;
  std::vector<sdk::Future<absl::StatusOr<Payloads>>> squares;
  for (int64_t i = 1; i <= 3; ++i) {
    squares.push_back(ctx.ExecuteActivity("Square", ToPayloads(i), Quick()));
  }
  int64_t sum = 0;
  for (auto& result : co_await sdk::WhenAll(std::move(squares))) {
    if (!result.ok()) co_return result.status();
    auto value = FromPayloadAt<int64_t>(*result, 0);
    if (!value.ok()) co_return value.status();
    sum += *value;
  }
  ctx.Log(LogLevel::kInfo, "sample.timer_parallel.done", {{"sum", static_cast<long long>(sum)}});
  co_return ToPayloads(std::to_string(sum));
}

void RegisterWorkflows(sdk::WorkflowWorker& worker) {
  worker.Register("Hello", Hello);
  worker.Register("ThreeSteps", ThreeSteps);
  worker.Register("TimerParallel", TimerParallel);
}

absl::Status RegisterActivities(sdk::ActivityWorker& worker) {
  auto string_activity = [](std::function<std::string(std::string)> fn) {
    return [fn](sdk::ActivityContext&, const Payloads& input) -> absl::StatusOr<Payloads> {
      auto arg = FromPayloadAt<std::string>(input, 0);
      if (!arg.ok()) return arg.status();
      return ToPayloads(fn(*arg));
    };
  };
  RETURN_IF_ERROR(worker.Register("Greet", string_activity([](std::string name) {
                                    return absl::StrCat("Hello, ", name, "!");
                                  })));
  RETURN_IF_ERROR(worker.Register("Upper", string_activity([](std::string s) {
                                    for (char& c : s)
                                      c = static_cast<char>(
                                          std::toupper(static_cast<unsigned char>(c)));
                                    return s;
                                  })));
  RETURN_IF_ERROR(worker.Register("Reverse", string_activity([](std::string s) {
                                    std::reverse(s.begin(), s.end());
                                    return s;
                                  })));
  RETURN_IF_ERROR(
      worker.Register("Exclaim", string_activity([](std::string s) { return s + "!"; })));
  return worker.Register(
      "Square", [](sdk::ActivityContext&, const Payloads& input) -> absl::StatusOr<Payloads> {
        auto n = FromPayloadAt<int64_t>(input, 0);
        if (!n.ok()) return n.status();
        return ToPayloads(*n * *n);
      });
}

}  // namespace kiln::samples
