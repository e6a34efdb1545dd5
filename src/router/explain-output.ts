/**
 * `meshlet explain` output: the explanation as aligned plain text (no colors, so it reads the same
 * in a terminal, a pipe or a CI log) or as one JSON object, and the command's body (load, explain,
 * print, exit code) so the CLI file stays a thin wrapper.
 */
import { formatIssue } from '../config/format-issue.ts';
import { loadConfig } from '../config/load-config.ts';
import { resolveSettings, SettingsError } from '../config/runtime-settings.ts';
import {
  type ActionExplanation,
  buildRequest,
  type ClusterExplanation,
  type DestinationExplanation,
  type Explanation,
  explain,
  type RuleExplanation,
} from './explain.ts';

/** Width of the label column. */
const LABEL = 24;

function row(indent: number, label: string, value: string): string {
  return `${' '.repeat(indent)}${label.padEnd(Math.max(LABEL - indent, label.length + 1))}${value}`;
}

function listOrNone(items: readonly string[]): string {
  return items.length === 0 ? 'none' : items.join('; ');
}

function ms(n: number | null): string {
  if (n === null) return 'none';
  return n % 1000 === 0 ? `${n / 1000}s` : `${n}ms`;
}

function ruleLabel(r: RuleExplanation): string {
  return `rule ${r.index}${r.name === null ? '' : ` (name ${JSON.stringify(r.name)})`}`;
}

function ruleLines(r: RuleExplanation): string[] {
  const label = ruleLabel(r);
  if (r.catchAll) return [`${label}: matched (no match conditions: takes every request)`];
  const out: string[] = [];
  const several = r.matchCount > 1;
  for (const m of r.matches) {
    const prefix = several ? `${label} match ${m.index}` : label;
    if (!m.onThisProxy) {
      out.push(`${prefix}: not on this proxy: ${m.skipped ?? ''}`);
      continue;
    }
    if (m.matched) {
      if (m.conditions.length === 0) out.push(`${prefix}: matched (empty match: takes every request)`);
      for (const c of m.conditions) out.push(`${prefix}: matched: ${c.condition} — ${c.reason}`);
      continue;
    }
    for (const c of m.conditions) if (!c.held) out.push(`${prefix}: ${c.condition} — ${c.reason}`);
  }
  return out;
}

