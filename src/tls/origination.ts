/**
 * The outbound TLS decision (spec §3.7): for one cluster and one of its endpoints, plaintext, the
 * `UpstreamTls` to originate with, or why the attempt cannot be made.
 *
 * DestinationRule `tls` (the cluster's effective policy, plain data):
 * - `DISABLE`, or a `tls:` block without `mode`: plaintext;
 * - `ISTIO_MUTUAL`: the workload certificate and the mesh trust bundle; SNI
 *   `outbound_.<port>_.<subset>_.<host>` (the DR's `sni` wins when set), ALPN `istio-http/1.1`,
 *   `istio`. Expected server identities, first that applies: the DR's `subjectAltNames`, the
 *   ServiceEntry's `subjectAltNames`, `spiffe://<trustDomain>/ns/<namespace of the cluster's
 *   service>/sa/<endpoint serviceAccount>` when the endpoint has one; otherwise none, and the server
 *   is only checked to chain to the mesh bundle (any workload of the mesh is accepted: a
 *   ServiceEntry without `subjectAltNames` and an endpoint without `serviceAccount` name no one).
 *   `insecureSkipVerify` is ignored here: a mesh identity is always verified;
 * - `SIMPLE`: the server verified with `caCertificates` (read from the file) or Node's bundled root
 *   store; SNI the DR's `sni`, else the cluster's host. Expected names: the DR's, else the
 *   ServiceEntry's `subjectAltNames`, else the SNI name as a DNS SAN (as Istio does when it verifies
 *   certificates at the client and sets SNI itself); an IP or wildcard host is checked for the chain
 *   only. `insecureSkipVerify` turns every check off;
 * - `MUTUAL`: as SIMPLE, plus `clientCertificate` and `privateKey` (files). `credentialName` is a
 *   gateway feature: a MUTUAL rule with no files fails its attempts with that reason. `caCrl` is not
 *   applied.
 *
 * No DR `tls` at all: auto-mTLS (mesh `enableAutoMtls`, on unless `autoMtls: false`). A cluster that
 * is `MESH_INTERNAL` and whose destination mode (`destinationMode`, when known) is not DISABLE gets
 * ISTIO_MUTUAL for the endpoints that can take it: labelled `security.istio.io/tlsMode: istio`, or
 * carrying a `serviceAccount` and no `tlsMode` label (spec §1.1: such an endpoint counts as
 * `tlsMode=istio`). Everything else is plaintext. `MESH_EXTERNAL` (the default location) never is.
 *
 * Failures are values: `{ error }` (an `OriginationError`) when ISTIO_MUTUAL has no workload
 * certificate (`no workload certificate`) or no trust bundle (`no trust bundle`), or a file of
 * SIMPLE/MUTUAL cannot be read; the pipeline fails that attempt as a connect failure (UF) with the
 * text as the reason, so retries may go elsewhere and the log says why.
 *
 * Cost per request: one `identity()` call, one WeakMap lookup by cluster object, and for clusters
 * whose answer depends on the endpoint one Map lookup by endpoint id; nothing is allocated once an
 * answer is cached. Answers are cached per (cluster object, endpoint id) and dropped when the
 * identity version changes (a rotated certificate or bundle gives new `UpstreamTls` objects with a
 * new `poolKey`, so new connections use it while old ones finish) or when `refreshFiles()` is
 * called. `destinationMode` is asked once per cluster object and identity version. Equal settings
 * give the same `UpstreamTls` object (interned by `poolKey`), so the upstream client builds one
 * secure context for them. Files are read on the first request that needs them, or ahead of
 * traffic by `preload(clusters)`, and kept by path until `refreshFiles()`.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { Cluster, Endpoint } from '../router/route-types.ts';
import type { UpstreamTarget } from '../upstream/upstream-types.ts';
import type { MtlsMode, UpstreamTls, WorkloadCertificate } from './identity-types.ts';

/** What `identity()` reports: the current workload certificate and trust bundle, and a version. */
export interface OriginationIdentity {
  /** Null until a certificate is available. */
  readonly cert: WorkloadCertificate | null;
  /** PEM trust anchors; '' until loaded. */
  readonly bundlePem: string;
  /** Changes whenever `cert` or `bundlePem` changes (rotation, reload). */
  readonly version: number;
}

export interface OriginationOptions {
  /** `spiffe://<trustDomain>/…` of expected server identities. */
  readonly trustDomain: string;
  /**
   * Called on every decision: make it cheap (return the same object until something changes), as
   * the answers are cached only while `version` stays the same.
   */
  readonly identity: () => OriginationIdentity;
  /** The destination's server-side mTLS mode when known (auto-mTLS sends plaintext to DISABLE). */
  readonly destinationMode?: (cluster: Cluster) => MtlsMode | undefined;
  /** Reads a certificate file of SIMPLE/MUTUAL (default: `readFileSync(path, 'utf8')`). */
  readonly readFile?: (path: string) => string;
  /** Mesh `enableAutoMtls` (default true). Pass false when this proxy has no workload identity. */
  readonly autoMtls?: boolean;
}

