/**
 * What an upstream client keeps per endpoint (a pool, an idle-socket stack), by address and then port,
 * so that a lookup on the hot path builds no key string. Outside, endpoints are named `address:port`.
 */
export class EndpointMap<T> {
  private readonly byAddress = new Map<string, Map<number, T>>();
  private readonly create: (address: string, port: number) => T;

  /** `create` builds the value for an endpoint seen for the first time; it may throw. */
  constructor(create: (address: string, port: number) => T) {
    this.create = create;
  }

  /** The value for `address:port`, created on first use. */
  get(address: string, port: number): T {
    let byPort = this.byAddress.get(address);
    if (byPort === undefined) {
      byPort = new Map();
      this.byAddress.set(address, byPort);
    }
    let value = byPort.get(port);
    if (value === undefined) {
      value = this.create(address, port);
      byPort.set(port, value);
    }
    return value;
  }

  /** The value for `address:port` when there is one; never creates it. */
  peek(address: string, port: number): T | undefined {
    return this.byAddress.get(address)?.get(port);
  }

  /** Removes the endpoints whose `address:port` is not in `keys`, handing each value to `dropped`. */
  retain(keys: ReadonlySet<string>, dropped: (value: T) => void): void {
    for (const [address, byPort] of this.byAddress) {
      for (const [port, value] of byPort) {
        if (keys.has(`${address}:${port}`)) continue;
        byPort.delete(port);
        dropped(value);
      }
      if (byPort.size === 0) this.byAddress.delete(address);
    }
  }

  /** `address:port` of every endpoint, or of those `include` accepts. */
  keys(include?: (value: T) => boolean): string[] {
    const keys: string[] = [];
    for (const [address, byPort] of this.byAddress)
      for (const [port, value] of byPort)
        if (include === undefined || include(value)) keys.push(`${address}:${port}`);
    return keys;
  }

  *values(): Generator<T> {
    for (const byPort of this.byAddress.values()) yield* byPort.values();
  }

  clear(): void {
    this.byAddress.clear();
  }
}
