/**
 * Parent-based sampling: a caller's decision (W3C sampled flag, B3 sampled or debug) always wins, so
 * a trace is recorded by every hop or by none; a request without one is recorded with probability
 * `percent` / 100, drawn from the injected random source.
 */
export class Sampler {
  private readonly ratio: number;
  private readonly random: () => number;

  /** `percent`: 0–100. `random`: uniform in [0, 1), like `Math.random`. */
  constructor(percent: number, random: () => number) {
    this.ratio = Math.min(100, Math.max(0, percent)) / 100;
    this.random = random;
  }

  sampled(callerDecision: boolean | null): boolean {
    if (callerDecision !== null) return callerDecision;
    if (this.ratio <= 0) return false;
    if (this.ratio >= 1) return true;
    return this.random() < this.ratio;
  }
}
