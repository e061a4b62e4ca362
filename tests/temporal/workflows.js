// The workflows the Temporal SDK test runs on Kiln.
const wf = require('@temporalio/workflow');

const { greet } = wf.proxyActivities({ startToCloseTimeout: '30 seconds' });
const { flaky, beat } = wf.proxyActivities({
  startToCloseTimeout: '30 seconds',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '100 milliseconds', backoffCoefficient: 1, maximumAttempts: 3 },
});
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

module.exports = { greeting, retries, waiter, child, parent, looper };
