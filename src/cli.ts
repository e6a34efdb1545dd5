#!/usr/bin/env node
import { isIP } from 'node:net';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseDuration } from './config/durations.ts';
import { formatIssue } from './config/format-issue.ts';
import { loadConfig } from './config/load-config.ts';
import { type SettingFlags, SettingsError } from './config/runtime-settings.ts';
import type { AccessLogFormat } from './config/validate-access-log.ts';
import { endpointProblem } from './config/validate-tracing.ts';
import { runDemo } from './demo/demo.ts';
import type { EngineName } from './listener/listener-types.ts';
import { InvalidConfigError, type RunningProxy, runProxy } from './main.ts';
import { runExplain } from './router/explain-output.ts';
import { LOG_LEVELS, type LogLevel } from './telemetry/logger.ts';
import {
  CA_FILES,
  loadCaFiles,
  type OutputFile,
  WORKLOAD_FILES,
  writeOutputFiles,
} from './tls/identity-source.ts';
import { createRootCa, issueWorkloadCertificate, KEY_TYPES, type KeyType } from './tls/pki.ts';
import { spiffeId } from './tls/spiffe.ts';
import { VERSION } from './version.ts';

/**
 * Process contract (design.md): exit 0 on a clean stop, 1 on a runtime failure, 2 on invalid
 * configuration or arguments. Logs are JSON lines on stderr.
 */
const EXIT_RUNTIME = 1;
const EXIT_INVALID = 2;

function port(value: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) {
    throw new InvalidArgumentError('must be a port number 0-65535 (0 picks a free port)');
  }
  return Number(value);
}

function ipAddress(value: string): string {
  if (isIP(value) === 0) throw new InvalidArgumentError('must be an IP address (e.g. 127.0.0.1 or 0.0.0.0)');
  return value;
}

function fatal(msg: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(
    `${JSON.stringify({ time: new Date().toISOString(), level: 'error', msg, ...fields })}\n`,
  );
}

interface RunCliOptions {
  config?: string;
  outboundPort?: number;
  inboundPort?: number;
  adminPort?: number;
  adminHost?: string;
  app?: string;
  namespace?: string;
  logLevel?: LogLevel;
  engine?: EngineName;
  drainTimeout?: number;
  accessLog?: boolean | string;
  accessLogFormat?: AccessLogFormat;
  tracingEndpoint?: string;
  tracingSampling?: number;
  trustDomain?: string;
  serviceAccount?: string;
  identityDir?: string;
}

function flagsOf(o: RunCliOptions): SettingFlags {
  return {
    ...(o.outboundPort !== undefined && { outboundPort: o.outboundPort }),
    ...(o.inboundPort !== undefined && { inboundPort: o.inboundPort }),
    ...(o.adminPort !== undefined && { adminPort: o.adminPort }),
    ...(o.adminHost !== undefined && { adminHost: o.adminHost }),
    ...(o.app !== undefined && { app: o.app }),
    ...(o.namespace !== undefined && { namespace: o.namespace }),
    ...(o.logLevel !== undefined && { logLevel: o.logLevel }),
    ...(o.engine !== undefined && { engine: o.engine }),
    ...(o.drainTimeout !== undefined && { drainTimeoutMs: o.drainTimeout }),
    ...(o.accessLog !== undefined && { accessLog: o.accessLog }),
    ...(o.accessLogFormat !== undefined && { accessLogFormat: o.accessLogFormat }),
    ...(o.tracingEndpoint !== undefined && { tracingEndpoint: o.tracingEndpoint }),
    ...(o.tracingSampling !== undefined && { tracingSampling: o.tracingSampling }),
    ...(o.trustDomain !== undefined && { trustDomain: o.trustDomain }),
    ...(o.serviceAccount !== undefined && { serviceAccount: o.serviceAccount }),
    ...(o.identityDir !== undefined && { identityDir: o.identityDir }),
  };
}

