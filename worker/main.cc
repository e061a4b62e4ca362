// kiln-worker: the platform's control plane. It runs the platform's workflows (ProjectWorkflow,
// DeploymentWorkflow) and its own activities (wake a machine, deploy, stop a slot) on task
// queue kiln-platform, serves kiln.platform.v1.BuildService over gRPC and GitHub webhooks over
// HTTP, wakes each project's builder machine (the process provider: kiln-builder-agent as a
// detached child process) and deploys images with podman on this host. It also hosts the sample
// workflows on task queue "samples". Parses flags and wires.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/auth/token.h"
#include "common/config.h"
#include "common/connection_listener.h"
#include "common/listener_health.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/open_files.h"
#include "common/rpc_parse_errors.h"
#include "common/rpc_status.h"
#include "common/server_calls.h"
#include "common/signals.h"
#include "common/status.h"
#include "common/tls.h"
#include "samples/samples.h"
#include "sdk/activity_worker.h"
#include "sdk/connection.h"
#include "sdk/workflow_worker.h"
#include "worker/activities/platform_activities.h"
#include "worker/api/build_service.h"
#include "worker/api/platform_api.h"
#include "worker/console/console.h"
#include "worker/deploy/deferred_target.h"
#include "worker/deploy/none_target.h"
#include "worker/deploy/podman_target.h"
#include "worker/http/webhook_server.h"
#include "worker/machines/microvm_provider.h"
#include "worker/machines/process_provider.h"
#include "worker/workflows/deployment_workflow.h"
#include "worker/workflows/platform.h"
#include "worker/workflows/project_workflow.h"

namespace {

namespace fs = std::filesystem;

// An agent's token covers one wake: its longest build and then some.
constexpr absl::Duration kAgentTokenLifetime = absl::Hours(6);
// The worker's own lasts as long as tokens may (a restart mints a new one).
constexpr absl::Duration kWorkerTokenLifetime = absl::Hours(24 * 365);
// The webhook port's default connection cap at most: each connection past its handshake holds
// 32 KiB of the front's buffers (64 MiB in all at the cap).
constexpr int kDefaultMaxHttpConnections = 2048;
// The HTTP server's threads: webhooks and the web console, whose live logs hold one each while
// they stream (at most kConsoleLogStreams, so the rest always answer).
constexpr int kHttpThreads = 8;
constexpr int kConsoleLogStreams = 4;
// The key of an orchestrator started with its default --data-dir in the same directory.
constexpr char kDefaultAuthKeyFile[] = "kiln-data/auth.key";

// The directory this binary is in: kiln-builder-agent ships beside it.
std::string OwnDirectory() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : self.parent_path().string();
}

bool IsLoopback(const std::string& address) {
  return absl::StartsWith(address, "127.") || absl::StartsWith(address, "localhost") ||
         absl::StartsWith(address, "[::1]");
}