/** Why an attempt cannot be made: the pipeline fails it as a connect failure (UF) with `error`. */
export interface OriginationError {
  readonly error: string;
}

/** `undefined`: plaintext. */
export type OriginationResult = UpstreamTls | OriginationError | undefined;

export interface Origination {
  /** The decision for one attempt to `endpoint` of `cluster`. */
  originationFor(cluster: Cluster, endpoint: Endpoint): OriginationResult;
  /**
   * The same decision as an `UpstreamTarget`: `endpoint` itself for plaintext, a cached
   * `{ address, port, tls }` for TLS (so the pipeline allocates nothing), or the error.
   */
  targetFor(cluster: Cluster, endpoint: Endpoint): UpstreamTarget | OriginationError;
  /**
   * Reads the files of the clusters' SIMPLE/MUTUAL rules now (after a configuration load), so no
   * request reads a file. Returns one line per problem (`<cluster>: <reason>`), for the log.
   */
  preload(clusters: Iterable<Cluster>): string[];
  /** Forgets the files read so far (they are read again on next use) and every cached answer. */
  refreshFiles(): void;
}

export function isOriginationError(r: OriginationResult | UpstreamTarget): r is OriginationError {
  return r !== undefined && 'error' in r;
}

export const TLS_MODE_LABEL = 'security.istio.io/tlsMode';
/** ALPN of Istio mTLS carrying HTTP/1.1 (spec §3.7). */
export const ISTIO_ALPN: readonly string[] = Object.freeze(['istio-http/1.1', 'istio']);

const NO_CERT: OriginationError = Object.freeze({ error: 'no workload certificate' });
const NO_BUNDLE: OriginationError = Object.freeze({ error: 'no trust bundle' });
const NONE: readonly string[] = Object.freeze([]);
/** Interned `UpstreamTls` objects beyond this are dropped (configurations with very many clusters). */
const MAX_INTERNED = 4096;
/** Per-cluster endpoint answers beyond this are dropped (endpoint churn under DNS). */
const MAX_ENDPOINTS = 8192;

/** The DR `tls` fields this module reads, from the plain-data record. */
interface ClientTls {
  readonly mode: 'DISABLE' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL';
  readonly sni: string | undefined;
  readonly subjectAltNames: readonly string[];
  readonly caCertificates: string | undefined;
  readonly clientCertificate: string | undefined;
  readonly privateKey: string | undefined;
  readonly insecureSkipVerify: boolean;
}

/** One endpoint's cached answer. */
interface Answer {
  readonly result: OriginationResult;
  readonly target: UpstreamTarget | OriginationError;
}

/**
 * What a cluster decides, for one identity version and file generation. `shared` holds the answer
 * when it does not depend on the endpoint; else `perEndpoint` is true and answers are in `answers`.
 */
interface Plan {
  readonly version: number;
  readonly generation: number;
  readonly perEndpoint: boolean;
  readonly shared: OriginationResult;
  /** Per-endpoint rule: ISTIO_MUTUAL for all endpoints, or auto-mTLS by label. */
  readonly rule: 'istio' | 'auto' | 'fixed';
  readonly tls: ClientTls | undefined;
  readonly answers: Map<string, Answer>;
}

interface FileRead {
  readonly pem: string;
  /** Short content digest, part of pool keys (a changed file gives new pools). */
  readonly digest: string;
  readonly error: string;
}