/** Starts the proxy and wires the process signals. Resolves once it serves. */
export async function serve(configPath: string, flags: SettingFlags): Promise<RunningProxy> {
  let proxy: RunningProxy;
  try {
    // Admin POST /shutdown ends the process the way SIGTERM does.
    proxy = await runProxy({ configPath, flags, onShutdownRequest: () => stop('admin /shutdown') });
  } catch (err) {
    if (err instanceof InvalidConfigError) {
      for (const issue of err.issues) process.stderr.write(`${formatIssue(issue)}\n`);
      fatal(err.message, { config: configPath });
      process.exit(EXIT_INVALID);
    }
    if (err instanceof SettingsError) {
      fatal(err.message);
      process.exit(EXIT_INVALID);
    }
    fatal('start-up failed', { error: err instanceof Error ? err.message : String(err) });
    process.exit(EXIT_RUNTIME);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    proxy.logger.log('info', `${signal}: draining`, { drain_timeout_ms: proxy.settings.drainTimeoutMs });
    proxy.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        fatal('shutdown failed', { error: String(err) });
        process.exit(EXIT_RUNTIME);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    proxy.logger.log('info', 'SIGHUP: reloading configuration');
    void proxy.reload();
  });
  return proxy;
}

/** A positive Go duration (`24h`, `90m`) in ms, for --ttl and --validity. */
function positiveDuration(value: string): number {
  const d = parseDuration(value);
  if (!d.ok) throw new InvalidArgumentError(d.message);
  if (!(d.ms >= 1000)) throw new InvalidArgumentError('must be at least 1s');
  return d.ms;
}

/** A trust domain, namespace or service account that cannot form a SPIFFE id is a bad argument (exit 2). */
function idOrExit(td: string, ns: string, sa: string): ReturnType<typeof spiffeId> {
  try {
    return spiffeId(td, ns, sa);
  } catch (err) {
    fatal(err instanceof Error ? err.message : String(err));
    process.exit(EXIT_INVALID);
  }
}

