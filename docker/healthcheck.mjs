// Container HEALTHCHECK for meshlet: exit 0 when the admin port answers GET /ready with 200, else 1.
// The runtime image has no curl, so this uses node:http. The admin port listens on 127.0.0.1 inside
// the container; set MESHLET_ADMIN_PORT when `run` is given another --admin-port (default 15000).
import { get } from 'node:http';

const port = Number(process.env.MESHLET_ADMIN_PORT ?? 15000);
const req = get({ host: '127.0.0.1', port, path: '/ready', timeout: 2000 }, (res) => {
  res.resume();
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on('timeout', () => req.destroy(new Error('timeout')));
req.on('error', () => process.exit(1));
