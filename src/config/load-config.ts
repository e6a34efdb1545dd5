/**
 * Reads the configuration (a file, or a folder of `*.yaml`/`*.yml` files in name order), parses
 * every YAML document with positions, validates and normalizes the supported kinds, and returns a
 * `ConfigBundle`. Bad input never throws: every problem becomes a `ConfigIssue`, and all of them
 * are collected.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type Document, isAlias, isMap, isScalar, LineCounter, type Node, parseAllDocuments } from 'yaml';
import { DEFAULT_DOMAIN_SUFFIX } from './host-names.ts';
import type {
  AuthorizationPolicySpec,
  ConfigBundle,
  ConfigIssue,
  DestinationRuleSpec,
  LoadOptions,
  PeerAuthenticationSpec,
  ProxySpec,
  Resource,
  ResourceMeta,
  ServiceEntrySpec,
  SidecarSpec,
  VirtualServiceSpec,
} from './resource-types.ts';
import { DEFAULTS } from './runtime-settings.ts';
import { validateAuthorizationPolicy } from './validate-authorization-policy.ts';
import type { Scope } from './validate-common.ts';
import { validateDestinationRule } from './validate-destination-rule.ts';
import { validatePeerAuthentication } from './validate-peer-authentication.ts';
import { validateProxy } from './validate-proxy.ts';
import { validateServiceEntry } from './validate-service-entry.ts';
import { validateSidecar } from './validate-sidecar.ts';
import { validateVirtualService } from './validate-virtual-service.ts';
import { DocContext, type MapView, View } from './yaml-view.ts';

export interface ConfigFile {
  /** Shown in messages (`file:line:col`). */
  readonly name: string;
  readonly text: string;
}

export const DEFAULT_NAMESPACE = 'default';

const NETWORKING_VERSIONS = ['v1alpha3', 'v1beta1', 'v1'];
const SECURITY_VERSIONS = ['v1beta1', 'v1'];

/**
 * RequestAuthentication is loaded and not enforced. That is safe because it never grants access:
 * in Istio a RequestAuthentication alone denies nothing (a request without a token passes; only an
 * invalid token is rejected), and access that depends on a token is granted by AuthorizationPolicy
 * rules on request principals, which never match here because no request has one (ALLOW rules that
 * need a JWT allow nothing; `notRequestPrincipals` always matches, so "deny without a JWT" denies
 * everything). What does change: an invalid or expired token is not answered with 401 and reaches
 * the application with its Authorization header.
 */
const REQUEST_AUTHN_WARNING =
  'meshlet does not validate JWTs; RequestAuthentication is not enforced and requests carry no request principal. ' +
  'This never widens access: a RequestAuthentication alone denies nothing in Istio (it only rejects invalid tokens), ' +
  'and AuthorizationPolicy rules that need a request principal never match, so they fail closed. ' +
  'Requests with an invalid or expired token are not rejected with 401; they reach the application as they are';

interface ParsedDoc {
  readonly file: string;
  readonly fileIndex: number;
  readonly lineCounter: LineCounter;
  readonly doc: Document.Parsed;
  /** 1-based index of the document inside its file. */
  readonly indexInFile: number;
  /** Index in load order among non-empty documents. */
  readonly order: number;
}

/** Lists the configuration files of a folder: visible `*.yaml`/`*.yml` names, symlinks followed. */
async function listFolder(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).filter((n) => !n.startsWith('.') && /\.ya?ml$/i.test(n)).sort();
  const out: string[] = [];
  for (const name of names) {
    const full = join(dir, name);
    try {
      // stat follows symlinks (a ConfigMap mount has `name.yaml -> ..data/name.yaml`).
      if ((await stat(full)).isFile()) out.push(full);
    } catch {
      // A dangling symlink (mid-swap): skip it; the watcher will fire again.
    }
  }
  return out;
}

function readIssue(path: string, message: string): ConfigIssue {
  return { severity: 'error', pos: { file: path, line: 1, col: 1 }, path: '', message };
}

function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT') return 'no such file or directory';
  if (e.code === 'EACCES') return 'permission denied';
  return e.message;
}