function clusterLines(c: ClusterExplanation): string[] {
  const out: string[] = [];
  const dr = c.destinationRule;
  out.push(row(4, 'destination rule', dr === null ? 'none' : `${dr.rules.join(', ')} (host ${dr.host})`));
  out.push(
    row(
      4,
      'service',
      `${c.service} (namespace ${c.serviceNamespace}, ${c.location}, resolution ${c.resolution})`,
    ),
  );
  out.push(row(4, 'load balancer', c.loadBalancer));
  out.push(
    row(
      4,
      'connection pool',
      Object.entries(c.connectionPool)
        .map(([k, v]) => `${k} ${v}`)
        .join(', '),
    ),
  );
  const od = c.outlierDetection;
  out.push(
    row(
      4,
      'outlier detection',
      od === null
        ? 'off (no outlierDetection)'
        : Object.entries(od)
            .map(([k, v]) => `${k} ${v}`)
            .join(', '),
    ),
  );
  out.push(row(4, 'tls', c.tls));
  if (c.endpoints.length === 0) out.push(row(4, 'endpoints', 'none (requests get 503 UH)'));
  else out.push(row(4, 'endpoints', `${c.endpoints.length}`));
  for (const e of c.endpoints) {
    const labels = Object.entries(e.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const parts = [
      `${e.address}:${e.port}`,
      `weight ${e.weight}`,
      `labels ${labels === '' ? 'none' : labels}`,
      ...(e.serviceAccount === null ? [] : [`serviceAccount ${e.serviceAccount}`]),
      ...(e.dns ? ['resolved at run time'] : []),
      `tls ${e.tls}`,
    ];
    out.push(`      ${parts.join('  ')}`);
  }
  return out;
}

function destinationLines(d: DestinationExplanation): string[] {
  const out = [`  destination ${d.cluster}  weight ${d.weight}  probability ${d.probability} %`];
  if (d.missing !== null) {
    out.push(row(4, 'missing', `${d.missing}: answered 503 NC`));
    return out;
  }
  out.push(row(4, 'upstream authority', d.authority ?? ''));
  out.push(row(4, 'request headers', listOrNone(d.requestHeaders)));
  out.push(row(4, 'response headers', listOrNone(d.responseHeaders)));
  if (d.details !== null) out.push(...clusterLines(d.details));
  return out;
}

function actionLines(a: ActionExplanation, originalPath: string): string[] {
  switch (a.kind) {
    case 'forward': {
      const r = a.retries;
      const retries =
        r.attempts === 0
          ? `${r.source}: none (attempts 0)`
          : `${r.source}: ${r.attempts} attempts on ${r.retryOn}, per try ${r.perTryTimeoutMs === null ? 'no timeout' : ms(r.perTryTimeoutMs)}, backoff ${ms(r.backoffBaseMs)}`;
      const out = [
        `action: forward (route ${a.routeName === '' ? 'default' : a.routeName})`,
        row(
          2,
          'upstream path',
          a.rewritten
            ? `${a.upstreamPath} (rewritten from ${originalPath})`
            : `${a.upstreamPath} (unchanged)`,
        ),
        row(2, 'timeout', ms(a.timeoutMs)),
        row(2, 'retries', retries),
        row(2, 'fault', listOrNone(a.fault)),
        row(2, 'mirrors', listOrNone(a.mirrors)),
      ];
      for (const n of a.neverChosen) out.push(row(2, 'never chosen', `${n} (weight 0)`));
      for (const d of a.destinations) out.push(...destinationLines(d));
      return out;
    }
    case 'redirect':
      return [
        `action: redirect (route ${a.routeName})`,
        row(2, 'status', String(a.status)),
        row(2, 'location', a.location),
        row(2, 'response headers', listOrNone(a.responseHeaders)),
      ];
    case 'direct':
      return [
        `action: direct response (route ${a.routeName})`,
        row(2, 'status', String(a.status)),
        row(2, 'body', a.body === null ? 'none' : JSON.stringify(a.body)),
        row(2, 'response headers', listOrNone(a.responseHeaders)),
      ];
    case 'passthrough':
      return [`action: passthrough to ${a.target}`, row(2, 'why', a.why)];
    case 'noRoute':
      return [`action: answer ${a.status} ${a.flag}`, row(2, 'why', a.why)];
    case 'noCluster':
      return [`action: answer ${a.status} ${a.flag} (cluster ${a.cluster})`, row(2, 'why', a.why)];
  }
}

/** The explanation as plain text lines (the `--json` output is `JSON.stringify(e)`). */
export function renderText(e: Explanation): string {
  const r = e.request;
  const lines: string[] = [];
  lines.push(`request: ${r.method} ${r.url}`);
  lines.push(
    row(2, 'authority', `${r.authority} (from the ${r.authoritySource === 'url' ? 'URL' : 'Host header'})`),
  );
  lines.push(row(2, 'path', r.path));
  lines.push(row(2, 'scheme', r.scheme));
  lines.push(row(2, 'headers', r.headers.map(([n, v]) => `${n}: ${v}`).join('; ')));
  lines.push(row(2, 'namespace', e.namespace));
  lines.push(row(2, 'outbound policy', `${e.outboundTrafficPolicy} (${e.outboundTrafficPolicyFrom})`));
  const vh = e.virtualHost;
  if (vh === null) {
    lines.push(`virtual host: none for ${r.host}`);
  } else {
    const via =
      vh.domainKind === 'name'
        ? vh.service
          ? 'the service name'
          : 'the VirtualService host'
        : vh.domainKind === 'wildcard'
          ? `covered by the wildcard domain ${vh.domain} of ${vh.host}`
          : vh.domainKind === 'address'
            ? `an address of ${vh.host}`
            : `short name of ${vh.host} in namespace ${e.namespace}`;
    lines.push(
      `virtual host: ${vh.host} port ${vh.port}${vh.service ? '' : ' (VirtualService host, no ServiceEntry)'}`,
    );
    lines.push(row(2, 'matched by', `${r.host}: ${via}; port ${vh.port} from the ${vh.portFrom}`));
  }
  const vs = e.virtualService;
  if (vs !== null) {
    lines.push(`virtual service: ${vs.namespace}/${vs.name} (hosts ${vs.hosts.join(', ')})`);
    lines.push(row(2, 'why', vs.why));
    for (const o of vs.notChosen) lines.push(row(2, 'not chosen', `${o.namespace}/${o.name}: ${o.reason}`));
  } else if (vh !== null) {
    lines.push('virtual service: none');
  }
  if (e.rules.length > 0) {
    lines.push('rules (in order, first match wins):');
    for (const rule of e.rules) for (const l of ruleLines(rule)) lines.push(`  ${l}`);
  }
  lines.push(...actionLines(e.action, r.path));
  for (const n of e.notes) lines.push(`note: ${n}`);
  for (const p of e.problems) lines.push(`PROBLEM: ${p}`);
  return `${lines.join('\n')}\n`;
}

export interface ExplainCommand {
  readonly config: string;
  readonly method: string;
  readonly url: string;
  readonly headers: readonly string[];
  readonly namespace?: string;
  /** As `run --identity-dir` / `--trust-domain`: only whether an identity exists matters (no file is read). */
  readonly identityDir?: string;
  readonly trustDomain?: string;
  readonly json: boolean;
}

export interface ExplainOutcome {
  /** 0 printed, 1 explain disagrees with the router (a bug), 2 invalid configuration or arguments. */
  readonly code: 0 | 1 | 2;
  readonly stdout: string;
  readonly stderr: string;
}

/** The whole command: never starts a listener or opens a socket. */
export async function runExplain(cmd: ExplainCommand): Promise<ExplainOutcome> {
  const built = buildRequest(cmd.method, cmd.url, cmd.headers);
  if (!built.ok) return { code: 2, stdout: '', stderr: `meshlet explain: ${built.error}\n` };
  const bundle = await loadConfig(
    cmd.config,
    cmd.namespace === undefined ? {} : { namespace: cmd.namespace },
  );
  const errors = bundle.issues.filter((i) => i.severity === 'error');
  if (errors.length > 0) {
    const text = errors.map((i) => `${formatIssue(i)}\n`).join('');
    return {
      code: 2,
      stdout: '',
      stderr: `${text}meshlet explain: invalid configuration: ${errors.length} error(s)\n`,
    };
  }
  let settings: ReturnType<typeof resolveSettings>;
  try {
    settings = resolveSettings(
      {
        ...(cmd.namespace !== undefined && { namespace: cmd.namespace }),
        ...(cmd.identityDir !== undefined && { identityDir: cmd.identityDir }),
        ...(cmd.trustDomain !== undefined && { trustDomain: cmd.trustDomain }),
      },
      bundle.proxy?.spec ?? null,
    );
  } catch (err) {
    if (err instanceof SettingsError)
      return { code: 2, stdout: '', stderr: `meshlet explain: ${err.message}\n` };
    throw err;
  }
  const e = explain(bundle, settings, built.request, built.input);
  const stdout = cmd.json ? `${JSON.stringify(e, null, 2)}\n` : renderText(e);
  const warnings = bundle.issues.map((i) => `${formatIssue(i)}\n`).join('');
  return { code: e.problems.length > 0 ? 1 : 0, stdout, stderr: warnings };
}
