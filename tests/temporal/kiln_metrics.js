// What an orchestrator's /metrics says its RPCs were: kiln_rpc_requests_total summed by method
// (recorded before each answer goes out). Read by temporal_protocol.js and by the TypeScript
// benchmark (bench/temporal), which copy this file beside themselves.
const http = require('http');

// `metrics` is the orchestrator's --metrics HOST:PORT.
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

module.exports = { rpcCounts };
