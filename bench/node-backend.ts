/**
 * Fallback backend when nginx is not installed: `node node-backend.js <port>`.
 * Answers every request with 200 and the same 64-byte body the nginx backend sends.
 */
import { createServer } from 'node:http';
import { BODY } from './configs.ts';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('usage: node node-backend.js <port>\n');
  process.exit(2);
}

const body = Buffer.from(BODY);
const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.maxRequestsPerSocket = 0;
server.listen(port, '127.0.0.1');
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