export function createOrigination(options: OriginationOptions): Origination {
  const trustDomain = options.trustDomain;
  const identity = options.identity;
  const readFile = options.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  const autoMtls = options.autoMtls !== false;
  const plans = new WeakMap<Cluster, Plan>();
  const files = new Map<string, FileRead>();
  const interned = new Map<string, UpstreamTls>();
  let internedVersion = -1;
  /** Bumped by `refreshFiles`: every plan built before is stale. */
  let generation = 0;

  function planFor(cluster: Cluster, id: OriginationIdentity): Plan {
    const plan = plans.get(cluster);
    if (plan !== undefined && plan.version === id.version && plan.generation === generation) return plan;
    const fresh = buildPlan(cluster, id);
    plans.set(cluster, fresh);
    return fresh;
  }

  function buildPlan(cluster: Cluster, id: OriginationIdentity): Plan {
    const base = { version: id.version, generation, answers: new Map<string, Answer>() };
    const record = cluster.trafficPolicy?.tls;
    if (record === undefined) {
      const auto =
        autoMtls && cluster.location === 'MESH_INTERNAL' && options.destinationMode?.(cluster) !== 'DISABLE';
      return auto
        ? { ...base, perEndpoint: true, shared: undefined, rule: 'auto', tls: undefined }
        : { ...base, perEndpoint: false, shared: undefined, rule: 'fixed', tls: undefined };
    }
    const tls = readClientTls(record);
    switch (tls.mode) {
      case 'DISABLE':
        return { ...base, perEndpoint: false, shared: undefined, rule: 'fixed', tls };
      case 'ISTIO_MUTUAL':
        return { ...base, perEndpoint: true, shared: undefined, rule: 'istio', tls };
      default:
        return { ...base, perEndpoint: false, shared: external(cluster, tls), rule: 'fixed', tls };
    }
  }

  /** The answer for one endpoint of a per-endpoint plan, cached. */
  function answerFor(plan: Plan, cluster: Cluster, endpoint: Endpoint, id: OriginationIdentity): Answer {
    let answer = plan.answers.get(endpoint.id);
    if (answer === undefined) {
      let result: OriginationResult;
      if (plan.rule === 'istio' || acceptsIstioMtls(endpoint)) {
        result = istioMutual(cluster, endpoint, plan.tls, id);
      } else {
        result = undefined;
      }
      answer = { result, target: targetOf(endpoint, result) };
      if (plan.answers.size >= MAX_ENDPOINTS) plan.answers.clear();
      plan.answers.set(endpoint.id, answer);
    }
    return answer;
  }

  function istioMutual(
    cluster: Cluster,
    endpoint: Endpoint,
    tls: ClientTls | undefined,
    id: OriginationIdentity,
  ): UpstreamTls | OriginationError {
    const cert = id.cert;
    if (cert === null) return NO_CERT;
    if (id.bundlePem === '') return NO_BUNDLE;
    const servername = tls?.sni ?? `outbound_.${cluster.port}_.${cluster.subset}_.${cluster.host}`;
    let expectedSans: readonly string[];
    if (tls !== undefined && tls.subjectAltNames.length > 0) expectedSans = tls.subjectAltNames;
    else if (cluster.subjectAltNames !== undefined && cluster.subjectAltNames.length > 0)
      expectedSans = cluster.subjectAltNames;
    else if (endpoint.serviceAccount !== undefined && endpoint.serviceAccount !== '')
      expectedSans = [`spiffe://${trustDomain}/ns/${cluster.serviceNamespace}/sa/${endpoint.serviceAccount}`];
    else expectedSans = NONE;
    const poolKey = `ISTIO_MUTUAL|v${id.version}|${servername}|${expectedSans.join(' ')}`;
    return intern(poolKey, id.version, () => ({
      poolKey,
      certChainPem: cert.certChainPem,
      keyPem: cert.keyPem,
      caPem: id.bundlePem,
      servername,
      alpn: ISTIO_ALPN,
      expectedSans,
    }));
  }

  /** SIMPLE or MUTUAL: the same for every endpoint of the cluster. */
  function external(cluster: Cluster, tls: ClientTls): UpstreamTls | OriginationError {
    let ca: FileRead | undefined;
    if (tls.caCertificates !== undefined) {
      ca = fileOf(tls.caCertificates);
      if (ca.error !== '') return { error: `caCertificates: ${ca.error}` };
    }
    let cert: FileRead | undefined;
    let key: FileRead | undefined;
    if (tls.mode === 'MUTUAL') {
      if (tls.clientCertificate === undefined || tls.privateKey === undefined) {
        return {
          error:
            'tls mode MUTUAL needs clientCertificate and privateKey files (credentialName is for gateways)',
        };
      }
      cert = fileOf(tls.clientCertificate);
      if (cert.error !== '') return { error: `clientCertificate: ${cert.error}` };
      key = fileOf(tls.privateKey);
      if (key.error !== '') return { error: `privateKey: ${key.error}` };
    }
    const host = cluster.host;
    const sni = tls.sni ?? (host.startsWith('*') || isIP(host) !== 0 ? undefined : host);
    let expectedSans: readonly string[] = NONE;
    if (tls.subjectAltNames.length > 0) expectedSans = tls.subjectAltNames;
    else if (cluster.subjectAltNames !== undefined && cluster.subjectAltNames.length > 0)
      expectedSans = cluster.subjectAltNames;
    else if (sni !== undefined && sni !== '' && isIP(sni) === 0) expectedSans = [sni];
    const poolKey = [
      tls.mode,
      sni ?? '',
      expectedSans.join(' '),
      ca?.digest ?? 'system',
      cert?.digest ?? '',
      key?.digest ?? '',
      tls.insecureSkipVerify ? 'insecure' : '',
    ].join('|');
    return intern(poolKey, internedVersion, () => {
      const made: {
        -readonly [K in keyof UpstreamTls]: UpstreamTls[K];
      } = { poolKey, expectedSans };
      if (cert !== undefined) made.certChainPem = cert.pem;
      if (key !== undefined) made.keyPem = key.pem;
      if (ca !== undefined) made.caPem = ca.pem;
      if (sni !== undefined && sni !== '') made.servername = sni;
      if (tls.insecureSkipVerify) made.insecureSkipVerify = true;
      return made;
    });
  }

  /** One `UpstreamTls` per `poolKey` (per identity version), so the client's caches hit. */
  function intern(poolKey: string, version: number, make: () => UpstreamTls): UpstreamTls {
    if (version !== internedVersion || interned.size >= MAX_INTERNED) {
      interned.clear();
      internedVersion = version;
    }
    let tls = interned.get(poolKey);
    if (tls === undefined) {
      tls = make();
      interned.set(poolKey, tls);
    }
    return tls;
  }

  function fileOf(path: string): FileRead {
    let read = files.get(path);
    if (read === undefined) {
      try {
        const pem = readFile(path);
        read = { pem, digest: createHash('sha256').update(pem).digest('hex').slice(0, 16), error: '' };
      } catch (err) {
        read = {
          pem: '',
          digest: '',
          error: `cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`,
        };
      }
      files.set(path, read);
    }
    return read;
  }

  function resultOf(cluster: Cluster, endpoint: Endpoint): OriginationResult {
    const id = identity();
    const plan = planFor(cluster, id);
    if (!plan.perEndpoint) return plan.shared;
    return answerFor(plan, cluster, endpoint, id).result;
  }

  return {
    originationFor: resultOf,

    targetFor(cluster: Cluster, endpoint: Endpoint): UpstreamTarget | OriginationError {
      const id = identity();
      const plan = planFor(cluster, id);
      if (!plan.perEndpoint) {
        const shared = plan.shared;
        if (shared === undefined) return endpoint;
        if ('error' in shared) return shared;
        // Endpoint-independent TLS still needs a target per endpoint: cache it the same way.
        let answer = plan.answers.get(endpoint.id);
        if (answer === undefined) {
          answer = { result: shared, target: targetOf(endpoint, shared) };
          if (plan.answers.size >= MAX_ENDPOINTS) plan.answers.clear();
          plan.answers.set(endpoint.id, answer);
        }
        return answer.target;
      }
      const answer = answerFor(plan, cluster, endpoint, id);
      // A plaintext answer holds the endpoint object seen first; hand back the caller's own.
      return answer.result === undefined ? endpoint : answer.target;
    },

    preload(clusters: Iterable<Cluster>): string[] {
      const problems: string[] = [];
      const id = identity();
      for (const cluster of clusters) {
        if (cluster.trafficPolicy?.tls === undefined) continue;
        const plan = planFor(cluster, id);
        const shared = plan.shared;
        if (shared !== undefined && 'error' in shared) problems.push(`${cluster.name}: ${shared.error}`);
      }
      return problems;
    },

    refreshFiles(): void {
      files.clear();
      interned.clear();
      generation++;
    },
  };
}

