// Temporal's TypeScript SDK against kiln-orchestrator's Temporal API over mutual TLS: the
// client's connection (grpc-js) and the worker's (the SDK's Rust core) with the server's CA, a
// client certificate and a token; then without the certificate and without the token. Prints
// what each saw as one JSON line.
// Usage: node temporal_tls.js ADDRESS TOKEN CA_PEM CLIENT_PEM CLIENT_KEY
const fs = require('fs');
const { NativeConnection } = require('@temporalio/worker');
const { Connection } = require('@temporalio/client');

const [address, token, caPem, clientPem, clientKey] = process.argv.slice(2);
const serverRootCACertificate = fs.readFileSync(caPem);
const clientCertPair = { crt: fs.readFileSync(clientPem), key: fs.readFileSync(clientKey) };

// The gRPC status code a call ended with, 'no connection', or 'ok'.
async function outcome(call) {
  try {
    await call();
    return 'ok';
  } catch (err) {
    const cause = err.cause || err;
    if (cause.code !== undefined) return cause.code;
    return /Failed to connect/.test(String(err)) ? 'no connection' : String(err);
  }
}

async function main() {
  const report = {};
  const client = await Connection.connect({
    address,
    apiKey: token,
    tls: { serverRootCACertificate, clientCertPair },
  });
  const ns = await client.workflowService.describeNamespace({ namespace: 'default' });
  report.client = ns.namespaceInfo.name;
  await client.close();
  const worker = await NativeConnection.connect({
    address,
    apiKey: token,
    tls: { serverRootCACertificate, clientCertPair },
  });
  const info = await worker.workflowService.getSystemInfo({});
  report.worker = info.capabilities.sdkMetadata ? 'sdk_metadata' : 'no capabilities';
  await worker.close();
  report.without_certificate = await outcome(async () => {
    const c = await Connection.connect({
      address,
      apiKey: token,
      tls: { serverRootCACertificate },
      connectTimeout: '500ms',
    });
    await c.workflowService.describeNamespace({ namespace: 'default' });
  });
  report.without_token = await outcome(async () => {
    const c = await Connection.connect({ address, tls: { serverRootCACertificate, clientCertPair } });
    await c.workflowService.describeNamespace({ namespace: 'default' });
  });
  report.plain_text = await outcome(async () => {
    const c = await Connection.connect({ address, apiKey: token, tls: false, connectTimeout: '500ms' });
    await c.workflowService.describeNamespace({ namespace: 'default' });
  });
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    const cause = err && err.cause ? `\ncaused by: ${err.cause.stack || err.cause}` : '';
    process.stderr.write(`temporal_tls.js: ${err && err.stack ? err.stack : err}${cause}\n`);
    process.exit(1);
  },
);
