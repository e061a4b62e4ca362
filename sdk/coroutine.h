// The coroutine types workflow code is written with. A workflow runs on one thread, driven by
// its WorkflowInstance: nothing here locks, and nothing resumes on its own — a resolved Future
// queues its waiters on the instance's scheduler, which resumes them in order. That makes a
// workflow's execution a pure function of its history.
//
//   Task<T>    a lazy coroutine: it starts when awaited and resumes its awaiter when done.
//   Future<T>  a value the engine will deliver (an activity result, a timer); awaitable by any
//              number of coroutines.
#pragma once

#include <algorithm>
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
    // What runs at resolution. An entry with an owner (OnReadyWhileAlive) is dropped, unrun,
    // once its owner is gone: a long-pending future passed to WhenAny in a loop would
    // otherwise collect one callback per iteration.
    struct Callback {
      std::function<void()> run;
      std::weak_ptr<const void> owner;
      bool owned = false;
    };
    std::vector<Callback> on_ready;
    // on_ready's size at which entries whose owner is gone are next swept (amortized O(1)).
    size_t sweep_at = 16;
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
    for (auto& callback : callbacks) {
      if (!callback.owned || !callback.owner.expired()) callback.run();
    }
  }
  // Runs `callback` when resolved (at once if it is).
  void OnReady(std::function<void()> callback) const {
    if (ready()) {
      callback();
    } else {
      Add({std::move(callback), {}, false});
    }
  }
  // As OnReady, but only while `owner` lives: once it is gone the callback is dropped without
  // running (WhenAny: the input's callback matters only while its result future is held).
  void OnReadyWhileAlive(std::weak_ptr<const void> owner, std::function<void()> callback) const {
    if (ready()) {
      if (!owner.expired()) callback();
    } else {
      Add({std::move(callback), std::move(owner), true});
    }
  }
  // Callbacks waiting now (for tests of the bound above).
  size_t pending_callbacks() const { return state_ ? state_->on_ready.size() : 0; }

  bool await_ready() const noexcept { return ready(); }
  void await_suspend(std::coroutine_handle<> awaiting) const {
    Scheduler* scheduler = state_->scheduler;
    ++state_->waiters;
    Add({[scheduler, awaiting] { scheduler->Schedule(awaiting); }, {}, false});
  }
  T await_resume() const { return *state_->value; }

  const std::shared_ptr<State>& state() const { return state_; }

 private:
  void Add(typename State::Callback callback) const {
    auto& callbacks = state_->on_ready;
    if (callbacks.size() >= state_->sweep_at) {
      std::erase_if(callbacks,
                    [](const typename State::Callback& c) { return c.owned && c.owner.expired(); });
      state_->sweep_at = std::max<size_t>(16, 2 * callbacks.size());
    }
    callbacks.push_back(std::move(callback));
  }

  std::shared_ptr<State> state_;
};

}  // namespace kiln::sdk
