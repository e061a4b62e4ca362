// Serves Temporal's WorkflowService by method name through gRPC's generic callback service
// rather than the generated service class: every method Kiln does not implement then answers
// UNIMPLEMENTED with a message naming it (a generated service answers them with an empty
// one), and the build compiles only Temporal's messages, not its service definition.
//
// The engine's WorkflowService handler is called directly, with the Temporal call's own server
// context (EngineCall): no gRPC channel, no second call, no encoding of the engine's messages
// between the two, which an in-process channel cost (docs/benchmarks.md).
#include "orchestrator/temporal/temporal_frontend.h"

#include <functional>
#include <mutex>
#include <utility>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/server_callback.h>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/rpc_status.h"
#include "common/server_calls.h"
#include "common/status.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"
#include "orchestrator/temporal/temporal_translate.h"
#include "temporal/api/workflowservice/v1/request_response.pb.h"

namespace kiln::orchestrator {
namespace {

namespace kapi = ::kiln::api::v1;
namespace twf = ::temporal::api::workflowservice::v1;
namespace tenums = ::temporal::api::enums::v1;

constexpr char kServicePrefix[] = "/temporal.api.workflowservice.v1.WorkflowService/";
constexpr int kMaxMessageBytes = 8 << 20;

// The engine's side of a Temporal call in flight: what the Temporal call forwards its
// cancellation to (EngineCall).
class EngineCallBase {
 public:
  virtual ~EngineCallBase() = default;
  virtual void Cancel() = 0;
};

// One call to the Temporal frontend: reads its one request, and finishes with one answer or a
// status. A call waiting on the engine (a long poll) is cancelled there when its caller goes.
class Call final : public grpc::ServerGenericBidiReactor {
 public:
  using Dispatch = std::function<void(Call&)>;

  Call(grpc::GenericCallbackServerContext* ctx, const Dispatch& dispatch)
      : ctx_(ctx), dispatch_(dispatch) {
    StartRead(&request_);
  }

  // The method's name without the service: "StartWorkflowExecution".
  std::string method() const {
    std::string name = ctx_->method();
    if (absl::StartsWith(name, kServicePrefix)) return name.substr(sizeof(kServicePrefix) - 1);
    return name;
  }
  bool in_service() const { return absl::StartsWith(ctx_->method(), kServicePrefix); }

  // Parses the request; on failure the call is finished (INVALID_ARGUMENT).
  bool Parse(google::protobuf::Message* message) {
    // Straight from gRPC's slices, as a generated service parses.
    if (grpc::SerializationTraits<google::protobuf::Message>::Deserialize(&request_, message)
            .ok()) {
      return true;
    }
    Fail(absl::InvalidArgumentError(
        absl::StrCat(method(), ": the request does not parse as ", message->GetTypeName())));
    return false;
  }

  void Reply(const google::protobuf::Message& response) {
    bool own_buffer = false;
    grpc::Status serialized = grpc::SerializationTraits<google::protobuf::Message>::Serialize(
        response, &response_, &own_buffer);
    if (!serialized.ok()) return Fail(serialized);
    StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
  }
  void Fail(const absl::Status& status) { Finish(ToGrpc(status)); }
  void Fail(const grpc::Status& status) { Finish(status); }

  // The context the engine's handler is called with: the caller's token, deadline and peer
  // as gRPC received them. One engine call per Temporal call may use it (its default reactor
  // is the engine call's): nullptr for a second one.
  grpc::CallbackServerContext* TakeContextForEngine() {
    std::lock_guard<std::mutex> lock(mu_);
    if (engine_called_) return nullptr;
    engine_called_ = true;
    return ctx_;
  }

