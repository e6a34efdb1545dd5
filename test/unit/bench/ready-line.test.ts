import t from 'tap';
import { parseReadyLine } from '../../../bench/ready-line.ts';

t.test('the ready line gives the admin port and the listeners; other lines give null', async (t) => {
  const line = JSON.stringify({
    level: 'info',
    msg: 'meshlet ready',
    admin: { host: '127.0.0.1', port: 15000 },
    listeners: [{ name: 'outbound', host: '127.0.0.1', port: 15001, engine: 'h1' }],
  });
  t.same(parseReadyLine(line), {
    admin: 15000,
    listeners: [{ name: 'outbound', host: '127.0.0.1', port: 15001, engine: 'h1' }],
  });
  t.equal(parseReadyLine('not json'), null);
  t.equal(parseReadyLine('null'), null);
  t.equal(parseReadyLine(JSON.stringify({ msg: 'configuration applied' })), null);
  t.equal(parseReadyLine(JSON.stringify({ msg: 'meshlet ready', listeners: [] })), null, 'no admin port');
  t.equal(parseReadyLine(JSON.stringify({ msg: 'meshlet ready', admin: { port: 1 } })), null, 'no listeners');
});
