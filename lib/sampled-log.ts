/**
 * A log line repeated at the rate of some traffic (a refused webhook, a call finding no node) written
 * once per interval per key, saying how many were held back since: the log stays readable, and
 * nothing is hidden.
 */
export class SampledLog {
	private readonly last = new Map<string, { at: number; heldBack: number }>();

	constructor(
		private readonly intervalMs = 60_000,
		private readonly now: () => number = Date.now,
	) {}

	/** Whether this one is written: null when held back, else how many were and over how long (0 at first). */
	pass(key: string): { heldBack: number; sinceMs: number } | null {
		const at = this.now();
		const seen = this.last.get(key);
		if (seen && at - seen.at < this.intervalMs) {
			seen.heldBack++;
			return null;
		}
		this.last.set(key, { at, heldBack: 0 });
		return { heldBack: seen?.heldBack ?? 0, sinceMs: seen ? at - seen.at : 0 };
	}
}
