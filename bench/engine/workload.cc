#include "bench/engine/workload.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "bench/engine/role_process.h"

namespace kiln::bench {
namespace {

using sdk::api::Payloads;

sdk::Task<absl::StatusOr<Payloads>> Steps(sdk::WorkflowContext& ctx, Payloads input, int steps) {
  sdk::ActivityOptions options;
  options.start_to_close_timeout = absl::Seconds(30);
  Payloads value = input;
  for (int i = 0; i < steps; ++i) {
    auto result = co_await ctx.ExecuteActivity("Noop", value, options);
    if (!result.ok()) co_return result.status();
    value = *result;
  }
  co_return value;
}

sdk::Task<absl::StatusOr<Payloads>> One(sdk::WorkflowContext& ctx, Payloads input) {
  return Steps(ctx, std::move(input), 1);
}
sdk::Task<absl::StatusOr<Payloads>> Three(sdk::WorkflowContext& ctx, Payloads input) {
  return Steps(ctx, std::move(input), 3);
}
sdk::Task<absl::StatusOr<Payloads>> Sleeper(sdk::WorkflowContext& ctx, Payloads input) {
  absl::Status slept = co_await ctx.Sleep(absl::Hours(1));
  if (!slept.ok()) co_return slept;
  co_return input;
}

}  // namespace

absl::Status RegisterWorkflows(sdk::WorkflowWorker& worker, const std::vector<std::string>& types) {
  for (const std::string& type : types) {
    if (type == "a") {
      worker.Register(type, One);
    } else if (type == "b") {
      worker.Register(type, Three);
    } else if (type == "scale") {
      worker.Register(type, Sleeper);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("no workflow named ", type));
    }
  }
  return absl::OkStatus();
}

absl::Status RegisterActivities(sdk::ActivityWorker& worker) {
  return worker.Register(
      "Noop", [](sdk::ActivityContext&, const Payloads& input) -> absl::StatusOr<Payloads> {
        return input;
      });
}

int RunRole(const RoleOptions& options) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const char* token = std::getenv(kTokenEnv);
  sdk::Connection connection(options.address, {.token = token != nullptr ? token : ""});
  if (absl::Status healthy = connection.CheckHealth(absl::Seconds(30)); !healthy.ok()) {
    std::cerr << options.role << ": orchestrator at " << options.address << ": " << healthy << "\n";
    return 1;
  }
  std::unique_ptr<sdk::ActivityWorker> activities;
  std::unique_ptr<sdk::WorkflowWorker> workflows;
  if (options.role == kActivityWorkerRole) {
    sdk::ActivityWorkerOptions aopts;
    aopts.pollers = options.pollers;
    aopts.max_concurrent = ActivitySlots(options.pollers);
    activities = std::make_unique<sdk::ActivityWorker>(connection, options.task_queue, aopts);
    absl::Status started = RegisterActivities(*activities);
    if (started.ok()) started = activities->Start();
    if (!started.ok()) {
      std::cerr << options.role << ": " << started << "\n";
      return 1;
    }
  } else if (options.role == kWorkflowWorkerRole) {
    sdk::WorkflowWorkerOptions wopts;
    wopts.pollers = options.pollers;
    wopts.cache_size = static_cast<size_t>(options.cache_size);
    workflows = std::make_unique<sdk::WorkflowWorker>(connection, options.task_queue, wopts);
    if (absl::Status registered = RegisterWorkflows(*workflows, options.workflows);
        !registered.ok()) {
      std::cerr << options.role << ": " << registered << "\n";
      return 1;
    }
    workflows->Start();
  } else {
    std::cerr << "unknown role " << options.role << "\n";
    return 2;
  }

  constexpr char kReady[] = "ready\n";
  if (::write(RoleProcess::kReadyFd, kReady, sizeof(kReady) - 1) != sizeof(kReady) - 1) {
    std::cerr << options.role << ": cannot write to the ready pipe (fd " << RoleProcess::kReadyFd
              << "): was it started by the benchmark?\n";
    return 1;
  }
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  if (workflows) workflows->Stop();
  if (activities) activities->Stop();
  std::cerr << options.role << ": stopped by signal " << signal_number;
  if (workflows) std::cerr << " after " << workflows->tasks_completed() << " workflow tasks";
  if (activities) std::cerr << " after " << activities->tasks_started() << " activities";
  std::cerr << "\n";
  return 0;
}

}  // namespace kiln::bench
