// The workflow one_activity.js runs: one activity that returns its input (the engine
// benchmark's scenario a).
const wf = require('@temporalio/workflow');

const { echo } = wf.proxyActivities({ startToCloseTimeout: '30 seconds' });

async function oneActivity(input) {
  return echo(input);
}

module.exports = { oneActivity };
