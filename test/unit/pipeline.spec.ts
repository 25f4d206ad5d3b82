/** Bounded queues and the staged pipeline: backpressure, batching, draining and stopping. */
import { BoundedQueue, Pipeline } from "../../lib/pipeline";

const tick = () => new Promise((r) => setImmediate(r));

describe("BoundedQueue", () => {
	test("a push into a full queue waits until an item is taken", async () => {
		const q = new BoundedQueue<number>(2);
		await q.push(1);
		await q.push(2);
		let third = false;
		const p = q.push(3).then(() => (third = true));
		await tick();
		expect(third).toBe(false);
		expect(q.length).toBe(2);
		expect(q.blockedPushes).toBe(1);
		expect(await q.take(1)).toEqual([1]);
		await p;
		expect(third).toBe(true);
		expect(await q.take(10)).toEqual([2, 3]);
		expect(q.maxLength).toBe(2);
	});

	test("take waits for an item and returns at most max, in order", async () => {
		const q = new BoundedQueue<string>(10);
		const taken = q.take(3);
		await q.push("a");
		expect(await taken).toEqual(["a"]);
		for (const s of ["b", "c", "d", "e"]) await q.push(s);
		expect(await q.take(3)).toEqual(["b", "c", "d"]);
		expect(await q.take(3)).toEqual(["e"]);
	});

	test("close: takers get what is left then [], producers get an error", async () => {
		const q = new BoundedQueue<number>(1);
		await q.push(1);
		const blocked = q.push(2);
		q.close();
		await expect(blocked).rejects.toThrow(/closed/);
		expect(await q.take(5)).toEqual([1]);
		expect(await q.take(5)).toEqual([]);
		await expect(q.push(3)).rejects.toThrow(/closed/);
	});

	test.each([0, -1, 1.5])("capacity %p is refused", (capacity) => expect(() => new BoundedQueue(capacity)).toThrow(RangeError));

	test("many producers never push it over its capacity", async () => {
		const q = new BoundedQueue<number>(5);
		const producers = Array.from({ length: 20 }, (_, i) => (async () => { for (let k = 0; k < 50; k++) await q.push(i * 100 + k); })());
		const seen: number[] = [];
		while (seen.length < 1000) {
			expect(q.length).toBeLessThanOrEqual(5);
			seen.push(...(await q.take(3)));
		}
		await Promise.all(producers);
		expect(new Set(seen).size).toBe(1000);
		expect(q.maxLength).toBe(5);
		expect(q.maxWaiting).toBeLessThanOrEqual(20);
	});
});

