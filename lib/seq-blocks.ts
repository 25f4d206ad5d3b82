/**
 * Sequence numbers handed out from blocks reserved in a persisted counter: one counter write per
 * block instead of one per number. Numbers only grow; what is left of a block when the process
 * stops is skipped, so there are gaps, never repeats. Only for a single writer (every caller in this
 * process, one at a time): two writers holding blocks would hand out numbers out of order.
 */
export class SeqBlocks {
	private next = 1;
	private last = 0;

	/** `reserve(n)` adds n to the persisted counter atomically and returns its new value. */
	constructor(
		private readonly reserve: (n: number) => Promise<number>,
		private readonly blockSize: number,
	) {
		if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`blockSize must be a positive integer, got ${blockSize}`);
	}

	/** The first of `n` consecutive numbers, all larger than any handed out before. */
	async take(n: number): Promise<number> {
		if (this.next + n - 1 > this.last) {
			const size = Math.max(n, this.blockSize);
			const last = await this.reserve(size);
			this.last = last;
			this.next = last - size + 1;
		}
		const first = this.next;
		this.next += n;
		return first;
	}
}
