// Temporal's TypeScript SDK against kiln-orchestrator's Temporal API: workers and a client in
// one process run the workflows of workflows.js, restart a worker mid-workflow, replay what
// Kiln recorded, and print what they saw as one JSON line.
// Usage: node temporal_sdk.js ADDRESS TOKEN WORKFLOW_ID   (TASK_QUEUE from the environment)
const path = require('path');
const {
  NativeConnection,
  Worker,
  Runtime,
  DefaultLogger,
  bundleWorkflowCode,
} = require('@temporalio/worker');
const { Connection, Client } = require('@temporalio/client');
const { Context } = require('@temporalio/activity');
const { defineSearchAttributeKey } = require('@temporalio/common');

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

let client; // the test's client; the local activity of lateSignal signals through it
let activityCancelled = 'not cancelled'; // what untilCancelled saw
let lateSignalSent = false;
let memoRunId; // the memo run before it was reset

const activities = {
  async greet(name) {
    return `Hello, ${name}`;
  },
  // Fails its first attempt: the engine retries it.
  async flaky() {
    const { attempt } = Context.current().info;
    if (attempt < 2) throw new Error(`attempt ${attempt} fails`);
    return attempt;
  },
  async beat(n) {
    for (let i = 1; i <= n; i++) Context.current().heartbeat(i);
    return n;
  },
  // Overrun their timeouts (Context.sleep ends early when the activity is cancelled).
  async stall(ms) {
    await Context.current().sleep(ms);
  },
  async beatThenStall(ms) {
    Context.current().heartbeat();
    await Context.current().sleep(ms);
  },
  // Heartbeats until the heartbeat's answer says the workflow cancelled it.
  async untilCancelled() {
    const ctx = Context.current();
    try {
      for (;;) {
        ctx.heartbeat();
        await ctx.sleep(100);
      }
    } catch (err) {
      activityCancelled = err.name;
      throw err;
    }
  },
  // Once only: the workflow task that runs it again (after the engine refused the completion
  // that missed the signal) must not signal again.
  async signalOnce(workflowId) {
    if (lateSignalSent) return;
    lateSignalSent = true;
    await client.workflow.getHandle(workflowId).signal('approve', 'a late signal');
  },
  async pause(ms) {
    await new Promise((resolve) => setTimeout(resolve, ms));
  },
};

