/**
 * The outbox consumer mixin on a real broker, against real outboxes: catch-up at start and when a
 * source appears, paging in order, a failing handler holding its source (nothing skipped), `settle`
 * before the cursor is saved, a cursor that never moves back, live events handed over once, a
 * stop mid-read; and the publishing side: sequence order under concurrency, events published together.
 */
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { OutboxConsumerMixin, outboxSeqOf } from "../../mixins/outbox-consumer.mixin";
import { waitFor } from "../helpers/wait";
import { sourceWithOutbox } from "../helpers/fakes";

interface Seen {
	event: string;
	eventId: string;
	live: boolean;
	emittedAt: Date | undefined;
}

/** A consumer that records what it handles; `failOn` makes one event id throw, `settleFails` makes settle throw. */
function consumer() {
	const state = { seen: [] as Seen[], failOn: null as string | null, settleFails: false, settled: 0, delayMs: 0 };
	const schema: ServiceSchema<any> = {
		name: "consumer",
		mixins: [
			OutboxConsumerMixin({
				cursors: "consumer_cursors",
				sources: { orders: ["order.confirmed", "order.cancelled"], payments: ["payment.refunded"] },
				handler: "take",
				settle: "settle",
				pageSize: 3,
			}),
		],
		settings: { catchUpDelayMs: 10, catchUpIntervalMs: 60_000 },
		methods: {
			async take(event: string, payload: Record<string, any>, ctx: Context | null, emittedAt?: Date) {
				if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
				if (payload.eventId === state.failOn) throw new Error("handler refused");
				state.seen.push({ event, eventId: payload.eventId, live: ctx !== null, emittedAt });
			},
			async settle() {
				state.settled++;
				if (state.settleFails) throw new Error("not stored");
			},
		},
	};
	return { schema, state };
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("outboxSeqOf reads the sequence of its own source only", () => {
	expect(outboxSeqOf("orders", "orders:42")).toBe(42);
	expect(outboxSeqOf("orders", "payments:42")).toBeNull();
	expect(outboxSeqOf("orders", "order:42")).toBeNull();
	expect(outboxSeqOf("orders", "orders:x")).toBeNull();
	expect(outboxSeqOf("orders", undefined)).toBeNull();
});

describe("outbox consumer mixin", () => {
	let shop: Shop;
	let svc: any;
	let state: ReturnType<typeof consumer>["state"];
	const announce = (source: string, event: string, orderId: string) => shop.broker.call<string, any>(`${source}.announce`, { event, payload: { orderId } });
	const cursors = async () => Object.fromEntries((await svc.outboxCursors.find({})).map((c: any) => [c.id, c.seq]));
	const caughtUp = () => state.seen.filter((s) => !s.live).map((s) => s.eventId);

	beforeAll(async () => {
		// Only orders runs at first; payments appears later.
		shop = await startShop({ services: [sourceWithOutbox("orders")], noGateway: true });
		for (let i = 1; i <= 7; i++) await announce("orders", i === 4 ? "order.shipped" : "order.confirmed", `o${i}`);
		const c = consumer();
		state = c.state;
		svc = shop.broker.createService(c.schema);
		await shop.broker.waitForServices("consumer");
	});
	afterAll(() => shop?.stop());

	test("at start, every event of a running source is handled once, in order, page by page; the unavailable source is skipped", async () => {
		await waitFor(cursors, (c) => c.orders === 7);
		// Seven outbox events in pages of three; the one not listed (#4) is not read.
		expect(caughtUp()).toEqual(["orders:1", "orders:2", "orders:3", "orders:5", "orders:6", "orders:7"]);
		expect(state.seen.every((s) => s.emittedAt instanceof Date && s.emittedAt.getTime() <= Date.now())).toBe(true);
		expect(state.settled).toBe(2);
		expect((await cursors()).payments).toBeUndefined();
	});

	test("a source that appears later is read when it does", async () => {
		const payments = shop.broker.createService(sourceWithOutbox("payments"));
		await shop.broker.waitForServices("payments");
		// Handled live; the catch-up that the new source set off moves the cursor past it without handing it over again.
		await announce("payments", "payment.refunded", "o1");
		await waitFor(cursors, (c) => c.payments === 1);
		expect(state.seen.filter((s) => s.eventId === "payments:1").map((s) => s.live)).toEqual([true]);
		await shop.broker.destroyService(payments);
		// Gone again: reading is skipped without an error.
		await svc.catchUpAll();
		expect((await cursors()).payments).toBe(1);
	});

	test("a live event reaches the handler with its ctx, once, and the cursor follows it", async () => {
		const before = state.seen.length;
		const settled = state.settled;
		await announce("orders", "order.cancelled", "o8");
		await waitFor(cursors, (c) => c.orders === 8);
		expect(state.seen.slice(before).map((s) => [s.eventId, s.live, s.emittedAt instanceof Date])).toEqual([["orders:8", true, false]]);
		// The cursor moved past it only after `settle`: a handler that only queues has stored it by then.
		expect(state.settled).toBe(settled + 1);
	});

	test("a live event the handler refused is handed over again by the catch-up", async () => {
		state.failOn = "orders:9";
		await announce("orders", "order.confirmed", "o9");
		state.failOn = null;
		await waitFor(cursors, (c) => c.orders === 9);
		expect(state.seen.filter((s) => s.eventId === "orders:9").map((s) => s.live)).toEqual([false]);
	});

	test("a failing handler holds its source at that event: the events after it wait, nothing is skipped", async () => {
		state.failOn = "orders:11";
		for (const id of ["o10", "o11", "o12"]) await announce("orders", "order.confirmed", id);
		await sleep(150);
		await svc.catchUpAll();
		// #10 was handled live and is passed; #11 failed (live and caught up), so the cursor stays before it and #12 waits.
		expect((await cursors()).orders).toBe(10);
		expect(state.seen.filter((s) => s.eventId === "orders:12" && !s.live)).toEqual([]);
		state.failOn = null;
		await svc.catchUpAll();
		expect((await cursors()).orders).toBe(12);
		// #11 is handed over now; #12, taken live, is not handed over again.
		expect(caughtUp().slice(-1)).toEqual(["orders:11"]);
	});

	test("the cursor is saved only once `settle` resolved", async () => {
		state.settleFails = true;
		await announce("orders", "order.confirmed", "o13");
		await sleep(150);
		await svc.catchUpAll();
		expect((await cursors()).orders).toBe(12);
		state.settleFails = false;
		await svc.catchUpAll();
		expect((await cursors()).orders).toBe(13);
		// Taken live, but `settle` failed: the catch-up hands it over again (the handler is idempotent by eventId).
		expect(caughtUp().filter((id) => id === "orders:13").length).toBeGreaterThanOrEqual(1);
	});

	test("the cursor never moves back; a reset replays from the start", async () => {
		await svc.outboxCursors.updateOne({ id: "orders" }, { $set: { seq: 100 } });
		await svc.catchUpAll();
		expect((await cursors()).orders).toBe(100);
		const before = caughtUp().length;
		await svc.outboxCursors.removeMany({});
		await svc.catchUpAll();
		expect((await cursors()).orders).toBe(13);
		expect(caughtUp().length - before).toBe(12);
	});

	test("stopping mid-read ends after the current event and keeps how far it got", async () => {
		await svc.outboxCursors.removeMany({});
		state.delayMs = 30;
		const reading = svc.catchUpAll();
		await waitFor(cursors, (c) => (c.orders ?? 0) >= 3);
		await shop.broker.destroyService(svc);
		await reading;
		const stoppedAt = (await svc.outboxCursors.findById("orders"))?.seq;
		expect(stoppedAt).toBeGreaterThanOrEqual(3);
		expect(stoppedAt).toBeLessThan(13);
	});
});

describe("outbox consumer catching up with several sources", () => {
	let shop: Shop;
	afterAll(() => shop?.stop());

	test("sources are read one after another, in the order the consumer lists them: an order's news before its payment's", async () => {
		shop = await startShop({ services: [sourceWithOutbox("orders"), sourceWithOutbox("payments")], noGateway: true });
		await shop.broker.call("payments.announce", { event: "payment.refunded", payload: { orderId: "o1" } });
		for (const orderId of ["o1", "o2", "o3"]) await shop.broker.call("orders.announce", { event: "order.confirmed", payload: { orderId } });
		const c = consumer();
		// Each event takes a moment to handle, as a message being written does: sources read side by side would interleave.
		c.state.delayMs = 20;
		const svc: any = shop.broker.createService(c.schema);
		await shop.broker.waitForServices("consumer");
		await waitFor(async () => Object.fromEntries((await svc.outboxCursors.find({})).map((x: any) => [x.id, x.seq])), (x) => x.orders === 3 && x.payments === 1);
		expect(c.state.seen.map((x) => x.eventId)).toEqual(["orders:1", "orders:2", "orders:3", "payments:1"]);
	});
});

describe("outbox publishing", () => {
	let shop: Shop;
	let source: any;
	beforeAll(async () => {
		shop = await startShop({ services: [sourceWithOutbox("orders")], noGateway: true });
		source = shop.broker.getLocalService("orders");
	});
	afterAll(() => shop?.stop());

	test("concurrent publishes reach the outbox in sequence order, even when an earlier insert is slow", async () => {
		const insertMany = source.outbox.insertMany.bind(source.outbox);
		const stored: number[] = [];
		let slow = true;
		const spy = jest.spyOn(source.outbox, "insertMany").mockImplementation(async (rows: any) => {
			if (slow) {
				slow = false;
				await sleep(50);
			}
			const out = await insertMany(rows);
			stored.push(...rows.map((r: any) => r.seq));
			return out;
		});
		try {
			const ids = await Promise.all(["a", "b", "c"].map((orderId) => source.publish(null, "order.confirmed", { orderId })));
			expect(ids.map((id: string) => outboxSeqOf("orders", id))).toEqual(stored);
			expect(stored).toEqual([...stored].sort((x, y) => x - y));
		} finally {
			spy.mockRestore();
		}
	});

	test("events published together take consecutive numbers with at most one counter update", async () => {
		const counter = jest.spyOn(source.outboxCounters, "updateOne");
		try {
			const ids: string[] = await source.publishAll(null, [
				{ event: "order.created", payload: { orderId: "d" } },
				{ event: "order.confirmed", payload: { orderId: "d" } },
			]);
			const [first, second] = ids.map((id) => outboxSeqOf("orders", id)!);
			expect(second).toBe(first + 1);
			expect(counter.mock.calls.length).toBeLessThanOrEqual(1);
			const { events } = await shop.broker.call<any, any>("orders.outboxSince", { after: first - 1 });
			expect(events.map((e: any) => [e.seq, e.event, e.payload.eventId])).toEqual([
				[first, "order.created", ids[0]],
				[second, "order.confirmed", ids[1]],
			]);
		} finally {
			counter.mockRestore();
		}
	});

	test("the embedded outbox reserves its numbers in blocks: 50 events, consecutive, at most one counter update", async () => {
		const counter = jest.spyOn(source.outboxCounters, "updateOne");
		try {
			const ids: string[] = [];
			for (let i = 0; i < 50; i++) ids.push(await source.publish(null, "order.confirmed", { orderId: `blk-${i}` }));
			const seqs = ids.map((id) => outboxSeqOf("orders", id)!);
			expect(seqs).toEqual(seqs.map((_, i) => seqs[0] + i));
			expect(counter.mock.calls.length).toBeLessThanOrEqual(1);
			expect((await source.outboxCounters.findOne({ id: "seq" })).value).toBeGreaterThanOrEqual(seqs[49]);
		} finally {
			counter.mockRestore();
		}
	});
});
