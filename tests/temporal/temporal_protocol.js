// The engine calls one Temporal workflow costs on Kiln: a worker and a client of Temporal's
// TypeScript SDK (its defaults: sticky cache, eager activities) run one-activity workflows one
// after the other; the engine's RPCs over those workflows are read from the orchestrator's
// /metrics (kiln_rpc_requests_total, recorded before each answer goes out) while the worker
// runs, so its start-up and shutdown polls are not counted. Prints one JSON line: the calls per
// workflow by method.
// Usage: node temporal_protocol.js ADDRESS TOKEN METRICS_HOST:PORT
const http = require('http');
const path = require('path');
const { NativeConnection, Worker, Runtime, DefaultLogger } = require('@temporalio/worker');
const { Connection, Client } = require('@temporalio/client');

const [address, token, metrics] = process.argv.slice(2);
const taskQueue = 'temporal-protocol-test';
const workflows = 10;

Runtime.install({ logger: new DefaultLogger('WARN') });

// kiln_rpc_requests_total summed by method.
function rpcCounts() {
  return new Promise((resolve, reject) => {
    http.get(`http://${metrics}/metrics`, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => {
        const counts = {};
        for (const line of text.split('\n')) {
          const m = /^kiln_rpc_requests_total\{[^}]*method="([^"]+)"[^}]*\} ([0-9.e+]+)/.exec(line);
          if (m) counts[m[1]] = (counts[m[1]] || 0) + Number(m[2]);
        }
        resolve(counts);
      });
    }).on('error', reject);
  });
}

async function main() {
  const workerConnection = await NativeConnection.connect({ address, apiKey: token, tls: false });
  const worker = await Worker.create({
    connection: workerConnection,
    namespace: 'default',
    taskQueue,
    workflowsPath: path.join(__dirname, 'protocol_workflows.js'),
    activities: { async echo(input) { return input; } },
  });
  const connection = await Connection.connect({ address, apiKey: token, tls: false });
  const client = new Client({ connection, namespace: 'default' });
  let next = 0;
  const run = () =>
    client.workflow.execute('oneActivity', { taskQueue, workflowId: `protocol-${next++}`, args: ['x'] });
  const report = {};
  await worker.runUntil(async () => {
    await run(); // the worker's pollers are up and its workflow bundle is loaded
    const before = await rpcCounts();
    for (let i = 0; i < workflows; i++) {
      if ((await run()) !== 'x') throw new Error('the activity did not return its input');
    }
    const after = await rpcCounts();
    const perWorkflow = {};
    for (const method of Object.keys(after).sort()) {
      const calls = after[method] - (before[method] || 0);
      if (calls > 0) perWorkflow[method] = calls / workflows;
    }
    report.per_workflow = perWorkflow;
  });
  await connection.close();
  await workerConnection.close();
  console.log(JSON.stringify(report));
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`temporal_protocol.js: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