/** Loads a file or a folder. Never throws for bad input. */
export async function loadConfig(path: string, options: LoadOptions = {}): Promise<ConfigBundle> {
  const readIssues: ConfigIssue[] = [];
  const files: ConfigFile[] = [];
  let paths: string[] = [];
  try {
    const st = await stat(path);
    if (st.isDirectory()) {
      paths = await listFolder(path);
      if (paths.length === 0) {
        readIssues.push({
          severity: 'warning',
          pos: { file: path, line: 1, col: 1 },
          path: '',
          message: 'the configuration folder has no *.yaml or *.yml files',
        });
      }
    } else paths = [path];
  } catch (err) {
    readIssues.push(readIssue(path, `cannot read configuration ${path}: ${errnoText(err)}`));
  }
  for (const p of paths) {
    try {
      files.push({ name: p, text: await readFile(p, 'utf8') });
    } catch (err) {
      readIssues.push(readIssue(p, `cannot read configuration file ${p}: ${errnoText(err)}`));
    }
  }
  const bundle = parseConfigText(files, options);
  if (readIssues.length === 0) return bundle;
  return { ...bundle, issues: [...readIssues, ...bundle.issues] };
}

function quickString(doc: Document.Parsed, key: string): string | undefined {
  const root = doc.contents;
  if (root === null || !isMap(root)) return undefined;
  const v = root.get(key, true);
  return isScalar(v) && typeof v.value === 'string' ? v.value : undefined;
}

function isProxyDoc(doc: Document.Parsed): boolean {
  return (
    quickString(doc, 'kind') === 'Proxy' && (quickString(doc, 'apiVersion') ?? '').startsWith('meshlet.dev/')
  );
}

/** Parses and validates in-memory files (in the given order). */
export function parseConfigText(files: readonly ConfigFile[], options: LoadOptions = {}): ConfigBundle {
  const issues: ConfigIssue[] = [];
  const hash = createHash('sha256');
  const parsed: ParsedDoc[] = [];
  const documents: unknown[] = [];
  let order = 0;
  files.forEach((f, fileIndex) => {
    hash.update(f.text);
    const lineCounter = new LineCounter();
    const docs = parseAllDocuments(f.text, {
      lineCounter,
      prettyErrors: false,
      uniqueKeys: true,
      logLevel: 'error',
    });
    if (!Array.isArray(docs)) return; // empty stream
    docs.forEach((doc, i) => {
      const pos = (offset: number) => {
        const { line, col } = lineCounter.linePos(offset);
        return { file: f.name, line, col };
      };
      for (const e of doc.errors) {
        issues.push({
          severity: 'error',
          pos: pos(e.pos[0]),
          path: '',
          message: `YAML syntax error: ${e.message}`,
        });
      }
      for (const w of doc.warnings) {
        issues.push({ severity: 'warning', pos: pos(w.pos[0]), path: '', message: `YAML: ${w.message}` });
      }
      if (doc.errors.length > 0) return;
      const contents = doc.contents;
      if (contents === null || (isScalar(contents) && contents.value === null)) return;
      try {
        documents.push(doc.toJS({ maxAliasCount: 1000 }));
      } catch (err) {
        issues.push({ severity: 'error', pos: pos(0), path: '', message: `YAML: ${(err as Error).message}` });
        return;
      }
      parsed.push({ file: f.name, fileIndex, lineCounter, doc, indexInFile: i + 1, order: order++ });
    });
  });

  const out: Collected = {
    serviceEntries: [],
    virtualServices: [],
    destinationRules: [],
    sidecars: [],
    peerAuthentications: [],
    authorizationPolicies: [],
    proxy: null,
    seen: new Map(),
  };
  // The Proxy document is read first: it may set the default namespace and the domain suffix.
  for (const d of parsed) if (isProxyDoc(d.doc)) processDocument(d, issues, out, undefined);
  const scopeDefaults = {
    namespace: options.namespace ?? out.proxy?.spec.namespace ?? DEFAULT_NAMESPACE,
    domainSuffix: (
      options.domainSuffix ??
      out.proxy?.spec.domainSuffix ??
      DEFAULT_DOMAIN_SUFFIX
    ).toLowerCase(),
  };
  for (const d of parsed) if (!isProxyDoc(d.doc)) processDocument(d, issues, out, scopeDefaults);
  checkPeerAuthenticationScopes(
    out.peerAuthentications,
    out.proxy?.spec.rootNamespace ?? DEFAULTS.rootNamespace,
    issues,
  );

  // Messages in file order, then position.
  const fileRank = new Map(files.map((f, i) => [f.name, i] as const));
  const sorted = issues
    .map((issue, i) => ({ issue, i }))
    .sort(
      (a, b) =>
        (fileRank.get(a.issue.pos.file) ?? 0) - (fileRank.get(b.issue.pos.file) ?? 0) ||
        a.issue.pos.line - b.issue.pos.line ||
        a.issue.pos.col - b.issue.pos.col ||
        a.i - b.i,
    )
    .map((x) => x.issue);

  return {
    serviceEntries: out.serviceEntries,
    virtualServices: out.virtualServices,
    destinationRules: out.destinationRules,
    sidecars: out.sidecars,
    peerAuthentications: out.peerAuthentications,
    authorizationPolicies: out.authorizationPolicies,
    proxy: out.proxy,
    issues: sorted,
    files: files.map((f) => f.name),
    hash: hash.digest('hex'),
    documents,
  };
}