/** Auto-mTLS eligibility of an endpoint (spec §1.1, §3.7). */
function acceptsIstioMtls(endpoint: Endpoint): boolean {
  const mode = endpoint.labels[TLS_MODE_LABEL];
  if (mode !== undefined) return mode === 'istio';
  return endpoint.serviceAccount !== undefined && endpoint.serviceAccount !== '';
}

function targetOf(endpoint: Endpoint, result: OriginationResult): UpstreamTarget | OriginationError {
  if (result === undefined) return endpoint;
  if ('error' in result) return result;
  return { address: endpoint.address, port: endpoint.port, tls: result };
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** The DR `tls` record (already validated) as typed fields; no `mode` means DISABLE (§3.7). */
function readClientTls(record: Readonly<Record<string, unknown>>): ClientTls {
  const mode = record['mode'];
  const sans = record['subjectAltNames'];
  return {
    mode: mode === 'SIMPLE' || mode === 'MUTUAL' || mode === 'ISTIO_MUTUAL' ? mode : 'DISABLE',
    sni: str(record['sni']) || undefined,
    subjectAltNames: Array.isArray(sans) ? sans.filter((s): s is string => typeof s === 'string') : NONE,
    caCertificates: str(record['caCertificates']) || undefined,
    clientCertificate: str(record['clientCertificate']) || undefined,
    privateKey: str(record['privateKey']) || undefined,
    insecureSkipVerify: record['insecureSkipVerify'] === true,
  };
}