  // The engine call made for this one: cancelled if this call is.
  void Attach(std::shared_ptr<EngineCallBase> outbound) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!cancelled_) {
        outbound_ = std::move(outbound);
        return;
      }
    }
    outbound->Cancel();
  }
  void Detach() {
    std::lock_guard<std::mutex> lock(mu_);
    outbound_ = nullptr;
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request message"));
      return;
    }
    dispatch_(*this);
  }
  void OnCancel() override {
    std::shared_ptr<EngineCallBase> outbound;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      outbound = std::move(outbound_);
    }
    // Outside the lock: the engine may finish the call inline, and its answer detaches.
    if (outbound != nullptr) outbound->Cancel();
  }
  void OnDone() override { delete this; }

 private:
  grpc::GenericCallbackServerContext* ctx_;
  const Dispatch& dispatch_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::mutex mu_;
  std::shared_ptr<EngineCallBase> outbound_;  // guarded by mu_
  bool cancelled_ = false;                    // guarded by mu_
  bool engine_called_ = false;                // guarded by mu_
};

// One call of the engine's WorkflowService handler, made as gRPC's callback server makes it:
// the handler returns its reactor, which this binds to itself (gRPC's ServerCallbackUnary) so
// that the reactor's Finish lands here, with the response it wrote in `response`. Then `done`
// runs with the status; the reactor's OnDone runs before it, once the handler has returned
// and no OnCancel is running (what gRPC promises a reactor), so that the Temporal call, whose
// context holds the engine call's default reactor, finishes only after the engine is done
// with that context. Cancel forwards the Temporal call's cancellation as OnCancel. Alive while
// the Temporal call holds it or the engine has not finished.
template <typename Request, typename Response>
class EngineCall final : public EngineCallBase,
                         public grpc::ServerCallbackUnary,
                         public std::enable_shared_from_this<EngineCall<Request, Response>> {
 public:
  using Done = std::function<void(const grpc::Status&, const Response&)>;

  EngineCall(Request request, Done done) : request(std::move(request)), done_(std::move(done)) {}

  // Takes the reactor the handler returned; a Finish it asked for already is replayed now.
  void Bind(grpc::ServerUnaryReactor* reactor) {
    self_ = this->shared_from_this();  // until the engine has finished
    reactor_ = reactor;
    BindReactor(reactor);
    bool cancel;
    {
      std::lock_guard<std::mutex> lock(mu_);
      bound_ = true;
      cancel = cancel_wanted_ && !finished_;
      if (cancel) cancel_running_ = true;
    }
    if (cancel) RunOnCancel();
    MaybeComplete();
  }

  void Cancel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_ || cancel_running_ || cancel_wanted_) return;
      cancel_wanted_ = true;
      if (!bound_) return;  // Bind runs it
      cancel_running_ = true;
    }
    RunOnCancel();
    MaybeComplete();
  }

  // grpc::ServerCallbackUnary: the reactor's answer.
  void Finish(grpc::Status status) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      finished_ = true;
      status_ = std::move(status);
    }
    // Not inside Bind (gRPC's bind replays a backlogged Finish under the reactor's lock), nor
    // during OnCancel: whichever of them ends last completes.
    MaybeComplete();
  }
  void SendInitialMetadata() override {}  // sent with the Temporal answer

  Request request;
  Response response;

 private:
  // grpc::internal::ServerCallbackCall.
  grpc::internal::ServerReactor* reactor() override { return reactor_; }
  void CallOnDone() override {}  // MaybeComplete runs OnDone

  void RunOnCancel() {
    reactor_->OnCancel();
    std::lock_guard<std::mutex> lock(mu_);
    cancel_running_ = false;
  }

  void MaybeComplete() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!bound_ || !finished_ || cancel_running_ || completed_) return;
      completed_ = true;
    }
    reactor_->OnDone();
    done_(status_, response);
    done_ = nullptr;
    self_.reset();  // may free this
  }

  Done done_;
  grpc::ServerUnaryReactor* reactor_ = nullptr;
  std::shared_ptr<EngineCall> self_;
  std::mutex mu_;
  grpc::Status status_;          // guarded by mu_ until completed_
  bool bound_ = false;           // guarded by mu_
  bool finished_ = false;        // guarded by mu_
  bool cancel_wanted_ = false;   // guarded by mu_
  bool cancel_running_ = false;  // guarded by mu_
  bool completed_ = false;       // guarded by mu_
};

// Calls Method on the engine's WorkflowService handler; returns its reactor.
#define KILN_ENGINE(Method)                                                            \
  [](kapi::WorkflowService::CallbackService* engine, grpc::CallbackServerContext* ctx, \
     const auto* request, auto* response) -> grpc::ServerUnaryReactor* {               \
    return engine->Method(ctx, request, response);                                     \
  }

