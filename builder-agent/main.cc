// kiln-builder-agent: runs inside a project's builder machine, serves the project's task queue
// and exits once the queue has stayed empty for the idle grace. Parses flags and wires; the
// loop is agent.h, the activities activities.h.
//
// Exit codes: 0 drained (or stopped by SIGTERM/SIGINT); 1 could not serve (orchestrator
// unreachable, queue held by another agent, volume in use, bad configuration); 2 usage error.
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "builder-agent/activities.h"
#include "builder-agent/agent.h"
#include "builder-agent/args_from.h"
#include "builder-agent/secrets.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/signals.h"
#include "common/tls.h"

extern char** environ;

namespace {

// The one line an operator (or the machine provider's log) reads when the agent gives up.
int Fail(const absl::Status& status) {
  kiln::LogError("agent.failed", {{"status", status}});
  std::fprintf(stderr, "kiln-builder-agent: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // --args-from FILE, first: the rest of the arguments and environment come from FILE (see
  // args_from.h), read before anything else.
  std::vector<std::string> arg_storage(argv, argv + argc);
  std::string args_from;
  if (argc >= 3 && std::string(argv[1]) == "--args-from") {
    args_from = argv[2];
    auto more = kiln::builder::ReadArgsFrom(args_from);
    if (!more.ok()) {
      std::fprintf(stderr, "kiln-builder-agent: %s\n",
                   std::string(more.status().message()).c_str());
      return 2;
    }
    arg_storage.erase(arg_storage.begin() + 1, arg_storage.begin() + 3);
    arg_storage.insert(arg_storage.end(), more->args.begin(), more->args.end());
    for (const auto& [name, value] : more->env) ::setenv(name.c_str(), value.c_str(), 1);
  }
  std::vector<char*> arg_pointers;
  for (std::string& arg : arg_storage) arg_pointers.push_back(arg.data());
  arg_pointers.push_back(nullptr);
  argc = static_cast<int>(arg_storage.size());
  argv = arg_pointers.data();

  CLI::App app{"kiln-builder-agent: fetches, builds and pushes a project's images",
               "kiln-builder-agent"};
  kiln::CommonFlags common;
  kiln::AddCommonFlags(app, &common);
  kiln::builder::AgentOptions options;
  kiln::builder::ActivitiesOptions activities;
  double idle_grace_s = 3;
  double connect_timeout_s = 10;
  double lost_timeout_s = 60;
  std::string secrets_file;
  app.add_option("--orchestrator", options.orchestrator, "Orchestrator gRPC address")
      ->envname("KILN_ORCHESTRATOR")
      ->check(kiln::HostPortValidator())
      ->capture_default_str();
  app.add_option("--project", options.project,
                 "Project id; the agent serves task queue project/<id>")
      ->envname("KILN_PROJECT")
      ->required();
  app.add_option("--volume", options.volume, "The machine's persistent cache volume")
      ->envname("KILN_VOLUME")
      ->required();
  app.add_option("--token", options.token,
                 "Credential presented to the orchestrator (as a bearer token)")
      ->envname("KILN_TOKEN");
  std::string tls_ca, tls_cert, tls_key;
  app.add_option("--tls-ca", tls_ca,
                 "PEM CA of the orchestrator's TLS certificate: speak TLS to it")
      ->envname("KILN_TLS_CA");
  app.add_option("--tls-cert", tls_cert,
                 "PEM client certificate for an orchestrator that requires mutual TLS "
                 "(--tls-client-ca); with --tls-key")
      ->envname("KILN_TLS_CERT");
  app.add_option("--tls-key", tls_key, "PEM private key of --tls-cert")->envname("KILN_TLS_KEY");
  app.add_flag("--tls", options.tls, "Speak TLS to the orchestrator (the system's CA roots)")
      ->envname("KILN_TLS");
  app.add_option("--namespace", options.ns, "Orchestrator namespace (empty: the default)")
      ->envname("KILN_NAMESPACE");
  app.add_option("--identity", options.identity,
                 "Poller identity (default: kiln-builder-agent/<project>@<hostname>:<volume>)")
      ->envname("KILN_IDENTITY");
  app.add_option("--idle-grace", idle_grace_s, "Seconds of empty queue before exiting")
      ->envname("KILN_IDLE_GRACE")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--connect-timeout", connect_timeout_s,
                 "Seconds to wait for the orchestrator before giving up")
      ->envname("KILN_CONNECT_TIMEOUT")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
  app.add_option("--orchestrator-lost-timeout", lost_timeout_s,
                 "Seconds without any answer from the orchestrator, while idle, before giving up")
      ->envname("KILN_ORCHESTRATOR_LOST_TIMEOUT")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  app.add_option("--metrics-listen", options.metrics_address,
                 "host:port serving /metrics while the agent runs (empty: none)")
      ->envname("KILN_METRICS_LISTEN");
  app.add_option("--registry", activities.registry,
                 "Registry images are pushed to, host[:port] (e.g. 127.0.0.1:5000)")
      ->envname("KILN_REGISTRY");
  app.add_flag("--registry-tls-verify,!--no-registry-tls-verify", activities.registry_tls_verify,
               "Verify the registry's TLS certificate")
      ->envname("KILN_REGISTRY_TLS_VERIFY")
      ->capture_default_str();
  app.add_option("--keep-last", activities.keep_last,
                 "Images of the project housekeeping keeps on the volume")
      ->envname("KILN_KEEP_LAST")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  std::string args_from_help;  // Taken before parsing (above); listed for --help.
  app.add_option("--args-from", args_from_help,
                 "FILE of arg=VALUE and env=NAME=VALUE lines up to `end`, read before anything "
                 "else (first argument only; a pipe makes the agent wait for them)");
  app.add_option("--secrets-file", secrets_file,
                 "File of NAME=value lines; adds to KILN_SECRET_<NAME> variables")
      ->envname("KILN_SECRETS_FILE");
  if (int code = kiln::ParseFlags(app, argc, argv); code >= 0) return code;
  kiln::ApplyCommonFlags(common);
  options.idle_grace = absl::Seconds(idle_grace_s);
  options.connect_timeout = absl::Seconds(connect_timeout_s);
  options.orchestrator_lost_timeout = absl::Seconds(lost_timeout_s);
  auto tls = kiln::ReadClientTls(tls_ca, tls_cert, tls_key);
  if (!tls.ok()) return Fail(tls.status());
  if (tls->enabled) {
    options.tls = true;
    options.tls_root_certs = std::move(tls->root_certs);
    options.tls_cert_chain = std::move(tls->cert_chain);
    options.tls_private_key = std::move(tls->private_key);
  }

  // Before any thread starts: SIGTERM/SIGINT are then waited for by one thread only.
  kiln::BlockTerminationSignals();
  auto secrets = kiln::builder::SecretStore::Load(environ, secrets_file, /*unset_env=*/true);
  if (!secrets.ok()) return Fail(secrets.status());
  // The orchestrator's token is redacted from whatever the agent reports, and no activity can
  // ask for it by name.
  secrets->AlsoRedact(options.token);
  unsetenv("KILN_TOKEN");
  activities.secrets = *std::move(secrets);

  std::unique_ptr<kiln::builder::BuilderActivities> served;
  auto agent = kiln::builder::Agent::Create(
      options, [&](kiln::sdk::ActivityWorker& worker, kiln::builder::Agent& agent) {
        auto created = kiln::builder::BuilderActivities::Create(agent, std::move(activities));
        if (!created.ok()) return created.status();
        served = *std::move(created);
        return served->Register(worker);
      });
  if (!agent.ok()) return Fail(agent.status());

  // Deliberately never destroyed: the process ends after Run, and the signal thread below may
  // still be inside Stop (destroying the metrics exposer would also cost ~2 s).
  kiln::builder::Agent* running = agent->release();
  (void)served.release();
  // Ends the agent early on SIGTERM/SIGINT; detached: on a normal exit it is still waiting.
  // The exit waits for a Stop it has begun: returning from main runs the static destructors,
  // and with Stop still inside the worker that was a double free (abort, exit code 134).
  struct Exit {
    absl::Mutex mu;
    bool exiting ABSL_GUARDED_BY(mu) = false;
    bool stopping ABSL_GUARDED_BY(mu) = false;
  };
  auto* ending = new Exit;  // never destroyed, as the agent
  std::thread([running, ending] {
    int signo = kiln::WaitForTerminationSignal();
    kiln::LogInfo("agent.signal", {{"signal", signo}});
    {
      absl::MutexLock lock(&ending->mu);
      if (ending->exiting) return;
      ending->stopping = true;
    }
    running->Stop();
    absl::MutexLock lock(&ending->mu);
    ending->stopping = false;
  }).detach();

  absl::Status status = running->Run();
  {
    absl::MutexLock lock(&ending->mu);
    ending->exiting = true;
    ending->mu.AwaitWithTimeout(absl::Condition(
                                    +[](bool* stopping) { return !*stopping; }, &ending->stopping),
                                absl::Seconds(30));
  }
  if (!status.ok()) return Fail(status);
  return 0;
}