interface Collected {
  serviceEntries: Resource<ServiceEntrySpec>[];
  virtualServices: Resource<VirtualServiceSpec>[];
  destinationRules: Resource<DestinationRuleSpec>[];
  sidecars: Resource<SidecarSpec>[];
  peerAuthentications: Resource<PeerAuthenticationSpec>[];
  authorizationPolicies: Resource<AuthorizationPolicySpec>[];
  proxy: Resource<ProxySpec> | null;
  /** `Kind/ns/name` → where it was first defined. */
  seen: Map<string, string>;
}

type Handling =
  | {
      readonly kind: 'validate';
      readonly as:
        | 'ServiceEntry'
        | 'VirtualService'
        | 'DestinationRule'
        | 'Sidecar'
        | 'PeerAuthentication'
        | 'AuthorizationPolicy';
    }
  | { readonly kind: 'requestAuthentication' }
  | { readonly kind: 'proxy' }
  | { readonly kind: 'ignore' }
  | { readonly kind: 'warn' | 'error'; readonly message: string; readonly on: 'kind' | 'apiVersion' };

function classify(apiVersion: string, kind: string): Handling {
  const slash = apiVersion.indexOf('/');
  const group = slash < 0 ? '' : apiVersion.slice(0, slash);
  const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
  const notImplemented: Handling = {
    kind: 'warn',
    on: 'kind',
    message: `kind ${kind} is not implemented; document ignored`,
  };
  if (group === 'meshlet.dev') {
    if (version !== 'v1alpha1') {
      return {
        kind: 'error',
        on: 'apiVersion',
        message: `unsupported apiVersion ${apiVersion}; use meshlet.dev/v1alpha1`,
      };
    }
    if (kind !== 'Proxy')
      return { kind: 'error', on: 'kind', message: `unknown kind ${kind} in meshlet.dev/v1alpha1` };
    return { kind: 'proxy' };
  }
  if (group === 'networking.istio.io') {
    if (!NETWORKING_VERSIONS.includes(version)) {
      return {
        kind: 'error',
        on: 'apiVersion',
        message: `unsupported apiVersion ${apiVersion}; expected networking.istio.io/${NETWORKING_VERSIONS.join('|')}`,
      };
    }
    if (
      kind === 'ServiceEntry' ||
      kind === 'VirtualService' ||
      kind === 'DestinationRule' ||
      kind === 'Sidecar'
    ) {
      return { kind: 'validate', as: kind };
    }
    return notImplemented;
  }
  if (group === 'security.istio.io') {
    if (!SECURITY_VERSIONS.includes(version)) {
      return {
        kind: 'error',
        on: 'apiVersion',
        message: `unsupported apiVersion ${apiVersion}; expected security.istio.io/${SECURITY_VERSIONS.join('|')}`,
      };
    }
    if (kind === 'PeerAuthentication' || kind === 'AuthorizationPolicy')
      return { kind: 'validate', as: kind };
    if (kind === 'RequestAuthentication') return { kind: 'requestAuthentication' };
    return notImplemented;
  }
  if (group === 'istio.io' || group.endsWith('.istio.io')) return notImplemented;
  // Kubernetes and other non-Istio kinds (Service, Deployment, ...): not ours, ignored.
  return { kind: 'ignore' };
}

