/**
 * A bounded worker pool: at most `concurrency` jobs run at once, at most `maxQueued` wait, and an
 * item whose key is already waiting or running is not taken twice (the same message pushed by a
 * live event and by the recovery scan is sent once).
 */
export interface WorkQueueOptions<T> {
	concurrency: number;
	worker: (item: T) => Promise<void>;
	/** Identity of an item for de-duplication; defaults to the item itself as a string. */
	key?: (item: T) => string;
	/** Items beyond this are refused (push returns false); the caller keeps them elsewhere. */
	maxQueued?: number;
	onError?: (err: unknown, item: T) => void;
}

export class WorkQueue<T> {
	private readonly waiting: T[] = [];
	private readonly keys = new Set<string>();
	private active = 0;
	private stopped = false;
	private idleWaiters: Array<() => void> = [];
	private concurrency: number;

	constructor(private readonly opts: WorkQueueOptions<T>) {
		this.concurrency = WorkQueue.checkConcurrency(opts.concurrency);
	}

	private static checkConcurrency(n: number): number {
		if (!Number.isInteger(n) || n < 1) throw new RangeError(`concurrency must be a positive integer, got ${n}`);
		return n;
	}

	/** Jobs running now. */
	get running(): number {
		return this.active;
	}

	/** Jobs waiting for a free worker. */
	get size(): number {
		return this.waiting.length;
	}

	/** Queues an item; false when stopped, full, or the same key is already waiting or running. */
	push(item: T): boolean {
		if (this.stopped) return false;
		const key = this.keyOf(item);
		if (this.keys.has(key)) return false;
		if (this.waiting.length >= (this.opts.maxQueued ?? Infinity)) return false;
		this.keys.add(key);
		this.waiting.push(item);
		this.pump();
		return true;
	}

	has(item: T): boolean {
		return this.keys.has(this.keyOf(item));
	}

	setConcurrency(n: number): void {
		this.concurrency = WorkQueue.checkConcurrency(n);
		this.pump();
	}

	/** Resolves when nothing is waiting or running. */
	onIdle(): Promise<void> {
		if (this.active === 0 && this.waiting.length === 0) return Promise.resolve();
		return new Promise((resolve) => this.idleWaiters.push(resolve));
	}

	/** Refuses new items, drops the waiting ones (they are returned) and waits for the running ones. */
	async stop(): Promise<T[]> {
		this.stopped = true;
		const dropped = this.waiting.splice(0);
		for (const item of dropped) this.keys.delete(this.keyOf(item));
		await this.onIdle();
		return dropped;
	}

	private keyOf(item: T): string {
		return this.opts.key ? this.opts.key(item) : String(item);
	}

	private pump(): void {
		while (this.active < this.concurrency && this.waiting.length > 0) {
			const item = this.waiting.shift()!;
			this.active++;
			void this.run(item);
		}
		if (this.active === 0 && this.waiting.length === 0) {
			const waiters = this.idleWaiters.splice(0);
			for (const resolve of waiters) resolve();
		}
	}

	private async run(item: T): Promise<void> {
		try {
			await this.opts.worker(item);
		} catch (err) {
			this.opts.onError?.(err, item);
		} finally {
			this.active--;
			this.keys.delete(this.keyOf(item));
			this.pump();
		}
	}
}
