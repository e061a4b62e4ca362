// The engine calls one Temporal workflow costs on Kiln: a worker and a client of Temporal's
// TypeScript SDK (its defaults: sticky cache, eager activities) run one-activity workflows one
// after the other; the engine's RPCs over those workflows are read from the orchestrator's
// /metrics (kiln_rpc_requests_total, recorded before each answer goes out) while the worker
// runs, so its start-up and shutdown polls are not counted. Prints one JSON line: the calls per
// workflow by method.
// Usage: node temporal_protocol.js ADDRESS TOKEN METRICS_HOST:PORT
const { Runtime, DefaultLogger } = require('@temporalio/worker');
const { startOneActivity, rpcCounts } = require('./one_activity');

const [address, token, metrics] = process.argv.slice(2);
const taskQueue = 'temporal-protocol-test';
const workflows = 10;

Runtime.install({ logger: new DefaultLogger('WARN') });

async function main() {
  const { worker, run, close } = await startOneActivity({ address, token, taskQueue, idPrefix: 'protocol' });
  const report = {};
  await worker.runUntil(async () => {
    await run(); // the worker's pollers are up and its workflow bundle is loaded
    const before = await rpcCounts(metrics);
    for (let i = 0; i < workflows; i++) {
      if ((await run()) !== 'x') throw new Error('the activity did not return its input');
    }
    const after = await rpcCounts(metrics);
    const perWorkflow = {};
    for (const method of Object.keys(after).sort()) {
      const calls = after[method] - (before[method] || 0);
      if (calls > 0) perWorkflow[method] = calls / workflows;
    }
    report.per_workflow = perWorkflow;
  });
  await close();
  console.log(JSON.stringify(report));
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`temporal_protocol.js: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
