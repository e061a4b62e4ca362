// A Temporal TypeScript SDK worker and client on kiln-orchestrator's Temporal API, measured as
// the engine benchmark measures Kiln's own SDK (docs/benchmarks.md): one-activity workflows,
// closed-loop callers each starting a workflow and waiting for its result; N sequential, then
// 16 and 64 callers for DURATION seconds each after a warm-up. CPU per workflow adds the
// orchestrator's and this process's CPU (user + system, /proc) over a phase.
// With METRICS (the orchestrator's host:port), the engine's RPCs per workflow by method over
// each throughput phase (kiln_rpc_requests_total: the frontend's in-process calls included).
// Usage: node temporal_ts_bench.js ADDRESS TOKEN ORCHESTRATOR_PID   (env: SEQ_N DUR_S CONCS METRICS)
const fs = require('fs');
const { performance } = require('perf_hooks');
const { Runtime, DefaultLogger } = require('@temporalio/worker');
const { startOneActivity, rpcCounts: kilnRpcCounts } = require('./one_activity');

const [address, token, orchestratorPid] = process.argv.slice(2);
const seqN = Number(process.env.SEQ_N || 300);
const durationS = Number(process.env.DUR_S || 10);
const concurrencies = (process.env.CONCS || '16,64').split(',').map(Number);
const taskQueue = 'temporal-ts-bench';

Runtime.install({ logger: new DefaultLogger('WARN') });

function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}
function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN;
}
function summary(latencies) {
  const s = Float64Array.from(latencies).sort();
  return { n: s.length, p50_ms: +percentile(s, 0.5).toFixed(2), p99_ms: +percentile(s, 0.99).toFixed(2) };
}

// kiln_rpc_requests_total summed by method, or {} without METRICS.
function rpcCounts() {
  return process.env.METRICS ? kilnRpcCounts(process.env.METRICS) : Promise.resolve({});
}

async function main() {
  const { worker, run: call, close } = await startOneActivity({ address, token, taskQueue, idPrefix: 'bench' });
  const cpu = () => cpuSeconds(orchestratorPid) + cpuSeconds(process.pid);

  await worker.runUntil(async () => {
    for (let i = 0; i < 20; i++) await call(); // warm-up: the bundle loaded, connections open
    const latencies = [];
    for (let i = 0; i < seqN; i++) {
      const t0 = performance.now();
      await call();
      latencies.push(performance.now() - t0);
    }
    console.log(JSON.stringify({ phase: 'sequential', ...summary(latencies) }));
    for (const callers of concurrencies) {
      const warm = performance.now() + 2000;
      await Promise.all(Array.from({ length: callers }, async () => {
        while (performance.now() < warm) await call();
      }));
      const lats = [];
      const rpcs0 = await rpcCounts();
      const cpu0 = cpu();
      const orch0 = cpuSeconds(orchestratorPid);
      const start = performance.now();
      const deadline = start + durationS * 1000;
      await Promise.all(Array.from({ length: callers }, async () => {
        while (performance.now() < deadline) {
          const t0 = performance.now();
          await call();
          lats.push(performance.now() - t0);
        }
      }));
      const elapsed = (performance.now() - start) / 1000;
      const rpcs1 = await rpcCounts();
      const rpcs = {};
      for (const [method, n] of Object.entries(rpcs1)) {
        const per = (n - (rpcs0[method] || 0)) / lats.length;
        if (per >= 0.01) rpcs[method] = +per.toFixed(2);
      }
      console.log(JSON.stringify({
        phase: `${callers} callers`,
        per_s: +(lats.length / elapsed).toFixed(1),
        cpu_us_per_workflow: Math.round(((cpu() - cpu0) * 1e6) / lats.length),
        orchestrator_cpu_us: Math.round(((cpuSeconds(orchestratorPid) - orch0) * 1e6) / lats.length),
        ...summary(lats),
        engine_rpcs_per_workflow: rpcs,
      }));
    }
  });
  await close();
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`temporal_ts_bench.js: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