async function main() {
  const report = {};
  const workerConnection = await NativeConnection.connect({ address, apiKey: token, tls: false });
  // Bundled once (webpack, a few seconds) for every worker and the replayer.
  const workflowBundle = await bundleWorkflowCode({
    workflowsPath: path.join(__dirname, 'workflows.js'),
    logger: Runtime.instance().logger,
  });
  const makeWorker = () =>
    Worker.create({
      connection: workerConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle,
      activities,
    });
  const worker = await makeWorker();
  const connection = await Connection.connect({ address, apiKey: token, tls: false });
  client = new Client({ connection, namespace: 'default' });

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

    // Activity retries (RespondActivityTaskFailed) and heartbeats.
    report.retries = await client.workflow.execute('retries', {
      taskQueue,
      workflowId: `${workflowId}-retries`,
    });
    // A child workflow; continue-as-new (the client follows the chain of runs).
    report.parent = await client.workflow.execute('parent', {
      taskQueue,
      workflowId: `${workflowId}-parent`,
    });
    report.looper = await client.workflow.execute('looper', {
      taskQueue,
      workflowId: `${workflowId}-looper`,
      args: [2],
    });
    // Signal-with-start, then terminate.
    const terminated = await client.workflow.signalWithStart('waiter', {
      taskQueue,
      workflowId: `${workflowId}-terminated`,
      signal: 'approve',
      signalArgs: [],
    });
    await terminated.terminate('the test is done with it');
    report.terminated = (await terminated.describe()).status.name;
    // Start, then cancel: the workflow's timer is cancelled and the run closes as canceled.
    const canceled = await client.workflow.start('waiter', {
      taskQueue,
      workflowId: `${workflowId}-canceled`,
    });
    await canceled.cancel();
    report.canceled = await canceled.result().then(
      () => 'completed',
      (err) => (err.cause ? err.cause.name : err.name),
    );
    // The visibility query language is Kiln's, with Temporal's field names.
    const listed = [];
    for await (const info of client.workflow.list({ query: `WorkflowId = "${workflowId}"` })) {
      listed.push(`${info.workflowId}:${info.status.name}`);
    }
    report.listed = listed;
    report.count = (await client.workflow.count('ExecutionStatus = "Completed"')).count;

    // Together, to keep the test short: activity timeouts of each kind; an activity cancelled by
    // its workflow; a workflow task that fails and is retried; a completion refused because a
    // signal arrived while its task ran; search attributes.
    const run = (type, suffix, options = {}) =>
      client.workflow.execute(type, { taskQueue, workflowId: `${workflowId}-${suffix}`, ...options });
    const keyword = (name) => defineSearchAttributeKey(name, 'KEYWORD');
    const [timeouts, cancelled, flaky, late, , longLocal, memo] = await Promise.all([
      run('timeouts', 'timeouts'),
      run('cancelActivity', 'cancel-activity'),
      // The SDK reports a task's first failure only; a later attempt that fails again is left
      // to time out, so a short task timeout keeps this quick.
      run('flakyTask', 'flaky-task', { workflowTaskTimeout: '1 second' }),
      run('lateSignal', 'late-signal'),
      run('tagged', 'tagged', {
        typedSearchAttributes: [
          { key: keyword('CustomerId'), value: 'acme' },
          { key: defineSearchAttributeKey('Priority', 'INT'), value: 3 },
          { key: keyword('Discount'), value: 'spring' },
        ],
        searchAttributes: { Region: ['eu'] },
      }),
      // Longer than the task timeout: kept alive by workflow task heartbeats.
      run('longLocal', 'long-local', { workflowTaskTimeout: '2 seconds', args: [3500] }),
      run('memo', 'memo', { memo: { team: 'build', draft: 'v1' } }),
    ]);
    report.timeouts = timeouts;
    report.cancelled = cancelled;
    report.activity_saw = activityCancelled;
    const cancelHistory = await client.workflow.getHandle(`${workflowId}-cancel-activity`).fetchHistory();
    report.cancel_events = cancelHistory.events.map((e) => Number(e.eventType));
    report.flaky = flaky;
    const flakyHistory = await client.workflow.getHandle(`${workflowId}-flaky-task`).fetchHistory();
    report.flaky_events = flakyHistory.events.map((e) => Number(e.eventType));
    // The attempt that completed, as its WorkflowTaskScheduled recorded it.
    const flakyScheduled = flakyHistory.events.filter((e) => e.workflowTaskScheduledEventAttributes);
    report.flaky_attempt = flakyScheduled.pop().workflowTaskScheduledEventAttributes.attempt;
    report.late = late;
    const lateHistory = await client.workflow.getHandle(`${workflowId}-late-signal`).fetchHistory();
    report.late_events = lateHistory.events.map((e) => Number(e.eventType));
    const tagged = await client.workflow.getHandle(`${workflowId}-tagged`).describe();
    report.search_attributes = Object.fromEntries(
      tagged.typedSearchAttributes
        .getAll()
        .map((pair) => [pair.key.name, pair.value])
        .sort(),
    );
    const taggedIds = [];
    const query = 'CustomerId = "acme" AND Stage = "shipped" AND Priority >= 3 AND Region = "eu"';
    for await (const info of client.workflow.list({ query })) taggedIds.push(info.workflowId);
    report.tagged = taggedIds;
    report.long_local = longLocal;
    const longHistory = await client.workflow.getHandle(`${workflowId}-long-local`).fetchHistory();
    report.long_local_events = longHistory.events.map((e) => Number(e.eventType));
    // Sorted: a memo is a map, in no order.
    const sorted = (fields) => Object.fromEntries(Object.entries(fields || {}).sort());
    report.memo_seen = sorted(memo);
    const memoRun = client.workflow.getHandle(`${workflowId}-memo`);
    report.memo_described = sorted((await memoRun.describe()).memo);
    for await (const info of client.workflow.list({ query: `WorkflowId = "${workflowId}-memo"` })) {
      report.memo_listed = sorted(info.memo);
    }
    const memoHistory = await memoRun.fetchHistory();
    report.memo_events = memoHistory.events.map((e) => Number(e.eventType));
    // Reset through Temporal's API to the memo run's first workflow task (event 4, its
    // WorkflowTaskCompleted): the new run starts from the start's memo and runs again.
    memoRunId = (await memoRun.describe()).runId;
    const reset = await connection.workflowService.resetWorkflowExecution({
      namespace: 'default',
      workflowExecution: { workflowId: `${workflowId}-memo` },
      reason: 'the test resets it',
      workflowTaskFinishEventId: 4,
      requestId: `${workflowId}-memo-reset`,
    });
    const resetRun = client.workflow.getHandle(`${workflowId}-memo`, reset.runId);
    report.reset_result = sorted(await resetRun.result());
    report.reset_events = (await resetRun.fetchHistory()).events.map((e) => Number(e.eventType));
    // The queue the worker polls, described: its poller, and no backlog.
    const queue = await connection.workflowService.describeTaskQueue({
      namespace: 'default',
      taskQueue: { name: taskQueue },
      taskQueueType: 1, // TASK_QUEUE_TYPE_WORKFLOW
      reportStats: true,
    });
    report.queue_pollers = queue.pollers.length > 0 ? 'polled' : 'no poller';
    report.queue_backlog = Number(queue.stats.approximateBacklogCount);
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
  // Each answers UNIMPLEMENTED naming itself: updates, schedules, batch, Nexus, deployments.
  report.unimplemented_named = [];
  for (const method of [
    'updateWorkflowExecution',
    'createSchedule',
    'startBatchOperation',
    'pollNexusTaskQueue',
    'describeDeployment',
    'registerNamespace',
  ]) {
    const err = await codeOf(() => connection.workflowService[method]({ namespace: 'default' }));
    const name = method[0].toUpperCase() + method.slice(1);
    if (err.code === 12 && err.details.startsWith(`${name} is not implemented by Kiln`)) {
      report.unimplemented_named.push(name);
    } else {
      report.unimplemented_named.push(`${name}: ${err.code} ${err.details}`);
    }
  }
  // The namespaces --temporal-namespaces names: described and listed; a run in one of them.
  const billing = await connection.workflowService.describeNamespace({ namespace: 'billing' });
  report.billing = `${billing.namespaceInfo.name}:${billing.namespaceInfo.state}`;
  const namespaces = await connection.workflowService.listNamespaces({});
  report.namespaces = namespaces.namespaces.map((n) => n.namespaceInfo.name);
  const billingRun = await new Client({ connection, namespace: 'billing' }).workflow.start('waiter', {
    taskQueue: 'billing',
    workflowId: `${workflowId}-billing`,
  });
  report.billing_run = (await billingRun.describe()).status.name;
  await billingRun.terminate();
  report.billing_elsewhere = await codeOf(() =>
    client.workflow.getHandle(`${workflowId}-billing`).describe(),
  ).then((err) => err.name);
  // Tokens are required on the Temporal port as on Kiln's own: a call without one is refused.
  const anonymous = await codeOf(async () => {
    const bare = await Connection.connect({ address, tls: false });
    try {
      await bare.workflowService.describeNamespace({ namespace: 'default' });
    } finally {
      await bare.close();
    }
  });
  report.without_token = anonymous.cause ? anonymous.cause.code : String(anonymous);
  // A worker restarted mid-workflow: the run's next task goes to a new worker, which replays
  // it from its whole history (the first worker's cache went with it).
  const restarted = client.workflow.getHandle(`${workflowId}-restart`);
  await (await makeWorker()).runUntil(async () => {
    await client.workflow.start('greeting', {
      taskQueue,
      workflowId: `${workflowId}-restart`,
      args: ['again'],
    });
    await until('the restarted workflow to wait', async () =>
      (await restarted.query('status')) === 'waiting' ? true : undefined,
    );
  });
  await (await makeWorker()).runUntil(async () => {
    await restarted.signal('approve', 'a new worker');
    report.restarted = await restarted.result();
  });

  // The SDK's replayer, fed the histories Kiln recorded, finds them deterministic.
  const histories = [];
  const suffixes = ['', '-retries', '-canceled', '-restart', '-parent', '-looper', '-timeouts'];
  suffixes.push('-cancel-activity', '-flaky-task', '-late-signal', '-tagged', '-long-local', '-memo');
  for (const suffix of suffixes) {
    const id = `${workflowId}${suffix}`;
    histories.push({ workflowId: id, history: await client.workflow.getHandle(id).fetchHistory() });
  }
  // The memo run as it was before the reset (the id's current run is the reset one).
  const memoBefore = client.workflow.getHandle(`${workflowId}-memo`, memoRunId);
  histories.push({ workflowId: `${workflowId}-memo`, history: await memoBefore.fetchHistory() });
  report.replayed = [];
  for await (const replay of Worker.runReplayHistories({ workflowBundle }, histories)) {
    report.replayed.push(replay.error ? `${replay.workflowId}: ${replay.error}` : 'ok');
  }

  await connection.close();
  await workerConnection.close();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    const cause = err && err.cause ? `\ncaused by: ${err.cause.stack || err.cause}` : '';
    process.stderr.write(`temporal_sdk.js: ${err && err.stack ? err.stack : err}${cause}\n`);
    process.exit(1);
  },
);