const TOP_LEVEL = ['apiVersion', 'kind', 'metadata', 'spec', 'status'];
const NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
const NAMESPACE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function processDocument(
  d: ParsedDoc,
  issues: ConfigIssue[],
  out: Collected,
  defaults: Scope | undefined,
): void {
  const ctx = new DocContext(d.file, d.lineCounter, issues, `document ${d.indexInFile}`, (n) =>
    isAlias(n) ? (n.resolve(d.doc) as Node | undefined) : n,
  );
  const rootView = new View(ctx, d.doc.contents as Node | null, '', 0);
  if (rootView.typeName() !== 'map') {
    rootView.error('a document must be a mapping with apiVersion, kind, metadata and spec');
    return;
  }
  const root = rootView.map();
  if (root === undefined) return;
  const apiVersionView = root.get('apiVersion');
  const kindView = root.get('kind');
  const apiVersion = apiVersionView.require('apiVersion') ? apiVersionView.string() : undefined;
  const kind = kindView.require('kind') ? kindView.string() : undefined;
  if (apiVersion === undefined || kind === undefined) return;

  const handling = classify(apiVersion, kind);
  if (handling.kind === 'ignore') return;

  // Metadata, for the label of every message about this document.
  const metaView = root.get('metadata');
  const meta = metaView.map();
  const nameView = meta?.get('name');
  const nsView = meta?.get('namespace');
  // The label comes first, so that the messages below carry it.
  const peek = (v: View | undefined): string | undefined => {
    const n = v?.node;
    return n !== undefined && isScalar(n) && typeof n.value === 'string' ? n.value : undefined;
  };
  const namespace = peek(nsView) ?? defaults?.namespace ?? DEFAULT_NAMESPACE;
  ctx.label = `${kind} ${namespace}/${peek(nameView) ?? '<unnamed>'}`;
  const rawName = nameView?.string();
  const rawNs = nsView?.string();

  if (handling.kind === 'warn' || handling.kind === 'error') {
    const at = handling.on === 'kind' ? kindView : apiVersionView;
    if (handling.kind === 'warn') at.warn(handling.message);
    else at.error(handling.message);
    return;
  }
  if (handling.kind === 'requestAuthentication') {
    kindView.warn(REQUEST_AUTHN_WARNING);
    checkRequestAuthentication(root.get('spec'));
    return;
  }

  const validateAs = handling.kind === 'validate' ? handling.as : null;
  const errorsBefore = issues.filter((i) => i.severity === 'error').length;
  root.checkFields(TOP_LEVEL);
  const isProxy = handling.kind === 'proxy';
  if (!isProxy || metaView.present) {
    if (!metaView.present) metaView.error('metadata is required');
    else if (meta !== undefined && nameView !== undefined) {
      if (nameView.require('metadata.name') && rawName !== undefined && !NAME.test(rawName)) {
        nameView.error(`name "${rawName}" must be a lowercase DNS-1123 name`);
      }
      if (rawNs !== undefined && nsView !== undefined && !NAMESPACE.test(rawNs)) {
        nsView.error(`namespace "${rawNs}" must be a lowercase DNS label`);
      }
    }
  }
  const annotations = meta?.get('annotations').stringMap() ?? {};
  meta?.get('labels').stringMap();

  const specView = root.get('spec');
  let spec: MapView | undefined = specView.map();
  if (spec === undefined && !specView.present) {
    // These kinds mean something with an empty spec: defaults, an UNSET PeerAuthentication, and an
    // AuthorizationPolicy that allows nothing.
    if (
      isProxy ||
      validateAs === 'Sidecar' ||
      validateAs === 'PeerAuthentication' ||
      validateAs === 'AuthorizationPolicy'
    ) {
      spec = undefined;
    } else {
      specView.error('spec is required');
      return;
    }
  } else if (spec === undefined) return;

  const resourceMeta: ResourceMeta = {
    name: rawName ?? (isProxy ? 'proxy' : ''),
    namespace,
    annotations,
    pos: ctx.posAt(root.offset),
    order: d.order,
  };
  const key = `${kind}/${namespace}/${resourceMeta.name}`;
  const firstAt = out.seen.get(key);
  const here = `${resourceMeta.pos.file}:${resourceMeta.pos.line}:${resourceMeta.pos.col}`;
  if (firstAt !== undefined && !isProxy) {
    (nameView ?? rootView).warn(
      `duplicate ${kind} ${namespace}/${resourceMeta.name} (first defined at ${firstAt})`,
    );
  } else out.seen.set(key, here);

  const scope: Scope = {
    namespace,
    domainSuffix: defaults?.domainSuffix ?? DEFAULT_DOMAIN_SUFFIX,
  };
  const hasNewErrors = (): boolean => issues.filter((i) => i.severity === 'error').length > errorsBefore;

  if (isProxy) {
    const proxySpec = spec === undefined ? {} : validateProxy(spec);
    if (!hasNewErrors()) out.proxy = { meta: resourceMeta, spec: proxySpec };
    return;
  }
  switch (validateAs) {
    case 'Sidecar': {
      const s = spec === undefined ? {} : validateSidecar(spec, scope);
      if (s !== undefined && !hasNewErrors()) out.sidecars.push({ meta: resourceMeta, spec: s });
      return;
    }
    case 'ServiceEntry': {
      const s = spec === undefined ? undefined : validateServiceEntry(spec, scope);
      if (s !== undefined && !hasNewErrors()) out.serviceEntries.push({ meta: resourceMeta, spec: s });
      return;
    }
    case 'VirtualService': {
      const s = spec === undefined ? undefined : validateVirtualService(spec, scope);
      if (s !== undefined && !hasNewErrors()) out.virtualServices.push({ meta: resourceMeta, spec: s });
      return;
    }
    case 'DestinationRule': {
      const s = spec === undefined ? undefined : validateDestinationRule(spec, scope);
      if (s !== undefined && !hasNewErrors()) out.destinationRules.push({ meta: resourceMeta, spec: s });
      return;
    }
    case 'PeerAuthentication': {
      const s =
        spec === undefined
          ? { mode: 'UNSET' as const, portLevelMtls: new Map() }
          : validatePeerAuthentication(spec, scope);
      if (s !== undefined && !hasNewErrors()) out.peerAuthentications.push({ meta: resourceMeta, spec: s });
      return;
    }
    case 'AuthorizationPolicy': {
      const annotationsView = meta?.get('annotations') ?? metaView;
      const s = validateAuthorizationPolicy(spec, scope, annotationsView);
      if (s !== undefined && !hasNewErrors()) out.authorizationPolicies.push({ meta: resourceMeta, spec: s });
      return;
    }
  }
}