class Frontend final : public TemporalFrontend, public grpc::CallbackGenericService {
 public:
  Frontend(const TemporalFrontendOptions& options, kapi::WorkflowService::CallbackService* engine)
      : options_(options),
        namespaces_(options.namespaces.begin(), options.namespaces.end()),
        engine_(engine) {
    Register();
    dispatch_ = [this](Call& call) { Dispatch(call); };
  }

  absl::Status Serve() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(options_.listen, options_.credentials, &port_);
    builder.RegisterCallbackGenericService(this);
    calls_.Install(builder);
    builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port_ == 0) {
      return absl::UnavailableError(
          absl::StrCat("--temporal-listen: cannot listen on ", options_.listen));
    }
    return absl::OkStatus();
  }

  int port() const override { return port_; }

  void Shutdown(absl::Duration grace) override {
    if (server_ == nullptr) return;
    calls_.Shutdown(*server_, grace);
    server_.reset();
  }

  ~Frontend() override { Shutdown(absl::ZeroDuration()); }

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    return new Call(ctx, dispatch_);
  }

 private:
  using Handler = std::function<void(Call&)>;

  void Dispatch(Call& call) {
    auto it = call.in_service() ? handlers_.find(call.method()) : handlers_.end();
    if (it == handlers_.end()) {
      call.Fail(absl::UnimplementedError(absl::StrCat(
          call.method(),
          " is not implemented by Kiln's Temporal frontend (docs/temporal-api.md lists what "
          "is)")));
      return;
    }
    it->second(call);
  }

  // A request naming a namespace this frontend does not serve: NOT_FOUND, as Temporal says it.
  absl::Status CheckNamespace(const google::protobuf::Message& request) const {
    const auto* field = request.GetDescriptor()->FindFieldByName("namespace");
    if (field == nullptr || field->type() != google::protobuf::FieldDescriptor::TYPE_STRING) {
      return absl::OkStatus();
    }
    std::string ns = request.GetReflection()->GetString(request, field);
    if (ns.empty() || namespaces_.contains(ns)) return absl::OkStatus();
    return absl::NotFoundError(absl::StrCat("Namespace ", ns, " is not found (Kiln serves: ",
                                            absl::StrJoin(options_.namespaces, ", "), ")"));
  }

  // Sends `request` to the engine with `invoke` (KILN_ENGINE), then hands its answer to
  // `done`, which finishes the call. An engine error finishes it as is, or as `map_error`
  // says.
  template <typename KRequest, typename KResponse, typename Invoke>
  void CallEngine(Call& call, KRequest request, Invoke invoke,
                  std::function<void(const KResponse&)> done,
                  std::function<grpc::Status(const grpc::Status&)> map_error = nullptr) {
    grpc::CallbackServerContext* ctx = call.TakeContextForEngine();
    if (ctx == nullptr) {
      return call.Fail(absl::InternalError(
          absl::StrCat(call.method(), ": the frontend makes one engine call per Temporal call")));
    }
    auto in_flight = std::make_shared<EngineCall<KRequest, KResponse>>(
        std::move(request), [&call, done = std::move(done), map_error = std::move(map_error)](
                                const grpc::Status& status, const KResponse& response) {
          call.Detach();
          if (!status.ok()) {
            call.Fail(map_error ? map_error(status) : status);
            return;
          }
          done(response);
        });
    call.Attach(in_flight);
    in_flight->Bind(invoke(engine_, ctx, &in_flight->request, &in_flight->response));
  }

  // The common shape: Temporal's request translated by name (then `adjust`ed), the engine's
  // answer translated back by name (then `finish`ed, which may turn it into an error).
  template <typename TRequest, typename TResponse, typename KRequest, typename KResponse,
            typename Invoke>
  void Translated(
      Call& call, Invoke invoke,
      std::function<absl::Status(const TRequest&, KRequest&)> adjust = nullptr,
      std::function<absl::Status(const TRequest&, const KResponse&, TResponse&)> finish = nullptr,
      std::function<grpc::Status(const grpc::Status&)> map_error = nullptr) {
    auto request = std::make_shared<TRequest>();
    if (!call.Parse(request.get())) return;
    if (absl::Status ns = CheckNamespace(*request); !ns.ok()) return call.Fail(ns);
    KRequest engine_request;
    absl::Status translated = ToKiln(*request, &engine_request);
    if (translated.ok() && adjust) translated = adjust(*request, engine_request);
    if (!translated.ok()) {
      return call.Fail(
          absl::Status(translated.code(), absl::StrCat(call.method(), ": ", translated.message())));
    }
    CallEngine<KRequest, KResponse>(
        call, std::move(engine_request), invoke,
        [&call, request, finish](const KResponse& engine_response) {
          TResponse response;
          absl::Status back = ToTemporal(engine_response, &response);
          if (!back.ok()) return call.Fail(back);
          if (finish) back = finish(*request, engine_response, response);
          if (!back.ok()) return call.Fail(back);
          call.Reply(response);
        },
        std::move(map_error));
  }

  // Answers with `response` once the engine has admitted the caller (GetSystemInfo is the
  // call everyone with a token may make): the methods the engine has no counterpart for.
  void AfterAdmission(Call& call, std::function<void(Call&)> answer) {
    CallEngine<kapi::GetSystemInfoRequest, kapi::GetSystemInfoResponse>(
        call, {}, KILN_ENGINE(GetSystemInfo),
        [&call, answer = std::move(answer)](const kapi::GetSystemInfoResponse&) { answer(call); });
  }

  void Register();

  // What DescribeNamespace answers for one of options_.namespaces.
  twf::DescribeNamespaceResponse DescribeNamespace(const std::string& name) const {
    twf::DescribeNamespaceResponse response;
    auto* info = response.mutable_namespace_info();
    info->set_name(name);
    info->set_id(name);  // Kiln's namespaces are their names
    info->set_state(tenums::NAMESPACE_STATE_REGISTERED);
    info->set_description("a namespace of Kiln's engine");
    auto* retention = response.mutable_config()->mutable_workflow_execution_retention_ttl();
    retention->set_seconds(absl::ToInt64Seconds(options_.retention));
    return response;
  }

  TemporalFrontendOptions options_;
  absl::flat_hash_set<std::string> namespaces_;
  kapi::WorkflowService::CallbackService* engine_;
  absl::flat_hash_map<std::string, Handler> handlers_;
  Call::Dispatch dispatch_;
  ServerCalls calls_;  // Outlives server_.
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// What a workflow task's poller needs beside what the engine sends: the run's own (normal)
// task queue.
void SetWorkflowQueue(const std::string& queue, twf::PollWorkflowTaskQueueResponse& task) {
  if (task.task_token().empty() || queue.empty()) return;
  task.mutable_workflow_execution_task_queue()->set_name(queue);
  task.mutable_workflow_execution_task_queue()->set_kind(tenums::TASK_QUEUE_KIND_NORMAL);
}

