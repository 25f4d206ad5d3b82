/**
 * Counting each batch once: the conditional counter update (run on NeDB in memory, as the default
 * deployment stores it) and the batches rebuilt from pending claim rows.
 */
import { Collection } from "../../mixins/collection";
import { counterId, counterUpdate, notCountedYet, unfinishedBatches, type BatchTag, type Increment, type PendingClaim } from "../../lib/analytics-events";

const HOUR = "2024-05-08T13:00:00.000Z";
const inc = (metric: Increment["metric"], key: string, value: number, dims: Record<string, string> = {}): Increment => ({ bucket: HOUR, metric, key, value, dims });

describe("a counter counts each batch once (NeDB)", () => {
	let hourly: Collection;
	const revenue = inc("revenue", "USD", 1000, { currency: "USD" });
	const fields = { bucket: revenue.bucket, metric: revenue.metric, key: revenue.key };

	/** As the service writes a counter: an upsert by id; when refused as a duplicate, an update by its fields. Whether it counted. */
	async function add(i: Increment, tag: BatchTag): Promise<boolean> {
		const counter = { bucket: i.bucket, metric: i.metric, key: i.key };
		try {
			return !!(await hourly.updateOne({ id: counterId(i), ...counter, ...notCountedYet(tag) }, counterUpdate(i, tag, new Date()), { upsert: true }));
		} catch (err: any) {
			if (err?.type !== "DUPLICATE") throw err;
			return !!(await hourly.updateOne({ ...counter, ...notCountedYet(tag) }, counterUpdate(i, tag, new Date())));
		}
	}
	const value = async () => (await hourly.findOne(fields))?.value;

	beforeEach(async () => {
		hourly = new Collection("hourly", { fields: { bucket: String, metric: String, key: String, value: Number }, indexes: [{ fields: { bucket: 1, metric: 1, key: 1 }, unique: true }] }, {});
		await hourly.connect();
	});

	test("a new counter is created with the batch on it, holding nothing of the condition", async () => {
		expect(await add(revenue, { writer: "w1", seq: 1 })).toBe(true);
		const stored = await hourly.findById(counterId(revenue));
		expect(stored).toEqual({ id: counterId(revenue), ...fields, value: 1000, currency: "USD", updatedAt: expect.any(Date), countedUpTo: { w1: 1 } });
	});

	test.each([
		["the same batch again", [{ writer: "w1", seq: 1 }], [false], 1000],
		["an earlier batch of the same writer (finished late)", [{ writer: "w1", seq: 0 }], [false], 1000],
		["the writer's next batch", [{ writer: "w1", seq: 2 }], [true], 2000],
		["another writer's batch with the same number", [{ writer: "w2", seq: 1 }], [true], 2000],
		["two writers, each twice", [{ writer: "w2", seq: 5 }, { writer: "w1", seq: 1 }, { writer: "w2", seq: 5 }, { writer: "w1", seq: 3 }], [true, false, false, true], 3000],
	])("after batch w1#1: %s", async (_name, tags, counted, total) => {
		await add(revenue, { writer: "w1", seq: 1 });
		const results: boolean[] = [];
		for (const tag of tags) results.push(await add(revenue, tag));
		expect(results).toEqual(counted);
		expect(await value()).toBe(total);
	});

	test("the same batch written twice at once counts once", async () => {
		const results = await Promise.all([add(revenue, { writer: "w1", seq: 7 }), add(revenue, { writer: "w1", seq: 7 })]);
		expect(results.sort()).toEqual([false, true]);
		expect(await value()).toBe(1000);
	});

	test("a counter stored before counters had an id or batches is found by its fields, and counts each batch once", async () => {
		await hourly.insert({ ...fields, value: 500, currency: "USD" });
		expect(await add(revenue, { writer: "w1", seq: 1 })).toBe(true);
		expect(await add(revenue, { writer: "w1", seq: 1 })).toBe(false);
		expect(await hourly.count({})).toBe(1);
		expect(await value()).toBe(1500);
	});
});

describe("unfinishedBatches", () => {
	const run = { nodeID: "n1", instanceID: "i1" };
	const row = (eventId: string, claim: string, writer: string, seq: number, increments: Increment[]): PendingClaim<typeof run> => ({ eventId, claim, counting: { writer, seq, runner: run, increments } });

	test("rows are grouped by claim, increments summed per counter (dims kept, what nets to zero dropped)", () => {
		const batches = unfinishedBatches([
			row("e1", "c1", "w1", 1, [inc("orders", "confirmed|USD", 1, { status: "confirmed", currency: "USD" }), inc("revenue", "USD", 4500, { currency: "USD" })]),
			row("e2", "c1", "w1", 1, [inc("orders", "confirmed|USD", 1, { status: "confirmed", currency: "USD" }), inc("revenue", "USD", 500, { currency: "USD" })]),
			row("e3", "c1", "w1", 1, [inc("revenue", "USD", -5000, { currency: "USD" }), inc("refunds", "USD", 5000, { currency: "USD" })]),
		]);
		expect(batches).toEqual([
			{
				claim: "c1",
				writer: "w1",
				seq: 1,
				runner: run,
				eventIds: ["e1", "e2", "e3"],
				increments: [inc("orders", "confirmed|USD", 2, { status: "confirmed", currency: "USD" }), inc("refunds", "USD", 5000, { currency: "USD" })],
			},
		]);
	});

	test("each writer's batches in the order it counted them, whatever order the rows come in", () => {
		const views = [inc("funnel", "views", 1, { step: "views" })];
		const batches = unfinishedBatches([
			row("e1", "c10", "wB", 10, views),
			row("e2", "c9", "wB", 9, views),
			row("e3", "c2", "wA", 2, views),
			row("e4", "c10", "wB", 10, views),
			row("e5", "c1", "wA", 1, views),
		]);
		expect(batches.map((b) => [b.writer, b.seq, b.eventIds])).toEqual([
			["wA", 1, ["e5"]],
			["wA", 2, ["e3"]],
			["wB", 9, ["e2"]],
			["wB", 10, ["e1", "e4"]],
		]);
		expect(unfinishedBatches([])).toEqual([]);
	});
});
