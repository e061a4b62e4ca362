// The workflow the Temporal SDK test runs on Kiln: an activity, a timer, a signal it waits
// for, and a query that reports where it is.
const wf = require('@temporalio/workflow');

const { greet } = wf.proxyActivities({ startToCloseTimeout: '30 seconds' });
const approve = wf.defineSignal('approve');
const status = wf.defineQuery('status');

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

module.exports = { greeting };
