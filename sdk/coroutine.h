// The coroutine types workflow code is written with. A workflow runs on one thread, driven by
// its WorkflowInstance: nothing here locks, and nothing resumes on its own — a resolved Future
// queues its waiters on the instance's scheduler, which resumes them in order. That makes a
// workflow's execution a pure function of its history.
//
//   Task<T>    a lazy coroutine: it starts when awaited and resumes its awaiter when done.
//   Future<T>  a value the engine will deliver (an activity result, a timer); awaitable by any
//              number of coroutines.
#pragma once

#include <coroutine>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace kiln::sdk {

// Runs resumptions in FIFO order; owned by a WorkflowInstance.
class Scheduler {
 public:
  void Schedule(std::coroutine_handle<> handle) { ready_.push_back(handle); }
  // Resumes until nothing is ready. Returns the number of resumptions.
  int RunUntilIdle() {
    int n = 0;
    while (!ready_.empty()) {
      auto handle = ready_.front();
      ready_.pop_front();
      handle.resume();
      ++n;
    }
    return n;
  }
  void Clear() { ready_.clear(); }

 private:
  std::deque<std::coroutine_handle<>> ready_;
};

template <typename T>
class Task;

namespace internal {

template <typename T>
struct TaskPromiseBase {
  std::coroutine_handle<> continuation;

  std::suspend_always initial_suspend() noexcept { return {}; }
  auto final_suspend() noexcept {
    struct FinalAwaiter {
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<>) noexcept {
        return continuation ? continuation : std::noop_coroutine();
      }
      void await_resume() noexcept {}
      std::coroutine_handle<> continuation;
    };
    return FinalAwaiter{continuation};
  }
  // Workflow code reports errors as values (absl::Status); an exception escaping it is a bug
  // in that code and ends the process rather than corrupting the workflow silently.
  void unhandled_exception() noexcept { std::terminate(); }
};

}  // namespace internal

template <typename T>
class [[nodiscard]] Task {
 public:
  struct promise_type : internal::TaskPromiseBase<T> {
    std::optional<T> value;
    Task get_return_object() {
      return Task(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    template <typename U>
    void return_value(U&& v) {
      value.emplace(std::forward<U>(v));
    }
  };

  Task() = default;
  explicit Task(std::coroutine_handle<promise_type> handle) : handle_(handle) {}
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  ~Task() {
    if (handle_) handle_.destroy();
  }

  bool await_ready() const noexcept { return !handle_ || handle_.done(); }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    handle_.promise().continuation = awaiting;
    return handle_;  // Start the child now (symmetric transfer).
  }
  T await_resume() { return std::move(*handle_.promise().value); }

  // For the runtime: start a root task without an awaiter.
  std::coroutine_handle<promise_type> handle() const { return handle_; }
  bool done() const { return !handle_ || handle_.done(); }
  T& result() { return *handle_.promise().value; }

 private:
  std::coroutine_handle<promise_type> handle_;
};

template <>
class [[nodiscard]] Task<void> {
 public:
  struct promise_type : internal::TaskPromiseBase<void> {
    Task get_return_object() {
      return Task(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    void return_void() {}
  };

  Task() = default;
  explicit Task(std::coroutine_handle<promise_type> handle) : handle_(handle) {}
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task(const Task&) = delete;
  ~Task() {
    if (handle_) handle_.destroy();
  }

  bool await_ready() const noexcept { return !handle_ || handle_.done(); }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    handle_.promise().continuation = awaiting;
    return handle_;
  }
  void await_resume() {}

 private:
  std::coroutine_handle<promise_type> handle_;
};

// A value delivered later. Copies share one state.
template <typename T>
class Future {
 public:
  struct State {
    Scheduler* scheduler = nullptr;
    std::optional<T> value;
    std::vector<std::function<void()>> on_ready;
    // Coroutines suspended on it (and WhenAny/WhenAll waiting for it) since it was created;
    // read only while it is unresolved, by the "__stack_trace" query (awaited or merely
    // started). One increment per suspension: the whole cost of knowing it.
    int waiters = 0;
  };

  Future() = default;
  explicit Future(std::shared_ptr<State> state) : state_(std::move(state)) {}
  static Future Ready(Scheduler* scheduler, T value) {
    auto state = std::make_shared<State>();
    state->scheduler = scheduler;
    state->value.emplace(std::move(value));
    return Future(std::move(state));
  }

  bool ready() const { return state_ && state_->value.has_value(); }
  // Unresolved, and a coroutine (or WhenAny/WhenAll) waits for it.
  bool awaited() const { return !ready() && state_ && state_->waiters > 0; }
  const T& value() const { return *state_->value; }

  // Resolves once; later calls are ignored. Waiters are queued, not resumed here.
  void Resolve(T value) const {
    if (state_->value.has_value()) return;
    state_->value.emplace(std::move(value));
    auto callbacks = std::move(state_->on_ready);
    state_->on_ready.clear();
    for (auto& callback : callbacks) callback();
  }
  // Runs `callback` when resolved (at once if it is).
  void OnReady(std::function<void()> callback) const {
    if (ready()) {
      callback();
    } else {
      state_->on_ready.push_back(std::move(callback));
    }
  }

  bool await_ready() const noexcept { return ready(); }
  void await_suspend(std::coroutine_handle<> awaiting) const {
    Scheduler* scheduler = state_->scheduler;
    ++state_->waiters;
    state_->on_ready.push_back([scheduler, awaiting] { scheduler->Schedule(awaiting); });
  }
  T await_resume() const { return *state_->value; }

  const std::shared_ptr<State>& state() const { return state_; }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace kiln::sdk
