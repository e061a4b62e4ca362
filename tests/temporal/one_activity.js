// A Temporal TypeScript worker and client running one-activity workflows on Kiln's Temporal API
// (one_activity_workflow.js), and what the orchestrator's /metrics says its RPCs were. Used by
// temporal_protocol.js and by the TypeScript benchmark (bench/temporal), which copy this file
// and the workflow beside themselves.
const http = require('http');
const path = require('path');
const { NativeConnection, Worker } = require('@temporalio/worker');
const { Connection, Client } = require('@temporalio/client');

// A worker on `taskQueue` (the SDK's defaults: sticky cache, eager activities), `run()`, which
// starts a workflow (ids `${idPrefix}-N`) and waits for its result, and `close()` for the
// connections once the worker has stopped.
async function startOneActivity({ address, token, taskQueue, idPrefix }) {
  const options = { address, apiKey: token, tls: false };
  const workerConnection = await NativeConnection.connect(options);
  const worker = await Worker.create({
    connection: workerConnection,
    namespace: 'default',
    taskQueue,
    workflowsPath: path.join(__dirname, 'one_activity_workflow.js'),
    activities: { async echo(input) { return input; } },
  });
  const connection = await Connection.connect(options);
  const client = new Client({ connection, namespace: 'default' });
  let next = 0;
  const run = () =>
    client.workflow.execute('oneActivity', { taskQueue, workflowId: `${idPrefix}-${next++}`, args: ['x'] });
  const close = async () => {
    await connection.close();
    await workerConnection.close();
  };
  return { worker, run, close };
}

// kiln_rpc_requests_total summed by method (recorded before each answer goes out); `metrics`
// is the orchestrator's --metrics HOST:PORT.
function rpcCounts(metrics) {
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

module.exports = { startOneActivity, rpcCounts };