/**
 * Headers that Istio fills from a validated token, which the application then trusts. meshlet
 * validates no token, so it would neither fill them nor stop a client from sending them: the
 * application would trust whatever the caller wrote. That would be a hole, not a missing feature.
 */
const TRUSTED_OUTPUT_FIELDS = ['outputPayloadToHeader', 'outputClaimToHeaders'];

function checkRequestAuthentication(specView: View): void {
  const spec = specView.typeName() === 'map' ? specView.map() : undefined;
  const rules = spec?.get('jwtRules');
  if (rules === undefined || rules.typeName() !== 'list') return;
  for (const rule of rules.list() ?? []) {
    const m = rule.typeName() === 'map' ? rule.map() : undefined;
    for (const field of TRUSTED_OUTPUT_FIELDS) {
      const v = m?.get(field);
      if (v?.present === true) {
        v.error(
          `${field} is not supported: meshlet validates no JWT, so the application would trust a header that the caller can write itself`,
        );
      }
    }
  }
}

/**
 * Warnings about PeerAuthentications that can never apply (spec §5.2): a selector policy in the
 * root namespace (Istio ignores it), and a second namespace-wide policy in one namespace (the
 * oldest wins in Istio; with no timestamps, the first in load order wins here).
 */
function checkPeerAuthenticationScopes(
  list: readonly Resource<PeerAuthenticationSpec>[],
  rootNamespace: string,
  issues: ConfigIssue[],
): void {
  const wide = new Map<string, Resource<PeerAuthenticationSpec>>();
  for (const r of list) {
    const label = `PeerAuthentication ${r.meta.namespace}/${r.meta.name}`;
    if (r.spec.selector !== undefined) {
      if (r.meta.namespace === rootNamespace) {
        issues.push({
          severity: 'warning',
          pos: r.meta.pos,
          path: `${label}: spec.selector`,
          message: `a PeerAuthentication with a selector in the root namespace ${rootNamespace} is ignored, as Istio ignores it; put it in the workload's namespace`,
        });
      }
      continue;
    }
    const first = wide.get(r.meta.namespace);
    if (first === undefined) {
      wide.set(r.meta.namespace, r);
      continue;
    }
    const at = `${first.meta.pos.file}:${first.meta.pos.line}:${first.meta.pos.col}`;
    issues.push({
      severity: 'warning',
      pos: r.meta.pos,
      path: label,
      message: `namespace ${r.meta.namespace} already has a ${r.meta.namespace === rootNamespace ? 'mesh' : 'namespace'}-wide PeerAuthentication, ${first.meta.name} (${at}); the first one wins and this one is ignored`,
    });
  }
}
