// Temporal's TypeScript SDK against kiln-orchestrator's Temporal API: a worker and a client in
// one process run greeting (workflows.js) to its end and print what they saw as one JSON line.
// Usage: node temporal_sdk.js ADDRESS TOKEN WORKFLOW_ID   (TASK_QUEUE from the environment)
const path = require('path');
const { NativeConnection, Worker, Runtime, DefaultLogger } = require('@temporalio/worker');
const { Connection, Client } = require('@temporalio/client');

const [address, token, workflowId] = process.argv.slice(2);
const taskQueue = process.env.TASK_QUEUE || 'temporal-sdk-test';
const deadline = Date.now() + 60_000;

Runtime.install({ logger: new DefaultLogger('WARN') });

async function until(what, check) {
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function main() {
  const report = {};
  const workerConnection = await NativeConnection.connect({ address, apiKey: token, tls: false });
  const worker = await Worker.create({
    connection: workerConnection,
    namespace: 'default',
    taskQueue,
    workflowsPath: path.join(__dirname, 'workflows.js'),
    activities: {
      async greet(name) {
        return `Hello, ${name}`;
      },
    },
  });
  const connection = await Connection.connect({ address, apiKey: token, tls: false });
  const client = new Client({ connection, namespace: 'default' });

  await worker.runUntil(async () => {
    const handle = await client.workflow.start('greeting', {
      taskQueue,
      workflowId,
      args: ['Kiln'],
    });
    report.run_id = handle.firstExecutionRunId;
    // The query runs the workflow's code on the worker: it says when the timer has fired.
    report.query = await until('the workflow to wait for its signal', async () => {
      const state = await handle.query('status');
      return state === 'waiting' ? state : undefined;
    });
    await handle.signal('approve', 'the test');
    report.result = await handle.result();
    const description = await handle.describe();
    report.status = description.status.name;
    report.task_queue = description.taskQueue;
    report.final_query = await handle.query('status');
    const history = await handle.fetchHistory();
    report.events = history.events.map((e) => Number(e.eventType));
    // What the SDK recorded on its first workflow task (its flags, name and version) came back.
    const completed = history.events.find((e) => e.workflowTaskCompletedEventAttributes);
    const metadata = completed.workflowTaskCompletedEventAttributes.sdkMetadata || {};
    report.sdk_flags = (metadata.coreUsedFlags || []).length + (metadata.langUsedFlags || []).length;
    report.sdk_name = metadata.sdkName || '';
  });
  // What Kiln does not serve: a namespace it lacks, a method it does not implement.
  const codeOf = async (call) => {
    try {
      await call();
      return 'no error';
    } catch (err) {
      return err;
    }
  };
  const ns = await codeOf(() => connection.workflowService.describeNamespace({ namespace: 'nope' }));
  report.unknown_namespace = ns.code;
  const schedules = await codeOf(() =>
    connection.workflowService.listSchedules({ namespace: 'default' }),
  );
  report.unimplemented = schedules.message;
  await connection.close();
  await workerConnection.close();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`temporal_sdk.js: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