int Fail(const char* event, const absl::Status& status) {
  kiln::LogError(event, {{"status", status}});
  std::fprintf(stderr, "kiln-worker: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  kiln::BlockTerminationSignals();
  CLI::App app{"kiln-worker: Kiln's control plane (workflow code and control-plane activities)",
               "kiln-worker"};
  kiln::CommonFlags common;
  kiln::AddCommonFlags(app, &common);
  std::string orchestrator = "127.0.0.1:7233";
  app.add_option("--orchestrator", orchestrator, "Orchestrator gRPC address")
      ->envname("KILN_ORCHESTRATOR")
      ->check(kiln::HostPortValidator())
      ->capture_default_str();
  double connect_timeout_s = 10;
  app.add_option("--connect-timeout", connect_timeout_s, "Seconds to wait for the orchestrator")
      ->envname("KILN_CONNECT_TIMEOUT")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  std::string metrics_listen;
  app.add_option("--metrics", metrics_listen, "Prometheus /metrics address (empty: none)")
      ->envname("KILN_WORKER_METRICS")
      ->capture_default_str();
  std::string identity = "kiln-worker";
  app.add_option("--identity", identity, "Name this worker gives the orchestrator")
      ->envname("KILN_WORKER_IDENTITY")
      ->capture_default_str();
  std::string data_dir = "kiln-worker-data";
  app.add_option("--data-dir", data_dir,
                 "The worker's directory: machines (their volumes), deployments, webhook secrets")
      ->envname("KILN_WORKER_DATA_DIR")
      ->capture_default_str();
  std::string listen = "127.0.0.1:7300";
  app.add_option("--listen", listen, "BuildService gRPC address (empty: not served)")
      ->envname("KILN_WORKER_LISTEN")
      ->capture_default_str();
  std::string http_listen = "127.0.0.1:7380";
  app.add_option("--http", http_listen,
                 "HTTP address for GitHub webhooks (HTTPS with --http-tls-cert; empty: not served)")
      ->envname("KILN_WORKER_HTTP")
      ->capture_default_str();
  std::string registry = "127.0.0.1:5000";
  app.add_option("--registry", registry, "Registry images are pushed to and deployed from")
      ->envname("KILN_REGISTRY")
      ->capture_default_str();
  std::string registry_tls = "auto";
  app.add_option("--registry-tls", registry_tls,
                 "Verify the registry's TLS: on, off, or auto (off for a loopback registry)")
      ->envname("KILN_REGISTRY_TLS")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  std::string agent_binary;
  app.add_option("--agent-binary", agent_binary,
                 "kiln-builder-agent for the process provider (default: beside this binary)")
      ->envname("KILN_AGENT_BINARY");
  double idle_grace_s = 3;
  app.add_option("--agent-idle-grace", idle_grace_s,
                 "Seconds a builder machine stays awake with nothing to do")
      ->envname("KILN_AGENT_IDLE_GRACE")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  int max_machines = 8;
  app.add_option("--max-machines", max_machines, "Builder machines awake at once")
      ->envname("KILN_MAX_MACHINES")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  std::string agent_secrets_file;
  app.add_option("--agent-secrets-file", agent_secrets_file,
                 "File of NAME=value lines: the builder agents' secrets (private build steps, git "
                 "tokens), read at each wake; keep it mode 0600")
      ->envname("KILN_AGENT_SECRETS_FILE");
  std::string microvm_image;
  app.add_option("--microvm-image", microvm_image,
                 "Builder image (make builder-image) for projects on microvm machines; empty: "
                 "only the process provider is offered")
      ->envname("KILN_MICROVM_IMAGE");
  std::string microvm_accel = "auto";
  app.add_option("--microvm-accel", microvm_accel,
                 "QEMU accelerator for microVMs: auto (KVM when usable, else TCG), kvm or tcg")
      ->envname("KILN_MICROVM_ACCEL")
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}))
      ->capture_default_str();
  int microvm_volume_gib = 4;
  app.add_option("--microvm-volume-gib", microvm_volume_gib,
                 "Size of each microVM project's volume image (sparse), GiB")
      ->envname("KILN_MICROVM_VOLUME_GIB")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  std::vector<int> microvm_forwards;
  app.add_option("--microvm-forward", microvm_forwards,
                 "A port of 127.0.0.1 microVMs may reach (a git server, say; the orchestrator's "
                 "and the registry's always are); repeatable")
      ->envname("KILN_MICROVM_FORWARDS")
      ->check(CLI::Range(1, 65535));
  bool microvm_snapshots = true;
  app.add_flag("--microvm-snapshots,!--no-microvm-snapshots", microvm_snapshots,
               "Wake microVMs from a saved idle machine (cold boot when none is usable)")
      ->envname("KILN_MICROVM_SNAPSHOTS")
      ->capture_default_str();
  int stop_timeout_s = 10;
  app.add_option("--deploy-stop-timeout", stop_timeout_s,
                 "Seconds a replaced container gets to stop (SIGTERM) before it is killed")
      ->envname("KILN_DEPLOY_STOP_TIMEOUT")
      ->check(CLI::Range(0, 600))
      ->capture_default_str();
  std::string auth_key_file;
  app.add_option("--auth-key-file", auth_key_file,
                 "The key the orchestrator verifies tokens with (its <data-dir>/auth.key; default "
                 "kiln-data/auth.key when it exists): the worker mints each woken agent a token "
                 "for its project alone, and one for itself")
      ->envname("KILN_AUTH_KEY_FILE");
  std::string token;
  app.add_option("--token", token,
                 "Without a key file: the token this worker presents (it then cannot mint agent "
                 "tokens, so builds cannot run)")
      ->envname("KILN_TOKEN");
  // TLS: to the orchestrator (client side), and on the BuildService listener.
  std::string orchestrator_tls_ca, orchestrator_tls_cert, orchestrator_tls_key;
  app.add_option("--orchestrator-tls-ca", orchestrator_tls_ca,
                 "PEM CA of the orchestrator's TLS certificate: speak TLS to it (builder agents "
                 "are given it too)")
      ->envname("KILN_ORCHESTRATOR_TLS_CA");
  app.add_option("--orchestrator-tls-cert", orchestrator_tls_cert,
                 "PEM client certificate for an orchestrator that requires mutual TLS")
      ->envname("KILN_ORCHESTRATOR_TLS_CERT");
  app.add_option("--orchestrator-tls-key", orchestrator_tls_key,
                 "PEM key of --orchestrator-tls-cert")
      ->envname("KILN_ORCHESTRATOR_TLS_KEY");
  std::string agent_tls_cert, agent_tls_key;
  app.add_option("--agent-tls-cert", agent_tls_cert,
                 "PEM client certificate the builder agents this worker wakes present to an "
                 "orchestrator that requires mutual TLS (default: --orchestrator-tls-cert)")
      ->envname("KILN_AGENT_TLS_CERT");
  app.add_option("--agent-tls-key", agent_tls_key,
                 "PEM key of --agent-tls-cert (default: --orchestrator-tls-key)")
      ->envname("KILN_AGENT_TLS_KEY");
  std::string tls_cert, tls_key, tls_client_ca;
  app.add_option("--tls-cert", tls_cert,
                 "PEM certificate chain: serve BuildService (--listen) over TLS (with --tls-key)")
      ->envname("KILN_WORKER_TLS_CERT");
  app.add_option("--tls-key", tls_key, "PEM private key of --tls-cert")
      ->envname("KILN_WORKER_TLS_KEY");
  app.add_option("--tls-client-ca", tls_client_ca,
                 "PEM CA: BuildService clients must present a certificate it signed (mutual TLS)")
      ->envname("KILN_WORKER_TLS_CLIENT_CA");
  // The webhook listener's own: GitHub presents no client certificate, so a client CA on
  // BuildService must not apply to it (the same certificate and key may be given to both).
  std::string http_tls_cert, http_tls_key, http_tls_client_ca;
  app.add_option("--http-tls-cert", http_tls_cert,
                 "PEM certificate chain: serve the webhook listener (--http) over HTTPS (with "
                 "--http-tls-key; may be the same files as --tls-cert)")
      ->envname("KILN_WORKER_HTTP_TLS_CERT");
  app.add_option("--http-tls-key", http_tls_key, "PEM private key of --http-tls-cert")
      ->envname("KILN_WORKER_HTTP_TLS_KEY");
  app.add_option("--http-tls-client-ca", http_tls_client_ca,
                 "PEM CA: HTTPS clients must present a certificate it signed (mutual TLS; not "
                 "for GitHub, which presents none: for a proxy or an internal caller)")
      ->envname("KILN_WORKER_HTTP_TLS_CLIENT_CA");
  double http_handshake_timeout_s = 10;
  app.add_option("--http-handshake-timeout", http_handshake_timeout_s,
                 "Seconds a webhook connection gets for its TLS handshake and its request's "
                 "headers; then it is closed")
      ->envname("KILN_WORKER_HTTP_HANDSHAKE_TIMEOUT")
      ->check(CLI::Range(0.05, 600.0))
      ->capture_default_str();
  int max_connections = 0;
  app.add_option("--max-connections", max_connections,
                 "Open connections at most on each listener (--listen, --http); one more is "
                 "accepted and closed at once (0: from the open-file limit, less a reserve of "
                 "min(512, limit/2), a quarter each; --http at most 2048)")
      ->envname("KILN_WORKER_MAX_CONNECTIONS")
      ->check(CLI::Range(0, 10'000'000))
      ->capture_default_str();
  double listener_probe_s = 5;
  app.add_option("--listener-probe-interval", listener_probe_s,
                 "Seconds between each listener's self-checks (a connection to its own address); "
                 "gRPC health turns NOT_SERVING while one cannot accept")
      ->envname("KILN_WORKER_LISTENER_PROBE_INTERVAL")
      ->check(CLI::Range(0.05, 3600.0))
      ->capture_default_str();
  if (int code = kiln::ParseFlags(app, argc, argv); code >= 0) return code;
  kiln::ApplyCommonFlags(common);
  // Each connection (webhooks, BuildService, the orchestrator's) takes a descriptor.
  kiln::RaiseOpenFileLimitAndLog("worker");
  const bool tls_verify = registry_tls == "on" || (registry_tls == "auto" && !IsLoopback(registry));
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  data_dir = fs::absolute(data_dir, ec).string();
  if (agent_binary.empty()) agent_binary = OwnDirectory() + "/kiln-builder-agent";

  auto registry_metrics = std::make_shared<prometheus::Registry>();
  auto metrics = kiln::MetricsServer::Start(metrics_listen, registry_metrics);
  if (!metrics.ok()) return Fail("worker.start_failed", metrics.status());
  // Tokens: the worker's own (scope worker) and, per wake, an agent's (its project only).
  std::optional<kiln::auth::TokenKey> key;
  kiln::sdk::ConnectionOptions connection_options;
  // The two-command start: the orchestrator's default data directory, beside this one.
  if (auth_key_file.empty() && token.empty() && fs::exists(kDefaultAuthKeyFile, ec)) {
    auth_key_file = kDefaultAuthKeyFile;
  }
  if (!auth_key_file.empty()) {
    auto loaded = kiln::auth::TokenKey::Load(auth_key_file);
    if (!loaded.ok()) return Fail("worker.start_failed", loaded.status());
    key = *std::move(loaded);
    kiln::auth::Claims claims;
    claims.scope = kiln::auth::Scope::kWorker;
    // The queues this process polls and starts workflows on, nothing else.
    claims.queues = {kiln::worker::kPlatformTaskQueue, kiln::samples::kTaskQueue};
    claims.subject = identity;
    claims.issued = absl::Now();
    claims.expiry = claims.issued + kWorkerTokenLifetime;
    auto own = key->Mint(claims);
    if (!own.ok()) return Fail("worker.start_failed", own.status());
    connection_options.token = *own;
  } else if (!token.empty()) {
    connection_options.token = token;
    kiln::LogWarn("worker.no_auth_key",
                  {{"note", "no --auth-key-file: builder agents cannot be given tokens"}});
  } else {
    return Fail("worker.start_failed",
                absl::FailedPreconditionError(
                    "no credential: give --auth-key-file (the orchestrator's <data-dir>/auth.key) "
                    "or --token"));
  }
  auto orchestrator_tls = kiln::ReadClientTls(orchestrator_tls_ca, orchestrator_tls_cert,
                                              orchestrator_tls_key, "--orchestrator-tls");
  if (!orchestrator_tls.ok()) return Fail("worker.start_failed", orchestrator_tls.status());
  connection_options.tls = orchestrator_tls->enabled;
  connection_options.tls_root_certs = orchestrator_tls->root_certs;
  connection_options.tls_cert_chain = orchestrator_tls->cert_chain;
  connection_options.tls_private_key = orchestrator_tls->private_key;
  // Woken agents reach the orchestrator the same way: the same CA and, for mutual TLS, a client
  // certificate (their own with --agent-tls-*, else this worker's). The files are checked here
  // so that a bad one fails the worker's start, not every wake.
  if (agent_tls_cert.empty() && agent_tls_key.empty()) {
    agent_tls_cert = orchestrator_tls_cert;
    agent_tls_key = orchestrator_tls_key;
  }
  auto agent_tls =
      kiln::ReadClientTls(orchestrator_tls_ca, agent_tls_cert, agent_tls_key, "--agent-tls");
  if (!agent_tls.ok()) return Fail("worker.start_failed", agent_tls.status());
  std::vector<std::string> agent_args;
  if (!orchestrator_tls_ca.empty()) {
    agent_args = {"--tls-ca", fs::absolute(orchestrator_tls_ca, ec).string()};
  } else if (orchestrator_tls->enabled || agent_tls->enabled) {
    agent_args = {"--tls"};  // the system's roots
  }
  if (!agent_tls_cert.empty()) {
    agent_args.insert(agent_args.end(), {"--tls-cert", fs::absolute(agent_tls_cert, ec).string(),
                                         "--tls-key", fs::absolute(agent_tls_key, ec).string()});
  }
  if (!agent_secrets_file.empty()) {
    // Checked now, so a bad file stops the worker rather than every wake; agents read it again
    // at each wake (a changed file takes effect at the next one).
    auto secrets = kiln::worker::ReadAgentSecrets(agent_secrets_file);
    if (!secrets.ok()) {
      return Fail("worker.start_failed", kiln::Annotate(secrets.status(), "--agent-secrets-file"));
    }
    agent_args.insert(agent_args.end(),
                      {"--secrets-file", fs::absolute(agent_secrets_file, ec).string()});
  }
  kiln::sdk::Connection connection(orchestrator, connection_options);
  absl::Status health = connection.CheckHealth(absl::Seconds(connect_timeout_s));
  if (!health.ok()) return Fail("worker.connect_failed", health);

  // Builder machines and deploy targets.
  auto machines = kiln::worker::ProcessMachineProvider::Create({
      .machines_dir = data_dir + "/machines",
      .agent_binary = agent_binary,
      .orchestrator = orchestrator,
      .registry = registry,
      .registry_tls_verify = tls_verify,
      .idle_grace = absl::Seconds(idle_grace_s),
      .extra_agent_args = agent_args,
      .max_machines = max_machines,
      .agent_env = {},
      .mount_namespace = true,
      .launcher = nullptr,
  });
  if (!machines.ok()) return Fail("worker.start_failed", machines.status());
  std::unique_ptr<kiln::worker::MicrovmMachineProvider> microvms;
  if (!microvm_image.empty()) {
    kiln::worker::MicrovmOptions vm;
    vm.machines_dir = data_dir + "/microvms";
    vm.image_dir = fs::absolute(microvm_image, ec).string();
    vm.accel = microvm_accel;
    vm.orchestrator = orchestrator;
    vm.registry = registry;
    vm.registry_tls_verify = tls_verify;
    vm.forward_ports = microvm_forwards;
    vm.volume_bytes = int64_t{microvm_volume_gib} << 30;
    vm.snapshots = microvm_snapshots;
    vm.idle_grace = absl::Seconds(idle_grace_s);
    vm.max_machines = max_machines;
    if (!agent_secrets_file.empty())
      vm.secrets_file = fs::absolute(agent_secrets_file, ec).string();
    // The agents' TLS as for process agents, sent into the guest (host paths mean nothing there).
    vm.tls = orchestrator_tls->enabled || agent_tls->enabled;
    if (!orchestrator_tls_ca.empty())
      vm.tls_ca_file = fs::absolute(orchestrator_tls_ca, ec).string();
    if (!agent_tls_cert.empty()) {
      vm.tls_cert_file = fs::absolute(agent_tls_cert, ec).string();
      vm.tls_key_file = fs::absolute(agent_tls_key, ec).string();
    }
    auto created = kiln::worker::MicrovmMachineProvider::Create(std::move(vm));
    if (!created.ok())
      return Fail("worker.start_failed", kiln::Annotate(created.status(), "--microvm-image"));
    microvms = *std::move(created);
  }
  kiln::worker::NoneDeployTarget none_target;
  kiln::worker::PodmanDeployOptions podman_options;
  podman_options.state_dir = data_dir + "/deploy";
  podman_options.registry_tls_verify = tls_verify;
  podman_options.stop_timeout_seconds = stop_timeout_s;
  // Made on a thread of its own: podman's setup (its host probe, its storage lock, which a
  // build holds, the restore of the running containers' slots) must not hold the worker's
  // start; a deploy that comes first waits for it.
  kiln::worker::DeferredDeployTarget podman_target(
      "podman",
      [podman_options](const std::function<bool()>& stopping)
          -> absl::StatusOr<std::unique_ptr<kiln::worker::DeployTarget>> {
        const absl::Time began = absl::Now();
        kiln::LogInfo("deploy.restoring", {{"state_dir", podman_options.state_dir}});
        auto made = kiln::worker::PodmanDeployTarget::Create(
            podman_options,
            [](std::string_view line) {
              kiln::LogInfo("deploy.restore", {{"line", line}});
            },
            stopping);
        kiln::LogInfo("deploy.restored", {{"took", absl::Now() - began}, {"ok", made.ok()}});
        // Builds still run (target none); deploys to podman fail, saying why.
        if (!made.ok() && stopping()) {
          // The worker stops: what was not restored is restored by the next start.
          kiln::LogInfo("deploy.restore_stopped", {{"status", made.status()}});
          return made.status();
        }
        if (!made.ok()) {
          kiln::LogWarn("worker.podman_unavailable", {{"status", made.status()}});
          return made.status();
        }
        return std::unique_ptr<kiln::worker::DeployTarget>(*std::move(made));
      });

  kiln::worker::PlatformActivitiesOptions platform_options;
  platform_options.machines["process"] = machines->get();
  if (microvms) platform_options.machines["microvm"] = microvms.get();
  platform_options.targets["none"] = &none_target;
  platform_options.targets["podman"] = &podman_target;
  platform_options.connection = &connection;
  if (key) {
    platform_options.mint_agent_token =
        [&key](const std::string& project) -> absl::StatusOr<std::string> {
      kiln::auth::Claims claims;
      claims.scope = kiln::auth::Scope::kAgent;
      claims.project = project;
      claims.subject = "kiln-builder-agent/" + project;
      claims.issued = absl::Now();
      claims.expiry = claims.issued + kAgentTokenLifetime;
      return key->Mint(claims);
    };
  }
  kiln::worker::PlatformActivities platform_activities(platform_options);

  kiln::sdk::ActivityWorkerOptions activity_options;
  activity_options.identity = identity;
  activity_options.registry = registry_metrics.get();
  kiln::sdk::ActivityWorker platform_worker(connection, kiln::worker::kPlatformTaskQueue,
                                            activity_options);
  kiln::sdk::ActivityWorker sample_activities(connection, kiln::samples::kTaskQueue,
                                              activity_options);
  absl::Status ready = platform_activities.Register(platform_worker);
  if (ready.ok()) ready = kiln::samples::RegisterActivities(sample_activities);
  if (ready.ok()) ready = platform_worker.Start();
  if (ready.ok()) ready = sample_activities.Start();
  if (!ready.ok()) return Fail("worker.start_failed", ready);

  kiln::sdk::WorkflowWorkerOptions workflow_options;
  workflow_options.identity = identity;
  workflow_options.registry = registry_metrics.get();
  workflow_options.eager_activities = &platform_worker;
  kiln::sdk::WorkflowWorker platform_workflows(connection, kiln::worker::kPlatformTaskQueue,
                                               workflow_options);
  platform_workflows.Register(kiln::worker::kProjectWorkflowType, kiln::worker::ProjectWorkflow);
  platform_workflows.Register(kiln::worker::kDeploymentWorkflowType,
                              kiln::worker::DeploymentWorkflow);
  platform_workflows.Start();
  workflow_options.eager_activities = &sample_activities;
  kiln::sdk::WorkflowWorker sample_workflows(connection, kiln::samples::kTaskQueue,
                                             workflow_options);
  kiln::samples::RegisterWorkflows(sample_workflows);
  sample_workflows.Start();

  // The APIs.
  const bool http_tls = !http_tls_cert.empty();
  std::string webhook_url = http_listen.empty() ? ""
                                                : absl::StrCat(http_tls ? "https://" : "http://",
                                                               http_listen, "/webhooks/github");
  std::vector<std::string> machine_providers = {"process"};
  if (microvms) machine_providers.push_back("microvm");
  auto api = kiln::worker::PlatformApi::Create({.connection = &connection,
                                                .ns = "",
                                                .secrets_dir = data_dir + "/webhook-secrets",
                                                .webhook_url = webhook_url,
                                                .machine_providers = machine_providers});
  if (!api.ok()) return Fail("worker.start_failed", api.status());
  // Revocations live in the orchestrator: a token that verifies here is confirmed there with a
  // call made with it, on a channel of its own that carries no token of the worker's.
  kiln::sdk::ConnectionOptions confirm_options = connection_options;
  confirm_options.token.clear();
  confirm_options.metadata.clear();
  kiln::sdk::Connection confirm_connection(orchestrator, confirm_options);
  kiln::worker::BuildServiceAuth build_service_auth(
      key, [&confirm_connection](std::string_view token) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        context.AddMetadata("authorization", "Bearer " + std::string(token));
        kiln::api::v1::GetSystemInfoRequest request;
        kiln::api::v1::GetSystemInfoResponse response;
        return kiln::FromGrpc(
            confirm_connection.workflow_service().GetSystemInfo(&context, request, &response));
      });
  kiln::worker::BuildServiceImpl build_service(api->get(), &build_service_auth);
  // Both listeners are ours (connection_listener.h): capped, and probed by themselves; gRPC's
  // health service ("") and kiln_listener_accepting{listener} say whether each accepts.
  // A gRPC connection takes one descriptor, an HTTP one three (client, front to server, server);
  // an HTTP one also holds the front's buffers, so its default has a ceiling.
  int http_max_connections = max_connections;
  if (max_connections == 0) {
    max_connections = kiln::DefaultMaxConnections(4);
    http_max_connections = std::min(max_connections, kDefaultMaxHttpConnections);
  }
  kiln::ListenerHealth listener_health(*registry_metrics);
  kiln::ServerCalls server_calls;  // Outlives server.
  std::unique_ptr<grpc::Server> server;
  // Declared after the server, so it stops handing it connections before the server goes.
  std::unique_ptr<kiln::ConnectionListener> grpc_listener;
  if (!listen.empty()) {
    auto address = kiln::ParseHostPort(listen, "--listen");
    if (!address.ok()) return Fail("worker.start_failed", address.status());
    auto bound =
        kiln::ConnectionListener::Bind({.name = "grpc",
                                        .flag = "--listen",
                                        .host = address->host,
                                        .port = address->port,
                                        .max_connections = max_connections,
                                        .probe_interval = absl::Seconds(listener_probe_s),
                                        .on_accepting = [&listener_health](bool accepting) {
                                          listener_health.Changed("grpc", accepting);
                                        }});
    if (!bound.ok()) return Fail("worker.start_failed", bound.status());
    grpc_listener = *std::move(bound);
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    kiln::RateLimitProtobufLogs();
    server_calls.Install(builder);
    auto credentials = kiln::ListenerCredentials(tls_cert, tls_key, tls_client_ca);
    if (!credentials.ok()) return Fail("worker.start_failed", credentials.status());
    auto acceptor = builder.experimental().AddExternalConnectionAcceptor(
        grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD, *credentials);
    builder.RegisterService(&build_service);
    grpc::ResourceQuota quota("kiln-worker");
    quota.SetMaxThreads(kiln::worker::kMaxFollowers + 16);
    builder.SetResourceQuota(quota);
    server = builder.BuildAndStart();
    if (server == nullptr) {
      return Fail("worker.start_failed",
                  absl::UnavailableError(absl::StrCat("cannot serve on ", listen)));
    }
    grpc_listener->StartGrpc(std::move(acceptor));
    listener_health.Attach(server->GetHealthCheckService());
    kiln::WarnIfExposedWithoutTls("kiln-worker", "BuildService (--listen)", address->host,
                                  !tls_cert.empty());
  }
  // The web console shares the webhook listener (and its front); declared first, so it outlives
  // the server whose threads call it.
  // Its engine calls carry the caller's token, on the confirmations' tokenless channel (which
  // the console starts connecting at once: set up from an HTTP thread, whose stack civetweb
  // makes ~100 KB, gRPC overflowed it and kiln-worker crashed on the console's first call).
  kiln::worker::console::Console console({.api = api->get(),
                                          .engine = &confirm_connection,
                                          .auth = &build_service_auth,
                                          .machines = platform_options.machines,
                                          .max_log_streams = kConsoleLogStreams});
  std::unique_ptr<kiln::worker::WebhookServer> webhooks;
  if (!http_listen.empty()) {
    auto address = kiln::ParseHostPort(http_listen, "--http");
    if (!address.ok()) return Fail("worker.start_failed", address.status());
    // GitHub signs its deliveries, but without TLS anyone on the path reads them.
    kiln::WarnIfExposedWithoutTls("kiln-worker", "the webhook HTTP listener (--http)",
                                  address->host, http_tls);
    kiln::worker::WebhookServerOptions options;
    options.listen = http_listen;
    options.tls_cert_file = http_tls_cert;
    options.tls_key_file = http_tls_key;
    options.tls_client_ca_file = http_tls_client_ca;
    options.handshake_timeout = absl::Seconds(http_handshake_timeout_s);
    options.max_connections = http_max_connections;
    options.threads = kHttpThreads;
    options.probe_interval = absl::Seconds(listener_probe_s);
    options.on_accepting = [&listener_health](bool accepting) {
      listener_health.Changed("http", accepting);
    };
    auto started = kiln::worker::WebhookServer::Start(options, api->get());
    if (!started.ok()) return Fail("worker.start_failed", started.status());
    webhooks = *std::move(started);
    console.Mount(*webhooks->http());
  }
  kiln::LogInfo("worker.connected",
                {{"orchestrator", orchestrator},
                 {"task_queue", kiln::worker::kPlatformTaskQueue},
                 {"build_service", listen},
                 {"webhooks", webhook_url},
                 {"console", http_listen.empty() ? ""
                                                 : absl::StrCat(http_tls ? "https://" : "http://",
                                                                http_listen, "/")},
                 {"max_connections", max_connections},
                 {"http_max_connections", http_max_connections},
                 {"registry", registry},
                 {"data_dir", data_dir}});

  int signo = kiln::WaitForTerminationSignal();
  kiln::LogInfo("worker.stopping", {{"signal", signo}});
  console.Stop();  // Ends the log streams, which would hold the server's threads.
  webhooks.reset();
  if (grpc_listener) grpc_listener->Stop();  // No new connections.
  listener_health.Detach();
  if (server) server_calls.Shutdown(*server, absl::Seconds(2));
  platform_workflows.Stop();
  sample_workflows.Stop();
  platform_worker.Stop();
  sample_activities.Stop();
  kiln::LogInfo("worker.stopped");
  return 0;
}
