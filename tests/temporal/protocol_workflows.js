// The workflow temporal_protocol.js runs: one activity that returns its input (the benchmark's
// workflow, bench/temporal/workflows.js).
const wf = require('@temporalio/workflow');

const { echo } = wf.proxyActivities({ startToCloseTimeout: '30 seconds' });

async function oneActivity(input) {
  return echo(input);
}

module.exports = { oneActivity };
