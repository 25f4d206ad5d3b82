/**
 * A staged pipeline connected by bounded queues. When a queue is full, whoever pushes into it
 * (the producer, or the stage before) awaits until a worker takes items out: a burst slows its
 * producer down instead of growing memory. No broker, no I/O: stages are plain async functions.
 */

/** FIFO with a fixed capacity: `push` waits while full, `take` waits while empty. */
export class BoundedQueue<T> {
	private items: T[] = [];
	private head = 0;
	private takers: Array<() => void> = [];
	private pushers: Array<() => void> = [];
	/** Lingering takers: each woken once the queue holds its `length` items (or by `stopWaiting`). */
	private fillers = new Set<{ length: number; wake: () => void }>();
	private closed = false;
	/** The most items ever held at once: never above `capacity`. */
	maxLength = 0;
	/** Pushes that found the queue full and had to wait (backpressure applied). */
	blockedPushes = 0;
	/** The most producers ever waiting at once. */
	maxWaiting = 0;

	constructor(readonly capacity: number) {
		if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
	}

	get length(): number {
		return this.items.length - this.head;
	}

	get waiting(): number {
		return this.pushers.length;
	}

	get isClosed(): boolean {
		return this.closed;
	}

	async push(item: T): Promise<void> {
		if (this.length >= this.capacity && !this.closed) {
			this.blockedPushes++;
			// Re-check after each wake-up: another producer may have filled the slot first.
			while (this.length >= this.capacity && !this.closed) {
				await new Promise<void>((resolve) => {
					this.pushers.push(resolve);
					this.maxWaiting = Math.max(this.maxWaiting, this.pushers.length);
				});
			}
		}
		if (this.closed) throw new Error("queue is closed");
		this.append(item);
	}

	/** Pushes without waiting when there is room; false (nothing pushed) when full or closed. */
	tryPush(item: T): boolean {
		if (this.length >= this.capacity || this.closed) return false;
		this.append(item);
		return true;
	}

	private append(item: T): void {
		this.items.push(item);
		this.maxLength = Math.max(this.maxLength, this.length);
		this.takers.shift()?.();
		for (const f of this.fillers) if (this.length >= f.length) f.wake();
	}

	/**
	 * Waits until the queue holds `length` items, `ms` pass, it is closed or `stopWaiting` is called:
	 * what a batch that should fill up waits for.
	 */
	async waitForLength(length: number, ms: number): Promise<void> {
		if (this.length >= length || this.closed) return;
		let timer: NodeJS.Timeout | undefined;
		const filler = { length, wake: () => undefined as void };
		await new Promise<void>((resolve) => {
			filler.wake = resolve;
			this.fillers.add(filler);
			timer = setTimeout(resolve, ms);
		});
		clearTimeout(timer);
		this.fillers.delete(filler);
	}

	/** Ends every `waitForLength` now. */
	stopWaiting(): void {
		for (const f of this.fillers) f.wake();
	}

	/** Up to `max` items already queued, without waiting. */
	takeNow(max: number): T[] {
		return this.length === 0 ? [] : this.takeQueued(max);
	}

	/** Up to `max` items, waiting for at least one; [] once closed and empty. */
	async take(max = 1): Promise<T[]> {
		while (this.length === 0) {
			if (this.closed) return [];
			await new Promise<void>((resolve) => this.takers.push(resolve));
		}
		return this.takeQueued(max);
	}

	private takeQueued(max: number): T[] {
		const n = Math.min(max, this.length);
		const batch = this.items.slice(this.head, this.head + n);
		this.head += n;
		// Compact now and then so the backing array does not keep taken slots alive.
		if (this.head > 1024 && this.head * 2 > this.items.length) {
			this.items = this.items.slice(this.head);
			this.head = 0;
		}
		for (let i = 0; i < n && this.pushers.length; i++) this.pushers.shift()!();
		return batch;
	}

	/** Wakes every waiter: takers drain what is left, producers get an error. */
	close(): void {
		this.closed = true;
		this.stopWaiting();
		for (const wake of this.takers.splice(0)) wake();
		for (const wake of this.pushers.splice(0)) wake();
	}
}

export interface StageDefinition<I = any, O = any> {
	name: string;
	/** Items per call of `handle` (default 1). */
	batchSize?: number;
	/** Workers running `handle` at once (default 1). */
	concurrency?: number;
	/** Capacity of the queue in front of this stage (default: the pipeline's). */
	capacity?: number;
	/**
	 * How long a batch that is not full waits for more items (default 0: it goes at once). Fewer,
	 * larger batches for stages whose cost is per call; `drain` and `stop` cut the wait short.
	 */
	lingerMs?: number;
	/** Returns what goes on to the next stage (any number of items: filter, split or merge). */
	handle(batch: I[]): Promise<O[]> | O[];
}

