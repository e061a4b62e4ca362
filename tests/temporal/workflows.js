// The workflows the Temporal SDK test runs on Kiln.
const wf = require('@temporalio/workflow');
const { defineSearchAttributeKey } = require('@temporalio/common');

const { greet } = wf.proxyActivities({ startToCloseTimeout: '30 seconds' });
const { flaky, beat } = wf.proxyActivities({
  startToCloseTimeout: '30 seconds',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '100 milliseconds', backoffCoefficient: 1, maximumAttempts: 3 },
});
const { stall, beatThenStall } = wf.proxyActivities({
  startToCloseTimeout: '10 seconds',
  retry: { maximumAttempts: 1 },
});
const { untilCancelled } = wf.proxyActivities({
  startToCloseTimeout: '30 seconds',
  heartbeatTimeout: '1 second',
  cancellationType: 'WAIT_CANCELLATION_COMPLETED',
});
const { signalOnce, pause } = wf.proxyLocalActivities({ startToCloseTimeout: '10 seconds' });
const approve = wf.defineSignal('approve');
const status = wf.defineQuery('status');

// An activity, a timer, a signal it waits for, and a query that reports where it is.
async function greeting(name) {
  let state = 'started';
  let approvedBy = null;
  wf.setHandler(status, () => state);
  wf.setHandler(approve, (who) => {
    approvedBy = who;
  });
  const hello = await greet(name);
  state = 'slept';
  await wf.sleep('1 second');
  state = 'waiting';
  await wf.condition(() => approvedBy !== null);
  state = 'done';
  return `${hello}, approved by ${approvedBy}`;
}

// An activity that fails its first attempt (retried), one that heartbeats.
async function retries() {
  const attempts = await flaky();
  const beats = await beat(3);
  return { attempts, beats };
}

// Waits for a signal that never comes: ended from outside (terminate, cancel).
async function waiter() {
  let signalled = false;
  wf.setHandler(approve, () => {
    signalled = true;
  });
  await wf.condition(() => signalled);
  await wf.sleep('1 hour');
}

// A child workflow, and its parent waiting for its result.
async function child(n) {
  return n * 2;
}
async function parent() {
  return wf.executeChild(child, { args: [21], workflowId: `${wf.workflowInfo().workflowId}-child` });
}

// Continues as new until n is 0: three runs of one workflow id.
async function looper(n) {
  if (n > 0) await wf.continueAsNew(n - 1);
  return `looped in run ${wf.workflowInfo().continuedFromExecutionRunId ? 'after' : 'first'}`;
}

// Each activity overruns one of its timeouts; the workflow reports each TimeoutFailure's type.
async function timeouts() {
  const outcome = (promise) =>
    promise.then(
      () => 'completed',
      (err) => (err.cause ? `${err.cause.name}:${err.cause.timeoutType}` : err.name),
    );
  const once = { retry: { maximumAttempts: 1 } };
  const startToClose = wf.proxyActivities({ ...once, startToCloseTimeout: '500 milliseconds' });
  const scheduleToClose = wf.proxyActivities({
    ...once,
    scheduleToCloseTimeout: '500 milliseconds',
    startToCloseTimeout: '10 seconds',
  });
  const heartbeat = wf.proxyActivities({
    ...once,
    startToCloseTimeout: '10 seconds',
    heartbeatTimeout: '500 milliseconds',
  });
  const [a, b, c] = await Promise.all([
    outcome(startToClose.stall(2000)),
    outcome(scheduleToClose.stall(2000)),
    outcome(heartbeat.beatThenStall(2000)),
  ]);
  return { start_to_close: a, schedule_to_close: b, heartbeat: c };
}

// Cancels a heartbeating activity once it runs, and waits for the activity to confirm.
async function cancelActivity() {
  const scope = new wf.CancellationScope();
  const running = scope.run(() => untilCancelled());
  await wf.condition(() => false, '1 second');
  scope.cancel();
  try {
    await running;
    return 'completed';
  } catch (err) {
    return `${err.name}:${err.cause ? err.cause.name : ''}:${wf.isCancellation(err)}`;
  }
}

// Search attributes given at the start, one added and one removed on the way.
async function tagged() {
  wf.upsertSearchAttributes([
    { key: defineSearchAttributeKey('Stage', 'KEYWORD'), value: 'shipped' },
    { key: defineSearchAttributeKey('Discount', 'KEYWORD'), value: null },
  ]);
  return 'tagged';
}

// Fails its workflow task (a plain Error, not a Temporal failure) until a second has passed:
// the SDK retries the task, the attempt after the engine's backoff completes it.
async function flakyTask() {
  const elapsed = Date.now() - wf.workflowInfo().startTime.getTime();
  if (elapsed < 1000) throw new Error(`not yet (${elapsed} ms)`);
  return 'recovered';
}

// A local activity signals this run while its workflow task is open, so the completion that
// follows would close the run without having seen the signal: the engine refuses it, and the
// next task (which has the signal) returns it.
async function lateSignal() {
  const seen = [];
  wf.setHandler(approve, (who) => {
    seen.push(who);
  });
  await signalOnce(wf.workflowInfo().workflowId);
  return seen;
}

// A local activity that outlives the workflow task timeout (2 s, set by the test): the SDK keeps
// the task alive with heartbeats (completions with force_create_new_workflow_task), each
// answered with a new task, until the activity's result is recorded.
async function longLocal(ms) {
  await pause(ms);
  return `paused ${ms} ms`;
}

// Memo given at the start, then changed by the workflow (upsertMemo: one field added, one
// removed); the workflow's own view of it is its result.
async function memo() {
  wf.upsertMemo({ stage: 'done', draft: null });
  return wf.workflowInfo().memo;
}

module.exports = {
  greeting,
  retries,
  waiter,
  child,
  parent,
  looper,
  timeouts,
  cancelActivity,
  tagged,
  flakyTask,
  lateSignal,
  longLocal,
  memo,
};