describe("Pipeline", () => {
	test("items go through every stage; filter, merge and batch sizes are honoured", async () => {
		const stored: number[][] = [];
		const batchSizes: number[] = [];
		const p = new Pipeline<number>(
			[
				{ name: "validate", concurrency: 3, batchSize: 4, handle: (xs: number[]) => xs.filter((x) => x % 2 === 0) },
				{ name: "aggregate", batchSize: 10, handle: (xs: number[]) => { batchSizes.push(xs.length); return [xs]; } },
				{ name: "store", handle: async (batches: number[][]) => { stored.push(...batches); return []; } },
			],
			{ capacity: 8 },
		);
		p.start();
		for (let i = 0; i < 100; i++) await p.push(i);
		await p.drain();
		const all = stored.flat().sort((a, b) => a - b);
		expect(all).toEqual(Array.from({ length: 50 }, (_, i) => i * 2));
		expect(Math.max(...batchSizes)).toBeLessThanOrEqual(10);
		const stats = p.stats();
		expect(stats.stages.map((s) => s.name)).toEqual(["validate", "aggregate", "store"]);
		expect(stats.stages[0]).toMatchObject({ received: 100, emitted: 50, queued: 0 });
		for (const s of stats.stages) expect(s.maxQueued).toBeLessThanOrEqual(s.capacity);
		await p.stop();
	});

	test("a slow last stage slows the producer: queues stay within their bounds", async () => {
		let release!: () => void;
		let gate = new Promise<void>((r) => (release = r));
		let stored = 0;
		const p = new Pipeline<number>(
			[
				{ name: "a", handle: (xs: number[]) => xs },
				{ name: "b", handle: async (xs: number[]) => { await gate; stored += xs.length; return []; } },
			],
			{ capacity: 3 },
		);
		p.start();
		let accepted = 0;
		const producer = (async () => { for (let i = 0; i < 20; i++) { await p.push(i); accepted++; } })();
		for (let i = 0; i < 20; i++) await tick();
		// b holds 1 in hand, b's queue 3, a holds 1 in hand waiting to hand on, a's queue 3: 8 at most.
		expect(accepted).toBeLessThanOrEqual(8);
		expect(p.stats().stages[0].blockedPushes).toBeGreaterThan(0);
		release();
		gate = Promise.resolve();
		await producer;
		await p.drain();
		expect(stored).toBe(20);
		for (const s of p.stats().stages) expect(s.maxQueued).toBeLessThanOrEqual(3);
		await p.stop();
	});

	test("a failing batch is reported and counted, the pipeline goes on", async () => {
		const errors: string[] = [];
		const out: number[] = [];
		const p = new Pipeline<number>(
			[{ name: "store", handle: async (xs: number[]) => { if (xs[0] === 3) throw new Error("boom"); out.push(...xs); return []; } }],
			{ capacity: 10, onError: (err, stage) => errors.push(`${stage}: ${(err as Error).message}`) },
		);
		p.start();
		for (let i = 0; i < 5; i++) await p.push(i);
		await p.drain();
		expect(out).toEqual([0, 1, 2, 4]);
		expect(errors).toEqual(["store: boom"]);
		expect(p.stats().stages[0].failed).toBe(1);
		await p.stop();
	});

	test("drain resolves at once when idle; stop finishes what is queued, then refuses pushes", async () => {
		const out: number[] = [];
		const p = new Pipeline<number>([{ name: "slow", handle: async (xs: number[]) => { await tick(); out.push(...xs); return []; } }], { capacity: 100 });
		await p.drain();
		p.start();
		for (let i = 0; i < 10; i++) await p.push(i);
		await p.stop();
		expect(out).toHaveLength(10);
		await expect(p.push(11)).rejects.toThrow(/closed/);
	});

	describe("lingering batches", () => {
		const recording = (lingerMs: number, batchSize: number) => {
			const batches: number[][] = [];
			const p = new Pipeline<number>([{ name: "count", batchSize, lingerMs, handle: (xs: number[]) => (batches.push(xs), []) }], { capacity: 100 });
			p.start();
			return { p, batches };
		};

		test("items arriving within the linger go together", async () => {
			const { p, batches } = recording(50, 10);
			for (let i = 0; i < 4; i++) {
				await p.push(i);
				await tick();
			}
			expect(batches).toEqual([]);
			await new Promise((r) => setTimeout(r, 120));
			expect(batches).toEqual([[0, 1, 2, 3]]);
			await p.stop();
		});

		test("a batch that fills up goes without waiting out the linger", async () => {
			const { p, batches } = recording(60_000, 3);
			for (let i = 0; i < 3; i++) await p.push(i);
			await tick();
			await tick();
			expect(batches).toEqual([[0, 1, 2]]);
			await p.stop();
		});

		test("a lingered batch reaches the next stage as one batch", async () => {
			const seen: number[][] = [];
			const p = new Pipeline<number>(
				[
					{ name: "gather", batchSize: 10, lingerMs: 60_000, handle: (xs: number[]) => xs },
					{ name: "count", batchSize: 10, handle: (xs: number[]) => (seen.push(xs), []) },
				],
				{ capacity: 100 },
			);
			p.start();
			for (let i = 0; i < 4; i++) await p.push(i);
			await p.drain();
			expect(seen).toEqual([[0, 1, 2, 3]]);
			await p.stop();
		});

		test("drain and stop cut the linger short", async () => {
			const { p, batches } = recording(60_000, 10);
			await p.push(1);
			const t = Date.now();
			await p.drain();
			expect(batches).toEqual([[1]]);
			await p.push(2);
			await tick();
			await p.stop();
			expect(batches).toEqual([[1], [2]]);
			expect(Date.now() - t).toBeLessThan(1000);
		});
	});
});