absl::Status Unsupported(bool used, const char* what) {
  if (!used) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat(what, " is not supported by Kiln yet"));
}

void Frontend::Register() {
  handlers_["GetSystemInfo"] = [this](Call& call) {
    twf::GetSystemInfoRequest request;
    if (!call.Parse(&request)) return;
    AfterAdmission(call, [this](Call& c) {
      twf::GetSystemInfoResponse response;
      response.set_server_version(options_.server_version);
      auto* capabilities = response.mutable_capabilities();
      capabilities->set_signal_and_query_header(true);
      capabilities->set_activity_failure_include_heartbeat(true);
      capabilities->set_encoded_failure_attributes(true);
      capabilities->set_sdk_metadata(true);
      capabilities->set_upsert_memo(true);
      c.Reply(response);
    });
  };

  handlers_["DescribeNamespace"] = [this](Call& call) {
    twf::DescribeNamespaceRequest request;
    if (!call.Parse(&request)) return;
    std::string name = request.namespace_().empty() ? request.id() : request.namespace_();
    if (!namespaces_.contains(name)) {
      return call.Fail(absl::NotFoundError(absl::StrCat(
          "Namespace ", name,
          " is not found (Kiln serves: ", absl::StrJoin(options_.namespaces, ", "), ")")));
    }
    AfterAdmission(call, [this, name](Call& c) { c.Reply(DescribeNamespace(name)); });
  };
  handlers_["ListNamespaces"] = [this](Call& call) {
    twf::ListNamespacesRequest request;
    if (!call.Parse(&request)) return;
    AfterAdmission(call, [this](Call& c) {
      twf::ListNamespacesResponse response;
      for (const std::string& name : options_.namespaces) {
        *response.add_namespaces() = DescribeNamespace(name);
      }
      c.Reply(response);
    });
  };

  handlers_["ShutdownWorker"] = [this](Call& call) {
    twf::ShutdownWorkerRequest request;
    if (!call.Parse(&request)) return;
    if (absl::Status ns = CheckNamespace(request); !ns.ok()) return call.Fail(ns);
    // Nothing to undo: the engine keeps no sticky queue. A run whose last task this worker
    // completed simply goes, with its whole history, to whichever poller asks next.
    AfterAdmission(call, [](Call& c) { c.Reply(twf::ShutdownWorkerResponse()); });
  };

  handlers_["StartWorkflowExecution"] = [this](Call& call) {
    Translated<twf::StartWorkflowExecutionRequest, twf::StartWorkflowExecutionResponse,
               kapi::StartWorkflowExecutionRequest, kapi::StartWorkflowExecutionResponse>(
        call, KILN_ENGINE(StartWorkflowExecution),
        [](const twf::StartWorkflowExecutionRequest& t, kapi::StartWorkflowExecutionRequest& k) {
          RETURN_IF_ERROR(Unsupported(!t.cron_schedule().empty(), "cron_schedule"));
          RETURN_IF_ERROR(Unsupported(t.has_workflow_start_delay(), "workflow_start_delay"));
          RETURN_IF_ERROR(Unsupported(t.completion_callbacks_size() > 0, "completion_callbacks"));
          // Kiln's eager start hands the first task to the caller's own Kiln worker; a
          // Temporal client takes it through a poll.
          k.set_request_eager_execution(false);
          k.set_transient_workflow_task_retries(true);  // as Temporal's server keeps them
          return absl::OkStatus();
        },
        [](const twf::StartWorkflowExecutionRequest&, const kapi::StartWorkflowExecutionResponse& k,
           twf::StartWorkflowExecutionResponse& t) {
          if (k.started()) t.set_status(tenums::WORKFLOW_EXECUTION_STATUS_RUNNING);
          return absl::OkStatus();
        });
  };

  handlers_["SignalWithStartWorkflowExecution"] = [this](Call& call) {
    Translated<twf::SignalWithStartWorkflowExecutionRequest,
               twf::SignalWithStartWorkflowExecutionResponse,
               kapi::SignalWithStartWorkflowExecutionRequest,
               kapi::SignalWithStartWorkflowExecutionResponse>(
        call, KILN_ENGINE(SignalWithStartWorkflowExecution),
        [](const twf::SignalWithStartWorkflowExecutionRequest& t,
           kapi::SignalWithStartWorkflowExecutionRequest& k) {
          RETURN_IF_ERROR(Unsupported(!t.cron_schedule().empty(), "cron_schedule"));
          RETURN_IF_ERROR(Unsupported(t.has_workflow_start_delay(), "workflow_start_delay"));
          // The engine nests the start; the names of its fields are Temporal's.
          RETURN_IF_ERROR(ToKiln(t, k.mutable_start()));
          k.mutable_start()->set_transient_workflow_task_retries(true);
          return absl::OkStatus();
        });
  };

  handlers_["PollWorkflowTaskQueue"] = [this](Call& call) {
    // A sticky poll (the worker's own queue for the runs it keeps cached) is a poll of the
    // normal queue that presents the sticky queue's name as the worker's instance: the engine
    // sends a run whose last task that worker completed (sticky_worker) with the events after
    // that task only, and everything else with the whole history. No task waits for one
    // worker, so a worker that went away strands nothing.
    auto queue = std::make_shared<std::string>();
    Translated<twf::PollWorkflowTaskQueueRequest, twf::PollWorkflowTaskQueueResponse,
               kapi::PollWorkflowTaskQueueRequest, kapi::PollWorkflowTaskQueueResponse>(
        call, KILN_ENGINE(PollWorkflowTaskQueue),
        [queue](const twf::PollWorkflowTaskQueueRequest& t, kapi::PollWorkflowTaskQueueRequest& k) {
          if (t.task_queue().kind() == tenums::TASK_QUEUE_KIND_STICKY) {
            if (t.task_queue().normal_name().empty()) {
              return absl::InvalidArgumentError("a sticky task_queue needs its normal_name");
            }
            k.mutable_task_queue()->set_name(t.task_queue().normal_name());
            k.set_worker_instance_id(t.task_queue().name());
          }
          *queue = k.task_queue().name();
          return absl::OkStatus();
        },
        [queue](const twf::PollWorkflowTaskQueueRequest&,
                const kapi::PollWorkflowTaskQueueResponse&, twf::PollWorkflowTaskQueueResponse& t) {
          SetWorkflowQueue(*queue, t);
          return absl::OkStatus();
        });
  };

  handlers_["RespondWorkflowTaskCompleted"] = [this](Call& call) {
    Translated<twf::RespondWorkflowTaskCompletedRequest, twf::RespondWorkflowTaskCompletedResponse,
               kapi::RespondWorkflowTaskCompletedRequest,
               kapi::RespondWorkflowTaskCompletedResponse>(
        call, KILN_ENGINE(RespondWorkflowTaskCompleted),
        [](const twf::RespondWorkflowTaskCompletedRequest& t,
           kapi::RespondWorkflowTaskCompletedRequest& k) {
          RETURN_IF_ERROR(
              Unsupported(t.messages_size() > 0, "protocol messages (workflow updates)"));
          const auto& sticky = t.sticky_attributes().worker_task_queue();
          k.set_sticky_worker(sticky.name());
          // The next task is returned only when its queue is known (the sticky attributes
          // name it): a Temporal worker insists on it. Otherwise the worker polls for it.
          if (sticky.normal_name().empty()) k.set_return_new_workflow_task(false);
          return absl::OkStatus();
        },
        [](const twf::RespondWorkflowTaskCompletedRequest& t,
           const kapi::RespondWorkflowTaskCompletedResponse& k,
           twf::RespondWorkflowTaskCompletedResponse& response) {
          // The engine failed the task instead (events arrived while it ran and its commands
          // would close the run): Temporal's server answers INVALID_ARGUMENT "UnhandledCommand",
          // on which the SDK drops the run from its cache and takes the next task, which has
          // the new events, with the whole history. An OK answer would leave the SDK believing
          // its completion (and the flags it sent with it) recorded.
          if (k.rejected_cause() == kapi::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND) {
            return absl::InvalidArgumentError("UnhandledCommand");
          }
          if (response.has_workflow_task()) {
            SetWorkflowQueue(t.sticky_attributes().worker_task_queue().normal_name(),
                             *response.mutable_workflow_task());
          }
          return absl::OkStatus();
        });
  };

  handlers_["RespondWorkflowTaskFailed"] = [this](Call& call) {
    Translated<twf::RespondWorkflowTaskFailedRequest, twf::RespondWorkflowTaskFailedResponse,
               kapi::RespondWorkflowTaskFailedRequest, kapi::RespondWorkflowTaskFailedResponse>(
        call, KILN_ENGINE(RespondWorkflowTaskFailed),
        [](const twf::RespondWorkflowTaskFailedRequest& t,
           kapi::RespondWorkflowTaskFailedRequest& k) {
          RETURN_IF_ERROR(
              Unsupported(t.messages_size() > 0, "protocol messages (workflow updates)"));
          return absl::OkStatus();
        });
  };

  handlers_["PollActivityTaskQueue"] = [this](Call& call) {
    Translated<twf::PollActivityTaskQueueRequest, twf::PollActivityTaskQueueResponse,
               kapi::PollActivityTaskQueueRequest, kapi::PollActivityTaskQueueResponse>(
        call, KILN_ENGINE(PollActivityTaskQueue));
  };
  handlers_["RecordActivityTaskHeartbeat"] = [this](Call& call) {
    Translated<twf::RecordActivityTaskHeartbeatRequest, twf::RecordActivityTaskHeartbeatResponse,
               kapi::RecordActivityTaskHeartbeatRequest, kapi::RecordActivityTaskHeartbeatResponse>(
        call, KILN_ENGINE(RecordActivityTaskHeartbeat));
  };
  handlers_["RespondActivityTaskCompleted"] = [this](Call& call) {
    Translated<twf::RespondActivityTaskCompletedRequest, twf::RespondActivityTaskCompletedResponse,
               kapi::RespondActivityTaskCompletedRequest,
               kapi::RespondActivityTaskCompletedResponse>(
        call, KILN_ENGINE(RespondActivityTaskCompleted));
  };
  handlers_["RespondActivityTaskFailed"] = [this](Call& call) {
    Translated<twf::RespondActivityTaskFailedRequest, twf::RespondActivityTaskFailedResponse,
               kapi::RespondActivityTaskFailedRequest, kapi::RespondActivityTaskFailedResponse>(
        call, KILN_ENGINE(RespondActivityTaskFailed));
  };
  handlers_["RespondActivityTaskCanceled"] = [this](Call& call) {
    Translated<twf::RespondActivityTaskCanceledRequest, twf::RespondActivityTaskCanceledResponse,
               kapi::RespondActivityTaskCanceledRequest, kapi::RespondActivityTaskCanceledResponse>(
        call, KILN_ENGINE(RespondActivityTaskCanceled));
  };

  handlers_["SignalWorkflowExecution"] = [this](Call& call) {
    Translated<twf::SignalWorkflowExecutionRequest, twf::SignalWorkflowExecutionResponse,
               kapi::SignalWorkflowExecutionRequest, kapi::SignalWorkflowExecutionResponse>(
        call, KILN_ENGINE(SignalWorkflowExecution));
  };
  handlers_["RequestCancelWorkflowExecution"] = [this](Call& call) {
    Translated<
        twf::RequestCancelWorkflowExecutionRequest, twf::RequestCancelWorkflowExecutionResponse,
        kapi::RequestCancelWorkflowExecutionRequest, kapi::RequestCancelWorkflowExecutionResponse>(
        call, KILN_ENGINE(RequestCancelWorkflowExecution));
  };
  handlers_["TerminateWorkflowExecution"] = [this](Call& call) {
    Translated<twf::TerminateWorkflowExecutionRequest, twf::TerminateWorkflowExecutionResponse,
               kapi::TerminateWorkflowExecutionRequest, kapi::TerminateWorkflowExecutionResponse>(
        call, KILN_ENGINE(TerminateWorkflowExecution));
  };

  handlers_["QueryWorkflow"] = [this](Call& call) {
    Translated<twf::QueryWorkflowRequest, twf::QueryWorkflowResponse, kapi::QueryWorkflowRequest,
               kapi::QueryWorkflowResponse>(
        call, KILN_ENGINE(QueryWorkflow),
        [](const twf::QueryWorkflowRequest& t, kapi::QueryWorkflowRequest&) {
          return Unsupported(
              t.query_reject_condition() != tenums::QUERY_REJECT_CONDITION_UNSPECIFIED &&
                  t.query_reject_condition() != tenums::QUERY_REJECT_CONDITION_NONE,
              "query_reject_condition");
        },
        nullptr,
        // The workflow's own refusal (an unknown query, a handler that threw) is what
        // Temporal's clients know as a failed query: INVALID_ARGUMENT with its message.
        [](const grpc::Status& status) {
          if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
              absl::StartsWith(status.error_message(), "query failed: ")) {
            return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                status.error_message().substr(sizeof("query failed: ") - 1));
          }
          return status;
        });
  };
  handlers_["RespondQueryTaskCompleted"] = [this](Call& call) {
    Translated<twf::RespondQueryTaskCompletedRequest, twf::RespondQueryTaskCompletedResponse,
               kapi::RespondQueryTaskCompletedRequest, kapi::RespondQueryTaskCompletedResponse>(
        call, KILN_ENGINE(RespondQueryTaskCompleted),
        [](const twf::RespondQueryTaskCompletedRequest& t,
           kapi::RespondQueryTaskCompletedRequest& k) {
          if (k.error_message().empty() && t.has_failure()) {
            k.set_error_message(t.failure().message());
          }
          return absl::OkStatus();
        });
  };

  handlers_["GetWorkflowExecutionHistory"] = [this](Call& call) {
    Translated<twf::GetWorkflowExecutionHistoryRequest, twf::GetWorkflowExecutionHistoryResponse,
               kapi::GetWorkflowExecutionHistoryRequest, kapi::GetWorkflowExecutionHistoryResponse>(
        call, KILN_ENGINE(GetWorkflowExecutionHistory));
  };
  handlers_["ResetWorkflowExecution"] = [this](Call& call) {
    Translated<twf::ResetWorkflowExecutionRequest, twf::ResetWorkflowExecutionResponse,
               kapi::ResetWorkflowExecutionRequest, kapi::ResetWorkflowExecutionResponse>(
        call, KILN_ENGINE(ResetWorkflowExecution), ResetToKiln);
  };
  handlers_["DescribeTaskQueue"] = [this](Call& call) {
    Translated<twf::DescribeTaskQueueRequest, twf::DescribeTaskQueueResponse,
               kapi::DescribeTaskQueueRequest, kapi::DescribeTaskQueueResponse>(
        call, KILN_ENGINE(DescribeTaskQueue), DescribeTaskQueueToKiln,
        [](const twf::DescribeTaskQueueRequest& t, const kapi::DescribeTaskQueueResponse& k,
           twf::DescribeTaskQueueResponse& response) {
          DescribeTaskQueueToTemporal(t, k, response);
          return absl::OkStatus();
        });
  };
  handlers_["DescribeWorkflowExecution"] = [this](Call& call) {
    Translated<twf::DescribeWorkflowExecutionRequest, twf::DescribeWorkflowExecutionResponse,
               kapi::DescribeWorkflowExecutionRequest, kapi::DescribeWorkflowExecutionResponse>(
        call, KILN_ENGINE(DescribeWorkflowExecution), nullptr,
        [](const twf::DescribeWorkflowExecutionRequest&,
           const kapi::DescribeWorkflowExecutionResponse& k,
           twf::DescribeWorkflowExecutionResponse& t) {
          auto* queue = t.mutable_execution_config()->mutable_task_queue();
          queue->set_name(k.workflow_execution_info().task_queue());
          queue->set_kind(tenums::TASK_QUEUE_KIND_NORMAL);
          return absl::OkStatus();
        });
  };
  handlers_["ListWorkflowExecutions"] = [this](Call& call) {
    Translated<twf::ListWorkflowExecutionsRequest, twf::ListWorkflowExecutionsResponse,
               kapi::ListWorkflowExecutionsRequest, kapi::ListWorkflowExecutionsResponse>(
        call, KILN_ENGINE(ListWorkflowExecutions));
  };
  handlers_["CountWorkflowExecutions"] = [this](Call& call) {
    Translated<twf::CountWorkflowExecutionsRequest, twf::CountWorkflowExecutionsResponse,
               kapi::CountWorkflowExecutionsRequest, kapi::CountWorkflowExecutionsResponse>(
        call, KILN_ENGINE(CountWorkflowExecutions));
  };
}

}  // namespace

absl::StatusOr<std::unique_ptr<TemporalFrontend>> TemporalFrontend::Start(
    const TemporalFrontendOptions& options, kapi::WorkflowService::CallbackService* engine) {
  auto frontend = std::make_unique<Frontend>(options, engine);
  RETURN_IF_ERROR(frontend->Serve());
  LogInfo("orchestrator.temporal_serving",
          {{"temporal_listen", options.listen},
           {"port", frontend->port()},
           {"namespaces", absl::StrJoin(options.namespaces, ",")}});
  return frontend;
}

bool TemporalFrontendBuiltIn() { return true; }

}  // namespace kiln::orchestrator