export interface StageStats {
	name: string;
	capacity: number;
	queued: number;
	maxQueued: number;
	blockedPushes: number;
	maxWaiting: number;
	/** Items taken in, handed on, and lost to a failed `handle`. */
	received: number;
	emitted: number;
	failed: number;
	busyWorkers: number;
}

export interface PipelineStats {
	running: boolean;
	stages: StageStats[];
}

export interface PipelineOptions {
	/** Default capacity of every queue. */
	capacity: number;
	/** Called when a stage throws; the batch is dropped (the stage decides itself what to retry). */
	onError?: (err: unknown, stage: string, batch: unknown[]) => void;
}

interface StageState {
	def: StageDefinition;
	queue: BoundedQueue<unknown>;
	/** Accepted into this stage's queue and not yet fully handled: what `drain` waits for. */
	pending: number;
	busy: number;
	received: number;
	emitted: number;
	failed: number;
	workers: Promise<void>[];
}

export class Pipeline<I> {
	private stages: StageState[];
	private running = false;
	private idleWaiters: Array<() => void> = [];

	constructor(stages: StageDefinition[], private opts: PipelineOptions) {
		if (!stages.length) throw new Error("a pipeline needs at least one stage");
		this.stages = stages.map((def) => ({
			def,
			queue: new BoundedQueue<unknown>(def.capacity ?? opts.capacity),
			pending: 0,
			busy: 0,
			received: 0,
			emitted: 0,
			failed: 0,
			workers: [],
		}));
	}

	start(): void {
		if (this.running) return;
		this.running = true;
		this.stages.forEach((stage, i) => {
			for (let w = 0; w < (stage.def.concurrency ?? 1); w++) stage.workers.push(this.work(i));
		});
	}

	/** Ingest: resolves once the item is queued, after waiting while the first queue is full. */
	push(item: I): Promise<void> {
		return this.enqueue(0, item);
	}

	/** Resolves when everything pushed so far has gone through every stage. */
	drain(): Promise<void> {
		if (this.isIdle()) return Promise.resolve();
		for (const stage of this.stages) stage.queue.stopWaiting();
		return new Promise((resolve) => this.idleWaiters.push(resolve));
	}

	/** Finishes what is queued, then stops the workers. Later pushes throw. */
	async stop(): Promise<void> {
		if (!this.running) return;
		// Close stage by stage so each one's output still fits into the next, still open queue.
		for (const stage of this.stages) {
			stage.queue.close();
			await Promise.all(stage.workers);
			stage.workers = [];
		}
		this.running = false;
	}

	stats(): PipelineStats {
		return {
			running: this.running,
			stages: this.stages.map((s) => ({
				name: s.def.name,
				capacity: s.queue.capacity,
				queued: s.queue.length,
				maxQueued: s.queue.maxLength,
				blockedPushes: s.queue.blockedPushes,
				maxWaiting: s.queue.maxWaiting,
				received: s.received,
				emitted: s.emitted,
				failed: s.failed,
				busyWorkers: s.busy,
			})),
		};
	}

	private async enqueue(index: number, item: unknown): Promise<void> {
		const stage = this.stages[index];
		// Counted before it is queued, so a worker that finishes it first never sees pending < 0.
		stage.pending++;
		try {
			await stage.queue.push(item);
		} catch (err) {
			stage.pending--;
			this.wakeIfIdle();
			throw err;
		}
	}

	private tryEnqueue(index: number, item: unknown): boolean {
		const stage = this.stages[index];
		if (!stage.queue.tryPush(item)) return false;
		stage.pending++;
		return true;
	}

	private async work(index: number): Promise<void> {
		const stage = this.stages[index];
		const next = index + 1 < this.stages.length ? index + 1 : -1;
		const size = stage.def.batchSize ?? 1;
		for (;;) {
			let batch = await stage.queue.take(size);
			if (!batch.length) return;
			// While a drain waits, batches go without lingering.
			if (stage.def.lingerMs && batch.length < size && !this.idleWaiters.length) {
				await stage.queue.waitForLength(size - batch.length, stage.def.lingerMs);
				batch = batch.concat(stage.queue.takeNow(size - batch.length));
			}
			stage.busy++;
			stage.received += batch.length;
			try {
				const out = await stage.def.handle(batch);
				for (const item of out) {
					// While there is room, a batch's output goes in without yielding, so the next stage can take it as one batch.
					if (next >= 0 && !this.tryEnqueue(next, item)) await this.enqueue(next, item);
					stage.emitted++;
				}
			} catch (err) {
				stage.failed += batch.length;
				this.opts.onError?.(err, stage.def.name, batch);
			} finally {
				stage.busy--;
				// Only now, after the output sits in the next queue, is this batch no longer pending.
				stage.pending -= batch.length;
				this.wakeIfIdle();
			}
		}
	}

	private wakeIfIdle(): void {
		if (this.isIdle()) for (const wake of this.idleWaiters.splice(0)) wake();
	}

	private isIdle(): boolean {
		return this.stages.every((s) => s.pending === 0);
	}
}
