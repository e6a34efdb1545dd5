import type { RouteTable } from '../router/route-types.ts';
import type { ConfigBundle } from './resource-types.ts';

/** One compiled configuration version. Immutable; replaced whole on reload. */
export interface Snapshot {
  /** 1 for the configuration loaded at start-up, +1 per applied reload. */
  readonly version: number;
  /** sha256 of the source files. */
  readonly hash: string;
  readonly loadedAt: Date;
  readonly bundle: ConfigBundle;
  readonly routes: RouteTable;
  readonly outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY';
}

/**
 * The only mutable reference to the configuration. Each request reads `current` once when it
 * starts and keeps that snapshot to its end, so a request never mixes two versions.
 */
export class SnapshotStore {
  private snapshot: Snapshot;
  private readonly listeners: Array<(next: Snapshot, prev: Snapshot) => void> = [];

  constructor(initial: Snapshot) {
    this.snapshot = initial;
  }

  get current(): Snapshot {
    return this.snapshot;
  }

  swap(next: Snapshot): void {
    const prev = this.snapshot;
    this.snapshot = next;
    for (const l of this.listeners) l(next, prev);
  }

  onSwap(listener: (next: Snapshot, prev: Snapshot) => void): void {
    this.listeners.push(listener);
  }
}