/** Runs a CA command body: failures (unreadable CA, existing files) exit 1 with the error. */
async function caAction(what: string, body: () => Promise<string[]>): Promise<void> {
  let lines: string[];
  try {
    lines = await body();
  } catch (err) {
    fatal(`${what} failed`, { error: err instanceof Error ? err.message : String(err) });
    process.exit(EXIT_RUNTIME);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

const keyTypeOption = (): Option =>
  new Option('--key-type <type>', 'key type (default ec-p256; see npm run bench:tls-keys)').choices(
    KEY_TYPES,
  );

/** `meshlet ca init|issue`: a mesh root CA and workload certificates, as files. */
function addCaCommands(program: Command): void {
  const ca = program.command('ca').description('make a mesh CA and workload certificates (files)');
  ca.command('init')
    .description(`create a root CA: ${CA_FILES.cert} and ${CA_FILES.key} (mode 0600) in --out`)
    .requiredOption('--trust-domain <domain>', 'SPIFFE trust domain, e.g. cluster.local')
    .requiredOption('--out <dir>', 'directory to write to (created if missing)')
    .option('--validity <duration>', 'CA lifetime (default 87600h, 10 years)', positiveDuration)
    .addOption(keyTypeOption())
    .option('--force', 'replace existing files (a new key: certificates issued before no longer verify)')
    .action(
      async (o: {
        trustDomain: string;
        out: string;
        validity?: number;
        keyType?: KeyType;
        force?: boolean;
      }) => {
        idOrExit(o.trustDomain, 'x', 'x');
        await caAction('ca init', async () => {
          const root = await createRootCa({
            trustDomain: o.trustDomain,
            ...(o.validity !== undefined && { validityMs: o.validity }),
            ...(o.keyType !== undefined && { keyType: o.keyType }),
          });
          const files: OutputFile[] = [
            { name: CA_FILES.key, data: root.keyPem, secret: true },
            { name: CA_FILES.cert, data: root.certPem, secret: false },
          ];
          const [keyPath, certPath] = writeOutputFiles(o.out, files, o.force === true);
          return [
            `wrote ${certPath} (root CA for trust domain ${root.trustDomain}, valid until ${new Date(root.cert.validTo).toISOString()})`,
            `wrote ${keyPath} (CA private key, mode 0600: keep it secret)`,
          ];
        });
      },
    );
  ca.command('issue')
    .description(
      `issue a workload certificate: ${WORKLOAD_FILES.cert}, ${WORKLOAD_FILES.key} (mode 0600) and ${WORKLOAD_FILES.bundle} (trust bundle) in --out`,
    )
    .requiredOption('--ca <dir>', `directory holding ${CA_FILES.cert} and ${CA_FILES.key} (from ca init)`)
    .requiredOption('--namespace <ns>', 'namespace of the workload')
    .requiredOption('--service-account <sa>', 'service account of the workload')
    .requiredOption('--out <dir>', 'directory to write to (created if missing)')
    .option('--ttl <duration>', 'certificate lifetime (default 24h)', positiveDuration)
    .option('--trust-domain <domain>', "trust domain (default: the CA's)")
    .addOption(keyTypeOption())
    .option('--force', 'replace existing files')
    .action(
      async (o: {
        ca: string;
        namespace: string;
        serviceAccount: string;
        out: string;
        ttl?: number;
        trustDomain?: string;
        keyType?: KeyType;
        force?: boolean;
      }) => {
        if (o.trustDomain !== undefined) idOrExit(o.trustDomain, o.namespace, o.serviceAccount);
        await caAction('ca issue', async () => {
          const authority = loadCaFiles(join(o.ca, CA_FILES.cert), join(o.ca, CA_FILES.key), o.trustDomain);
          const id = idOrExit(authority.trustDomain, o.namespace, o.serviceAccount);
          const cert = await issueWorkloadCertificate(authority, id, {
            ...(o.ttl !== undefined && { ttlMs: o.ttl }),
            ...(o.keyType !== undefined && { keyType: o.keyType }),
          });
          const [keyPath, certPath, bundlePath] = writeOutputFiles(
            o.out,
            [
              { name: WORKLOAD_FILES.key, data: cert.keyPem, secret: true },
              { name: WORKLOAD_FILES.cert, data: cert.certChainPem, secret: false },
              { name: WORKLOAD_FILES.bundle, data: authority.certPem, secret: false },
            ],
            o.force === true,
          );
          return [
            `wrote ${certPath} (${id.uri}, valid until ${cert.notAfter.toISOString()})`,
            `wrote ${keyPath} (private key, mode 0600)`,
            `wrote ${bundlePath} (trust bundle: the CA certificate)`,
          ];
        });
      },
    );
}

export function buildCli(): Command {
  const program = new Command();
  program
    .name('meshlet')
    .description('A service-mesh data plane in one process, configured by Istio YAML from a file.')
    .version(VERSION, '-V, --version')
    .showHelpAfterError()
    .exitOverride((err) => {
      process.exit(err.exitCode === 0 ? 0 : EXIT_INVALID);
    });

  program
    .command('run')
    .description('run the proxy')
    .option('-c, --config <path>', 'configuration file or folder of *.yaml (env MESHLET_CONFIG)')
    .option('--outbound-port <port>', 'outbound listener port on 127.0.0.1 (default 15001)', port)
    .option('--inbound-port <port>', 'inbound listener port on 0.0.0.0 (default 15006)', port)
    .option('--app <host:port>', 'the local application that inbound traffic goes to')
    .option('--admin-port <port>', 'admin port on 127.0.0.1 (default 15000)', port)
    .option(
      '--admin-host <ip>',
      'address the admin port binds (default 127.0.0.1; 0.0.0.0 for probes and scrapes from outside the pod)',
      ipAddress,
    )
    .option('--namespace <ns>', 'namespace of this workload (default "default")')
    .addOption(new Option('--log-level <level>', 'log level (default info)').choices(LOG_LEVELS))
    .addOption(
      new Option(
        '--engine <engine>',
        'listener engine: h1 (default), node, or uws (no absolute-form targets, see README)',
      ).choices(['h1', 'uws', 'node']),
    )
    .option('--drain-timeout <ms>', 'how long SIGTERM waits for in-flight requests (default 10000)', (v) => {
      if (!/^\d+$/.test(v)) throw new InvalidArgumentError('must be milliseconds');
      return Number(v);
    })
    .option('--access-log [dest]', 'access log destination: - (stdout, the default), a file path, or off')
    .option('--no-access-log', 'no access log')
    .addOption(
      new Option(
        '--access-log-format <format>',
        'access log format: json (default) or text (Envoy default)',
      ).choices(['json', 'text']),
    )
    .option(
      '--tracing-endpoint <url>',
      'OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:4318/v1/traces); enables tracing',
      (v) => {
        const problem = endpointProblem(v);
        if (problem !== null) throw new InvalidArgumentError(problem);
        return v;
      },
    )
    .option('--tracing-sampling <percent>', 'share of new traces recorded, 0-100 (default 1)', (v) => {
      const n = Number(v);
      if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 100)
        throw new InvalidArgumentError('must be a percentage from 0 to 100');
      return n;
    })
    .option('--trust-domain <domain>', 'SPIFFE trust domain of the mesh (default cluster.local)')
    .option('--service-account <sa>', 'service account of this workload (default "default")')
    .option(
      '--identity-dir <dir>',
      'workload identity from files managed outside meshlet: DIR/cert.pem, key.pem, ca.pem (as `meshlet ca issue` writes them)',
    )
    .action(async (o: RunCliOptions) => {
      const configPath = o.config ?? process.env['MESHLET_CONFIG'];
      if (configPath === undefined || configPath === '') {
        fatal('no configuration: pass --config PATH or set MESHLET_CONFIG');
        process.exit(EXIT_INVALID);
      }
      await serve(configPath, flagsOf(o));
    });

  program
    .command('validate')
    .description('check a configuration file or folder; exit 0 when valid, 2 with every problem listed')
    .argument('<path>', 'configuration file or folder')
    .option('--namespace <ns>', 'namespace for resources without one (default "default")')
    .action(async (path: string, o: { namespace?: string }) => {
      const bundle = await loadConfig(path, o.namespace === undefined ? {} : { namespace: o.namespace });
      for (const issue of bundle.issues) process.stdout.write(`${formatIssue(issue)}\n`);
      const errors = bundle.issues.filter((i) => i.severity === 'error').length;
      const warnings = bundle.issues.length - errors;
      const count =
        bundle.serviceEntries.length +
        bundle.virtualServices.length +
        bundle.destinationRules.length +
        bundle.sidecars.length +
        bundle.peerAuthentications.length +
        bundle.authorizationPolicies.length;
      process.stdout.write(
        `${path}: ${errors === 0 ? 'valid' : 'invalid'}: ${count} resource(s), ${errors} error(s), ${warnings} warning(s)\n`,
      );
      process.exit(errors === 0 ? 0 : EXIT_INVALID);
    });

  addCaCommands(program);

  program
    .command('explain')
    .description('how the outbound listener would route a request, without starting anything')
    .argument('<method>', 'request method, e.g. GET')
    .argument('<url>', 'absolute URL, e.g. http://reviews:9080/reviews/1 (its authority is the Host)')
    .option('-c, --config <path>', 'configuration file or folder of *.yaml (env MESHLET_CONFIG)')
    .option(
      '-H, --header <header>',
      "request header 'name: value' (repeatable; 'host: x' overrides the URL's authority)",
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option('--namespace <ns>', 'namespace of this workload (default "default")')
    .option('--identity-dir <dir>', 'as for run: explain mTLS as with a workload identity (no file is read)')
    .option('--trust-domain <domain>', 'as for run: SPIFFE trust domain of expected server identities')
    .option('--json', 'print one JSON object instead of text')
    .action(
      async (
        method: string,
        url: string,
        o: {
          config?: string;
          header: string[];
          namespace?: string;
          identityDir?: string;
          trustDomain?: string;
          json?: boolean;
        },
      ) => {
        const config = o.config ?? process.env['MESHLET_CONFIG'];
        if (config === undefined || config === '') {
          process.stderr.write(
            'meshlet explain: no configuration: pass --config PATH or set MESHLET_CONFIG\n',
          );
          process.exit(EXIT_INVALID);
        }
        const out = await runExplain({
          config,
          method,
          url,
          headers: o.header,
          json: o.json === true,
          ...(o.namespace !== undefined && { namespace: o.namespace }),
          ...(o.identityDir !== undefined && { identityDir: o.identityDir }),
          ...(o.trustDomain !== undefined && { trustDomain: o.trustDomain }),
        });
        process.stderr.write(out.stderr);
        process.stdout.write(out.stdout, () => process.exit(out.code));
      },
    );

  program
    .command('demo')
    .description('start a demo mesh: meshlet plus reviews v1/v2/v3 backends, with curl lines to try')
    .option('--outbound-port <port>', 'outbound listener port (default 15001)', port)
    .option('--admin-port <port>', 'admin port (default 15000)', port)
    .addOption(new Option('--engine <engine>', 'listener engine').choices(['uws', 'node']))
    .action(async (o: { outboundPort?: number; adminPort?: number; engine?: EngineName }) => {
      await runDemo(o);
    });
  return program;
}

buildCli()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    fatal('failed', { error: err instanceof Error ? err.message : String(err) });
    process.exit(EXIT_RUNTIME);
  });
