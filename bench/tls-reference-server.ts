/**
 * The reference row of `npm run bench:mtls` (b): a bare node:tls server doing what a meshlet STRICT
 * inbound port does at the TLS level (its certificate, client certificates requested and verified
 * against the mesh CA, the peer certificate read) and answering one tiny HTTP response per
 * connection itself. Its CPU per connection is what Node's TLS costs before meshlet adds anything.
 *
 *   node dist/bench/tls-reference-server.js <port> <cert.pem> <key.pem> <ca.pem>
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:tls';

const [port, certFile, keyFile, caFile] = process.argv.slice(2);
if (port === undefined || certFile === undefined || keyFile === undefined || caFile === undefined) {
  process.stderr.write('usage: tls-reference-server <port> <cert.pem> <key.pem> <ca.pem>\n');
  process.exit(2);
}
const body = '0123456789abcdef'.repeat(4);
const server = createServer(
  {
    cert: readFileSync(certFile),
    key: readFileSync(keyFile),
    ca: readFileSync(caFile),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  },
  (socket) => {
    socket.getPeerX509Certificate();
    socket.on('error', () => socket.destroy());
    socket.once('data', () =>
      socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`),
    );
  },
);
server.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
