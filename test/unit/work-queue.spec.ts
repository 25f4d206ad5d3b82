import { WorkQueue } from "../../lib/work-queue";

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/** A worker whose jobs finish when the test says so. */
function gated() {
	const open = new Map<string, () => void>();
	const started: string[] = [];
	let running = 0;
	let maxRunning = 0;
	const worker = (item: string) =>
		new Promise<void>((resolve) => {
			started.push(item);
			running++;
			maxRunning = Math.max(maxRunning, running);
			open.set(item, () => {
				running--;
				resolve();
			});
		});
	return { worker, started, finish: (item: string) => open.get(item)!(), stats: () => ({ running, maxRunning }) };
}

describe("WorkQueue", () => {
	test.each([1, 2, 4])("runs at most %i jobs at once, in order", async (concurrency) => {
		const g = gated();
		const q = new WorkQueue<string>({ concurrency, worker: g.worker });
		const items = ["a", "b", "c", "d", "e", "f"];
		items.forEach((i) => q.push(i));
		await tick();
		expect(g.started).toEqual(items.slice(0, concurrency));
		expect(q.running).toBe(concurrency);
		expect(q.size).toBe(items.length - concurrency);
		for (const i of items) {
			g.finish(i);
			await tick();
		}
		await q.onIdle();
		expect(g.started).toEqual(items);
		expect(g.stats().maxRunning).toBe(concurrency);
	});

	test("an item already waiting or running is not taken twice", async () => {
		const g = gated();
		const q = new WorkQueue<string>({ concurrency: 1, worker: g.worker });
		expect(q.push("a")).toBe(true);
		expect(q.push("a")).toBe(false);
		expect(q.push("b")).toBe(true);
		expect(q.push("b")).toBe(false);
		await tick();
		g.finish("a");
		await tick();
		// Done items may come again.
		expect(q.push("a")).toBe(true);
		g.finish("b");
		await tick();
		g.finish("a");
		await q.onIdle();
		expect(g.started).toEqual(["a", "b", "a"]);
	});

	test("a full queue refuses, and keys can come from the item", async () => {
		const g = gated();
		const q = new WorkQueue<{ id: string }>({ concurrency: 1, maxQueued: 1, worker: (x) => g.worker(x.id), key: (x) => x.id });
		expect(q.push({ id: "a" })).toBe(true);
		await tick();
		expect(q.push({ id: "b" })).toBe(true);
		expect(q.push({ id: "c" })).toBe(false);
		expect(q.push({ id: "a" })).toBe(false);
		g.finish("a");
		await tick();
		g.finish("b");
		await q.onIdle();
	});

	test("a failing job is reported and does not stop the others", async () => {
		const errors: string[] = [];
		const done: string[] = [];
		const q = new WorkQueue<string>({
			concurrency: 2,
			worker: async (i) => {
				if (i === "bad") throw new Error("boom");
				done.push(i);
			},
			onError: (err, item) => errors.push(`${item}: ${(err as Error).message}`),
		});
		["a", "bad", "b"].forEach((i) => q.push(i));
		await q.onIdle();
		expect(done).toEqual(["a", "b"]);
		expect(errors).toEqual(["bad: boom"]);
	});

	test("stop drops the waiting items, waits for the running ones, then refuses", async () => {
		const g = gated();
		const q = new WorkQueue<string>({ concurrency: 1, worker: g.worker });
		["a", "b", "c"].forEach((i) => q.push(i));
		await tick();
		let stopped: string[] | null = null;
		const stopping = q.stop().then((d) => (stopped = d));
		await tick();
		expect(stopped).toBeNull();
		g.finish("a");
		await stopping;
		expect(stopped).toEqual(["b", "c"]);
		expect(q.push("d")).toBe(false);
		expect(g.started).toEqual(["a"]);
	});

	test("concurrency must be a positive integer; it can be raised at run time", async () => {
		expect(() => new WorkQueue({ concurrency: 0, worker: async () => undefined })).toThrow(RangeError);
		expect(() => new WorkQueue({ concurrency: 1.5, worker: async () => undefined })).toThrow(RangeError);
		const g = gated();
		const q = new WorkQueue<string>({ concurrency: 1, worker: g.worker });
		["a", "b", "c"].forEach((i) => q.push(i));
		await tick();
		q.setConcurrency(3);
		await tick();
		expect(g.started).toEqual(["a", "b", "c"]);
		["a", "b", "c"].forEach(g.finish);
		await q.onIdle();
	});
});
