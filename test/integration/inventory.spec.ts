/**
 * Inventory: reservations that never oversell under concurrency, are all or nothing, idempotent
 * per order, and leave an audit trail that sums to the stock.
 */
import type { Context, ServiceSchema } from "moleculer";
import { loadService, startShop, type Shop } from "../helpers/shop";
import { FakeUsers, fakeToken } from "../helpers/fakes";
import { buildMongooseSchema } from "../../mixins/collection";
import { productCollections } from "../../services/products.service";

const changes: any[] = [];
const Listener: ServiceSchema = {
	name: "listener",
	events: {
		"inventory.changed"(ctx: Context<any>) {
			changes.push(ctx.params);
		},
	},
};

/** The real products service with its sweeper timer off: tests sweep when they choose. */
const productsWithSweep = (intervalMs: number): ServiceSchema<any> => ({ name: "products", mixins: [loadService("products")], settings: { reservationSweep: { intervalMs } } });

/**
 * A sweep's "now" for "stale after 0 ms": a millisecond on, so what was written within the current
 * millisecond is stale too (the sweeps pick `updatedAt < now`; a fast run wrote and swept in the same one).
 */
const justAfterNow = () => new Date(Date.now() + 1);

const admin = fakeToken("admin-1", "admin");
const customer = fakeToken("cust-1");

describe("inventory", () => {
	let shop: Shop;
	let svc: any;
	let n = 0;
	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, Listener, productsWithSweep(0)] });
		svc = shop.broker.getLocalService("products");
	});
	afterAll(() => shop.stop());

	/** A product with one variant per given stock; returns the variant ids. */
	async function variantsWithStock(...stocks: number[]): Promise<string[]> {
		n++;
		const res = await shop.http.post("/api/products", {
			name: `Stocked ${n}`,
			price: 500,
			currency: "USD",
			variants: stocks.map((stock, i) => ({ sku: `STK-${n}-${i}`, stock, options: { Size: `S${i}` } })),
		}, { token: admin });
		expect(res.status).toBe(201);
		return res.body.variants.map((v: any) => v.id);
	}

	/**
	 * Holds a reservation's stock update of `variantId` until `resume()`: `reached` settles when the
	 * reservation gets there. `restore()` puts the real update back.
	 */
	function holdStockUpdateOf(variantId: string) {
		const original = svc.db.variants.updateOne.bind(svc.db.variants);
		let resume!: () => void;
		let atLine!: () => void;
		const resumed = new Promise<void>((r) => (resume = r));
		const reached = new Promise<void>((r) => (atLine = r));
		const spy = jest.spyOn(svc.db.variants, "updateOne").mockImplementation(async (...args: any[]) => {
			if (args[0].id === variantId && args[0].stock) {
				atLine();
				await resumed;
			}
			return original(...args);
		});
		return { reached, resume, restore: () => spy.mockRestore() };
	}

	/** Audit rows matching `match` throw (only the first one with `once`), as if the node died right before writing them. */
	function crashBeforeRowWhere(match: (row: any) => boolean, opts: { once?: boolean } = {}) {
		const original = svc.db.inventory_transactions.insert.bind(svc.db.inventory_transactions);
		const spy = jest.spyOn(svc.db.inventory_transactions, "insert").mockImplementation(async (row: any) => {
			if (!match(row)) return original(row);
			if (opts.once) spy.mockRestore();
			throw new Error("node died");
		});
		return spy;
	}

	const stockOf = async (variantId: string) => (await svc.db.variants.findById(variantId)).stock as number;
	const auditOf = async (variantId: string) => (await svc.db.inventory_transactions.find({ variantId })) as any[];
	const auditSum = async (variantId: string) => (await auditOf(variantId)).reduce((s, t) => s + t.delta, 0);
	const reserve = (orderId: string, items: Array<{ variantId: string; quantity: number }>) => shop.broker.call<any, any>("products.reserve", { orderId, items });
	const release = (orderId: string) => shop.broker.call<any, any>("products.release", { orderId });
	const commit = (orderId: string) => shop.broker.call<any, any>("products.commit", { orderId });

	test("stock 10, 100 concurrent reservations of 1: exactly 10 succeed, stock 0, the audit sums up", async () => {
		const [v] = await variantsWithStock(10);
		const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => reserve(`race-${i}`, [{ variantId: v, quantity: 1 }])));
		const ok = results.filter((r) => r.status === "fulfilled");
		const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
		expect(ok).toHaveLength(10);
		expect(failed).toHaveLength(90);
		for (const f of failed) expect(f.reason).toMatchObject({ code: 409, type: "INSUFFICIENT_STOCK", data: { variantId: v } });
		expect(await stockOf(v)).toBe(0);

		const audit = await auditOf(v);
		expect(audit.every((t) => t.stockAfter >= 0)).toBe(true);
		expect(audit.filter((t) => t.type === "reservation")).toHaveLength(10);
		expect(await auditSum(v)).toBe(0); // +10 opening stock, 10 × -1
		const events = changes.filter((c) => c.variantId === v && c.type === "reservation");
		expect(events).toHaveLength(10);
		expect(events.every((e) => e.delta === -1 && e.stock >= 0 && e.eventId && e.reference.startsWith("race-"))).toBe(true);
	});

	test("two-line reservations where one line is short: no partial reservation survives", async () => {
		const [plenty, scarce] = await variantsWithStock(100, 5);
		const results = await Promise.allSettled(
			Array.from({ length: 30 }, (_, i) => reserve(`pair-${i}`, [{ variantId: plenty, quantity: 2 }, { variantId: scarce, quantity: 1 }])),
		);
		const ok = results.filter((r) => r.status === "fulfilled").length;
		expect(ok).toBe(5);
		expect(await stockOf(scarce)).toBe(0);
		// Only the orders that got both lines keep the first one.
		expect(await stockOf(plenty)).toBe(100 - 2 * ok);
		expect(await auditSum(plenty)).toBe(await stockOf(plenty));
		expect(await auditSum(scarce)).toBe(0);
		const reserved = await svc.db.reservations.find({ orderId: { $regex: /^pair-/ } });
		expect(reserved).toHaveLength(5);
		expect(reserved.every((r: any) => r.status === "reserved")).toBe(true);
		// The failed orders' earlier lines were put back, each recorded as a release.
		const releases = (await auditOf(plenty)).filter((t) => t.type === "release");
		expect(releases).toHaveLength(25);
	});

	test("two lines of the same variant are summed before the stock check", async () => {
		const [v] = await variantsWithStock(3);
		await expect(reserve("summed-1", [{ variantId: v, quantity: 2 }, { variantId: v, quantity: 2 }])).rejects.toMatchObject({ code: 409, data: { variantId: v, requested: 4, available: 3 } });
		expect(await stockOf(v)).toBe(3);
		const res = await reserve("summed-2", [{ variantId: v, quantity: 1 }, { variantId: v, quantity: 2 }]);
		expect(res.items).toEqual([{ variantId: v, quantity: 3, productId: expect.any(String) }]);
		expect(await stockOf(v)).toBe(0);
	});

	test("idempotent: reserving twice reserves once, releasing twice releases once", async () => {
		const [v, w] = await variantsWithStock(10, 10);
		const items = [{ variantId: v, quantity: 3 }, { variantId: w, quantity: 1 }];
		const first = await reserve("idem-1", items);
		const again = await reserve("idem-1", [...items].reverse());
		expect(again).toEqual(first);
		expect(await stockOf(v)).toBe(7);
		expect(await stockOf(w)).toBe(9);

		expect(await release("idem-1")).toEqual({ released: true });
		// The repeat changes nothing and says so.
		expect(await release("idem-1")).toEqual({ released: false, alreadyReleased: true });
		expect(await stockOf(v)).toBe(10);
		expect(await stockOf(w)).toBe(10);
		expect((await auditOf(v)).map((t) => t.type).sort()).toEqual(["purchase", "release", "reservation"]);
		// A released order cannot take stock again under the same id.
		await expect(reserve("idem-1", items)).rejects.toMatchObject({ code: 409, type: "RESERVATION_RELEASED" });
		await expect(reserve("idem-1", [{ variantId: v, quantity: 1 }])).rejects.toMatchObject({ code: 409 });
	});

	test("a sold order's return cut short by a crash (marked returned, its stock not moved back) is finished by the sweeper, once", async () => {
		const [v] = await variantsWithStock(6);
		await reserve("return-cut", [{ variantId: v, quantity: 2 }]);
		expect((await commit("return-cut")).committed).toBe(true);
		expect(await stockOf(v)).toBe(4);
		// The node marked the reservation returned (its return open) and died before moving the stock back.
		await svc.db.reservations.updateOne({ orderId: "return-cut", status: "committed" }, { $set: { status: "returned", returnOpen: true } });
		// A release finds it released already; the stock comes back with the sweep, once.
		expect(await release("return-cut")).toMatchObject({ released: false, alreadyReleased: true });
		expect(await stockOf(v)).toBe(4);
		expect((await svc.sweepReservations(justAfterNow(), 0)).swept).toBeGreaterThanOrEqual(1);
		expect(await stockOf(v)).toBe(6);
		await svc.sweepReservations(justAfterNow(), 0);
		expect(await stockOf(v)).toBe(6);
		expect(await auditSum(v)).toBe(6);
		// A finished return (older ones carry no mark) is never taken again.
		expect((await svc.db.reservations.findOne({ orderId: "return-cut" })).returnOpen).toBe(false);
	});

	test("idempotent under concurrency: duplicate reserve and release calls of one order apply once", async () => {
		const [v] = await variantsWithStock(10);
		const items = [{ variantId: v, quantity: 2 }];
		const reserves = await Promise.all(Array.from({ length: 8 }, () => reserve("dup-1", items)));
		expect(reserves.every((r) => r.orderId === "dup-1")).toBe(true);
		expect(await stockOf(v)).toBe(8);
		const releases = await Promise.all(Array.from({ length: 8 }, () => release("dup-1")));
		expect(releases.filter((r) => r.released)).toHaveLength(1);
		expect(await stockOf(v)).toBe(10);
		expect(await auditSum(v)).toBe(10);
	});

	test("a second reserve of an order with other items is a conflict", async () => {
		const [v] = await variantsWithStock(10);
		await reserve("mismatch-1", [{ variantId: v, quantity: 1 }]);
		await expect(reserve("mismatch-1", [{ variantId: v, quantity: 2 }])).rejects.toMatchObject({ code: 409, type: "RESERVATION_MISMATCH" });
		expect(await stockOf(v)).toBe(9);
	});

	test("commit turns a reservation into a sale once; release after commit is a return", async () => {
		const [v] = await variantsWithStock(5);
		await reserve("sale-1", [{ variantId: v, quantity: 2 }]);
		expect(await commit("sale-1")).toEqual({ committed: true });
		expect(await commit("sale-1")).toEqual({ committed: true, alreadyCommitted: true });
		expect(await stockOf(v)).toBe(3);
		const sales = (await auditOf(v)).filter((t) => t.type === "sale");
		expect(sales).toEqual([expect.objectContaining({ delta: 0, quantity: 2, reference: "sale-1" })]);

		expect(await release("sale-1")).toEqual({ released: true });
		expect(await release("sale-1")).toEqual({ released: false, alreadyReleased: true });
		expect(await stockOf(v)).toBe(5);
		expect((await auditOf(v)).filter((t) => t.type === "return")).toEqual([expect.objectContaining({ delta: 2, reference: "sale-1" })]);
		expect(await commit("sale-1")).toEqual({ committed: false });
		expect(await commit("never-reserved")).toEqual({ committed: false });
	});

	test("a release that arrives before its reserve keeps the late reserve from taking stock", async () => {
		const [v] = await variantsWithStock(5);
		expect(await release("early-1")).toEqual({ released: false });
		await expect(reserve("early-1", [{ variantId: v, quantity: 1 }])).rejects.toMatchObject({ code: 409 });
		expect(await stockOf(v)).toBe(5);
	});

	test("a release during the reserve puts everything back", async () => {
		const [v, w] = await variantsWithStock(5, 5);
		// Hold the second line's update until the release has marked the reservation.
		const secondLine = holdStockUpdateOf(w);
		try {
			const reserving = reserve("mid-1", [{ variantId: v, quantity: 1 }, { variantId: w, quantity: 1 }]);
			await secondLine.reached;
			expect(await release("mid-1")).toEqual({ released: true });
			secondLine.resume();
			await expect(reserving).rejects.toMatchObject({ code: 409, type: "RESERVATION_RELEASED" });
		} finally {
			secondLine.restore();
		}
		expect(await stockOf(v)).toBe(5);
		expect(await stockOf(w)).toBe(5);
		expect((await svc.db.reservations.findOne({ orderId: "mid-1" })).status).toBe("released");
	});

	test("404 for an unknown variant; 409 for an archived product", async () => {
		const [v] = await variantsWithStock(5);
		await expect(reserve("unknown-1", [{ variantId: v, quantity: 1 }, { variantId: "nope", quantity: 1 }])).rejects.toMatchObject({ code: 404, data: { variantId: "nope" } });
		expect(await stockOf(v)).toBe(5);
		const productId = (await svc.db.variants.findById(v)).productId;
		await shop.http.delete(`/api/products/${productId}`, { token: admin });
		await expect(reserve("archived-1", [{ variantId: v, quantity: 1 }])).rejects.toMatchObject({ code: 409, data: { variantId: v } });
		expect(await stockOf(v)).toBe(5);
	});

	test("checkStock reports each (summed) line", async () => {
		const [v, w] = await variantsWithStock(4, 0);
		const res = await shop.broker.call<any, any>("products.checkStock", { items: [{ variantId: v, quantity: 2 }, { variantId: w, quantity: 1 }, { variantId: v, quantity: 1 }, { variantId: "nope", quantity: 1 }] });
		expect(res).toEqual({
			ok: false,
			items: [
				{ variantId: v, requested: 3, available: 4, ok: true },
				{ variantId: w, requested: 1, available: 0, ok: false },
				{ variantId: "nope", requested: 1, available: 0, ok: false },
			],
		});
		expect((await shop.broker.call<any, any>("products.checkStock", { items: [{ variantId: v, quantity: 4 }] })).ok).toBe(true);
	});

	describe("adjust and history over HTTP", () => {
		test("admin adjusts stock, never below zero, and every change is in the history", async () => {
			const [v] = await variantsWithStock(2);
			const up = await shop.http.post(`/api/inventory/${v}/adjust`, { delta: 5, reason: "restock PO-17" }, { token: admin });
			expect(up.status).toBe(200);
			expect(up.body).toMatchObject({ variantId: v, stock: 7, delta: 5 });
			const down = await shop.http.post(`/api/inventory/${v}/adjust`, { delta: -3, reason: "damaged" }, { token: admin });
			expect(down.body.stock).toBe(4);
			const tooMuch = await shop.http.post(`/api/inventory/${v}/adjust`, { delta: -5, reason: "count" }, { token: admin });
			expect(tooMuch.status).toBe(409);
			expect(tooMuch.body.data).toMatchObject({ variantId: v, available: 4 });
			expect(await stockOf(v)).toBe(4);

			expect((await shop.http.post(`/api/inventory/${v}/adjust`, { delta: 0, reason: "x" }, { token: admin })).status).toBe(422);
			expect((await shop.http.post(`/api/inventory/${v}/adjust`, { delta: 1.5, reason: "x" }, { token: admin })).status).toBe(422);
			expect((await shop.http.post(`/api/inventory/${v}/adjust`, { delta: 1 }, { token: admin })).status).toBe(422);
			// Goods received add stock: a negative "purchase" would tell the trail a wrong story.
			const negativePurchase = await shop.http.post(`/api/inventory/${v}/adjust`, { delta: -1, reason: "PO-18", type: "purchase" }, { token: admin });
			expect([negativePurchase.status, negativePurchase.body.data?.[0]?.field]).toEqual([422, "delta"]);
			expect((await shop.http.post("/api/inventory/nope/adjust", { delta: 1, reason: "x" }, { token: admin })).status).toBe(404);
			expect((await shop.http.post(`/api/inventory/${v}/adjust`, { delta: 1, reason: "x" }, { token: customer })).status).toBe(403);

			await reserve("hist-1", [{ variantId: v, quantity: 1 }]);
			const history = await shop.http.get(`/api/inventory/${v}/history`, { token: admin });
			expect(history.status).toBe(200);
			expect(history.body).toMatchObject({ total: 4, page: 1 });
			expect(history.body.rows.map((r: any) => [r.type, r.delta]).sort()).toEqual([["adjustment", -3], ["adjustment", 5], ["purchase", 2], ["reservation", -1]]);
			expect(history.body.rows[0]).toMatchObject({ reference: expect.any(String), createdAt: expect.any(String) });
			expect(history.body.rows.find((r: any) => r.delta === 5)).toMatchObject({ reference: "restock PO-17", userId: "admin-1" });
			expect((await shop.http.get(`/api/inventory/${v}/history`, { token: customer })).status).toBe(403);
			expect((await shop.http.get("/api/inventory/nope/history", { token: admin })).status).toBe(404);
		});

		test("concurrent negative adjustments stop at zero", async () => {
			const [v] = await variantsWithStock(5);
			const results = await Promise.all(Array.from({ length: 12 }, () => shop.http.post(`/api/inventory/${v}/adjust`, { delta: -1, reason: "shrinkage" }, { token: admin })));
			expect(results.filter((r) => r.status === 200)).toHaveLength(5);
			expect(results.filter((r) => r.status === 409)).toHaveLength(7);
			expect(await stockOf(v)).toBe(0);
			expect(await auditSum(v)).toBe(0);
		});
	});

	describe("stock changes outside reservations cut short by a crash", () => {
		/** Makes the next audit row of this variant throw, as if the node died right before writing it. */
		const crashBeforeRowOf = (variantId: string) => crashBeforeRowWhere((row) => row.variantId === variantId, { once: true });
		const parkedOf = async (variantId: string) => (await svc.db.variants.findById(variantId)).pendingMove;
		const agePark = (variantId: string) => svc.db.variants.updateOne({ id: variantId }, { $set: { "pendingMove.since": Date.now() - 3 * 60_000 } });

		test("an adjustment that died before its audit row gets the row from the sweeper, once", async () => {
			const [v] = await variantsWithStock(4);
			crashBeforeRowOf(v);
			expect((await shop.http.post(`/api/inventory/${v}/adjust`, { delta: 3, reason: "restock" }, { token: admin })).status).toBe(500);
			expect(await stockOf(v)).toBe(7);
			expect(await auditSum(v)).toBe(4);
			expect(await parkedOf(v)).toMatchObject({ delta: 3, type: "adjustment", reference: "restock", userId: "admin-1" });

			// Not yet stale: the sweeper leaves it to its owner.
			expect(await svc.sweepParkedMoves()).toEqual({ finished: 0 });
			await agePark(v);
			expect(await svc.sweepParkedMoves()).toEqual({ finished: 1 });
			expect(await svc.sweepParkedMoves()).toEqual({ finished: 0 });
			expect(await auditSum(v)).toBe(7);
			expect(await parkedOf(v)).toBeUndefined();
			expect((await auditOf(v)).find((t) => t.delta === 3)).toMatchObject({ type: "adjustment", reference: "restock", userId: "admin-1", recovered: true });
		});

		test("the variant's next change waits for a fresh parked movement and finishes a stale one first", async () => {
			const [v] = await variantsWithStock(10);
			crashBeforeRowOf(v);
			await shop.http.post(`/api/inventory/${v}/adjust`, { delta: -2, reason: "damaged" }, { token: admin });
			// Fresh: another change waits for it, then gives up with a 409 rather than skip its row.
			const waited = Date.now();
			const blocked = await shop.http.post(`/api/inventory/${v}/adjust`, { delta: 1, reason: "found one" }, { token: admin });
			expect(blocked.status).toBe(409);
			expect(blocked.body.type).toBe("STOCK_CHANGE_IN_PROGRESS");
			expect(Date.now() - waited).toBeGreaterThanOrEqual(2500);
			// Stale: the next change writes the dead one's row first, then makes its own.
			await agePark(v);
			const next = await shop.http.post(`/api/inventory/${v}/adjust`, { delta: 1, reason: "found one" }, { token: admin });
			expect(next.status).toBe(200);
			expect(next.body.stock).toBe(9);
			expect(await auditSum(v)).toBe(9);
			expect((await auditOf(v)).map((t) => [t.type, t.delta]).sort()).toEqual([["adjustment", -2], ["adjustment", 1], ["purchase", 10]]);
		}, 10_000);

		test("a keyed change repeated after a crash moves the stock once", async () => {
			const [v] = await variantsWithStock(5);
			crashBeforeRowOf(v);
			await expect(svc.moveStock(null, v, 2, "return", "order-r1", { key: "ret:r1:v" })).rejects.toThrow("node died");
			expect(await stockOf(v)).toBe(7);
			// The retry (a replayed release) finds its own parked movement: the row is written, no stock moves.
			expect(await svc.moveStock(null, v, 2, "return", "order-r1", { key: "ret:r1:v" })).toMatchObject({ stock: 7 });
			expect(await svc.moveStock(null, v, 2, "return", "order-r1", { key: "ret:r1:v" })).toMatchObject({ stock: 7 });
			expect(await auditSum(v)).toBe(7);
			expect(await parkedOf(v)).toBeUndefined();
		});
	});

	describe("product creation cut short by a crash", () => {
		const newProduct = (sku: string, stocks: number[]) => ({
			name: `Half Made ${sku}`,
			price: 900,
			currency: "USD",
			variants: stocks.map((stock, i) => ({ sku: `${sku}-${i}`, stock, options: { Size: `S${i}` } })),
		});

		test("died after storing its variants, before their opening stock's audit rows: hidden, then finished by the sweeper", async () => {
			crashBeforeRowWhere((row) => row.reference === "initial stock", { once: true });
			const res = await shop.http.post("/api/products", newProduct("HALF-A", [6, 2]), { token: admin });
			expect(res.status).toBe(500);
			const [product] = await svc.db.products.find({ slug: "half-made-half-a" });
			// Not on sale while half made: customers do not see it.
			expect(product).toMatchObject({ isActive: false, creating: { variants: 2 } });
			expect((await shop.http.get(`/api/products/${product.id}`)).status).toBe(404);
			const variants = await svc.db.variants.find({ productId: product.id });

			// The regular sweep leaves a fresh one to its request; once stale (or at a single process's start) it is finished.
			expect(await svc.finishInterruptedCreations()).toEqual({ finished: 0, undone: 0 });
			await svc.sweepParkedMoves(justAfterNow(), 0);
			expect(await svc.finishInterruptedCreations(0)).toEqual({ finished: 1, undone: 0 });
			for (const v of variants) expect(await auditSum(v.id)).toBe(await stockOf(v.id));
			expect((await svc.db.variants.find({ productId: product.id })).map((v: any) => v.stock).sort()).toEqual([2, 6]);
			expect((await shop.http.get(`/api/products/${product.id}`)).body).toMatchObject({ isActive: true });
			expect(await svc.db.products.findById(product.id)).not.toHaveProperty("creating");
		});

		test("died before storing its variants: undone, so the admin's retry can have the slug and SKUs", async () => {
			const product = await svc.db.products.insert({ name: "Half Made B", slug: "half-made-b", price: 900, currency: "USD", isActive: false, creating: { since: Date.now() - 3 * 60_000, variants: 2 }, createdAt: new Date(), updatedAt: new Date() });
			expect(await svc.finishInterruptedCreations()).toEqual({ finished: 0, undone: 1 });
			expect(await svc.db.products.findById(product.id)).toBeNull();
			const retry = await shop.http.post("/api/products", { ...newProduct("HALF-B", [3]), slug: "half-made-b" }, { token: admin });
			expect(retry.status).toBe(201);
			expect(await auditSum(retry.body.variants[0].id)).toBe(3);
		});

		/** A product whose creation died after storing its variants: hidden, with its creation mark, until the sweeper decides. */
		async function createCutShort(sku: string, stocks: number[]) {
			crashBeforeRowWhere((row) => row.reference === "initial stock", { once: true });
			expect((await shop.http.post("/api/products", newProduct(sku, stocks), { token: admin })).status).toBe(500);
			const [product] = await svc.db.products.find({ slug: `half-made-${sku.toLowerCase()}` });
			expect(product).toMatchObject({ isActive: false, creating: { skus: stocks.map((_, i) => `${sku}-${i}`) } });
			return product.id as string;
		}
		const sweepCreations = async () => {
			await svc.sweepParkedMoves(justAfterNow(), 0);
			return svc.finishInterruptedCreations(0);
		};

		test("while it is being created, archive, edits and new variants answer 409 PRODUCT_BEING_CREATED and change nothing; the sweeper then puts it on sale whole", async () => {
			const id = await createCutShort("HALF-C", [5, 1]);
			const refused = [
				await shop.http.delete(`/api/products/${id}`, { token: admin }),
				await shop.http.patch(`/api/products/${id}`, { isActive: false }, { token: admin }),
				await shop.http.patch(`/api/products/${id}`, { isActive: true }, { token: admin }),
				await shop.http.patch(`/api/products/${id}`, { name: "Renamed" }, { token: admin }),
				await shop.http.post(`/api/products/${id}/variants`, { sku: "HALF-C-LATE", stock: 4, options: { Size: "XL" } }, { token: admin }),
			];
			for (const res of refused) expect([res.status, res.body.type]).toEqual([409, "PRODUCT_BEING_CREATED"]);
			expect(await svc.db.products.findById(id)).toMatchObject({ isActive: false, name: "Half Made HALF-C", creating: expect.anything() });
			expect(await svc.db.variants.findOne({ sku: "HALF-C-LATE" })).toBeNull();

			expect(await sweepCreations()).toEqual({ finished: 1, undone: 0 });
			expect((await shop.http.get(`/api/products/${id}`)).body).toMatchObject({ isActive: true, variants: [expect.objectContaining({ sku: "HALF-C-0" }), expect.objectContaining({ sku: "HALF-C-1" })] });
			// Whole now: the admin's archive works.
			expect((await shop.http.delete(`/api/products/${id}`, { token: admin })).body).toMatchObject({ id, isActive: false });
			expect(await svc.db.products.findById(id)).toMatchObject({ isActive: false, archivedAt: expect.any(Date) });
		});

		test("an archive that meets the creation finishing between its write and its read still archives", async () => {
			const id = await createCutShort("HALF-D", [2]);
			const findById = svc.db.products.findById.bind(svc.db.products);
			const spy = jest.spyOn(svc.db.products, "findById").mockImplementationOnce(async (...args: any[]) => {
				// The creation finishes right after the archive found the product not yet on sale.
				expect(await sweepCreations()).toEqual({ finished: 1, undone: 0 });
				return findById(...args);
			});
			try {
				const res = await shop.http.delete(`/api/products/${id}`, { token: admin });
				expect([res.status, res.body.isActive]).toEqual([200, false]);
				expect(spy).toHaveBeenCalledWith(id);
			} finally {
				jest.restoreAllMocks();
			}
			expect(await svc.db.products.findById(id)).toMatchObject({ isActive: false });
		});

		test("the sweeper decides by the SKUs the product was created with, not by how many variants it has", async () => {
			const old = Date.now() - 3 * 60_000;
			const halfMade = async (slug: string, skus: string[], stored: string[]) => {
				const product = await svc.db.products.insert({ name: slug, slug, price: 900, currency: "USD", isActive: false, creating: { since: old, variants: skus.length, skus }, createdAt: new Date(), updatedAt: new Date() });
				for (const sku of stored) await svc.db.variants.insert({ productId: product.id, sku, options: {}, stock: 0, createdAt: new Date(), updatedAt: new Date() });
				return product.id as string;
			};
			// A variant that came some other way (a node on older code) neither stands in for a missing one...
			const missingOne = await halfMade("half-made-e", ["HALF-E-0", "HALF-E-1"], ["HALF-E-0", "HALF-E-OTHER"]);
			// ...nor makes a whole product look broken.
			const whole = await halfMade("half-made-f", ["HALF-F-0", "HALF-F-1"], ["HALF-F-0", "HALF-F-1", "HALF-F-OTHER"]);
			expect(await svc.finishInterruptedCreations()).toEqual({ finished: 1, undone: 1 });
			expect(await svc.db.products.findById(missingOne)).toBeNull();
			expect(await svc.db.variants.find({ productId: missingOne })).toEqual([]);
			expect(await svc.db.products.findById(whole)).toMatchObject({ isActive: true });
			expect(await svc.db.variants.count({ productId: whole })).toBe(3);
		});

		test("a product's creation mark exists only while it is being created, also in the MongoDB schema", () => {
			const mongoose = require("mongoose");
			const Products = mongoose.model(`products_schema_check_${Date.now()}`, buildMongooseSchema(productCollections.products));
			expect(new Products({ name: "Plain", isActive: true }).toObject()).not.toHaveProperty("creating");
			expect(new Products({ name: "New", creating: { since: 1, variants: 1, skus: ["A"] } }).toObject().creating).toEqual({ since: 1, variants: 1, skus: ["A"] });
		});

		test("a product created whole is on sale at once, with an audit row per variant's opening stock and nothing parked", async () => {
			const res = await shop.http.post("/api/products", newProduct("WHOLE", [4, 0]), { token: admin });
			expect(res.status).toBe(201);
			expect(res.body.isActive).toBe(true);
			const variants = await svc.db.variants.find({ productId: res.body.id });
			for (const v of variants) {
				expect(v.pendingMove).toBeUndefined();
				expect(await auditSum(v.id)).toBe(v.stock);
			}
			expect(await svc.db.products.findById(res.body.id)).not.toHaveProperty("creating");
		});
	});

	describe("recovery of reservations cut short by a crash", () => {
		const reservationOf = async (orderId: string) => svc.db.reservations.findOne({ orderId });
		const holdOf = async (variantId: string, orderId: string) => (await svc.db.variants.findById(variantId)).holds?.[(await reservationOf(orderId)).id];
		/** The reservation's last change as if it were three minutes ago: past the two-minute threshold. */
		const age = (orderId: string) => svc.db.reservations.updateOne({ orderId }, { $set: { updatedAt: new Date(Date.now() - 3 * 60_000) } });
		const sweep = (): Promise<{ swept: number }> => svc.sweepReservations();
		const rowsOf = async (orderId: string) => ((await svc.db.inventory_transactions.find({ reference: orderId })) as any[]).map((t) => [t.variantId, t.type, t.delta]).sort();
		const eventsOf = (orderId: string) => changes.filter((c) => c.reference === orderId).map((c) => [c.variantId, c.type, c.delta]).sort();

		/** Makes the audit rows of this order and movement throw, as if the node died right before writing them. */
		const crashBeforeRow = (orderId: string, type: string) => crashBeforeRowWhere((row) => row.reference === orderId && row.type === type);

		test("a reserve that died after its first decrement, before that line's audit row, is rolled back once", async () => {
			const [v, w] = await variantsWithStock(5, 5);
			const spy = crashBeforeRow("crash-1", "reservation");
			try {
				await expect(reserve("crash-1", [{ variantId: v, quantity: 2 }, { variantId: w, quantity: 1 }])).rejects.toThrow("node died");
			} finally {
				spy.mockRestore();
			}
			// What the crash left: stock taken without its row, the record pending, the hold proving the decrement.
			expect(await stockOf(v)).toBe(3);
			expect(await auditSum(v)).toBe(5);
			expect(await stockOf(w)).toBe(5);
			expect(await reservationOf("crash-1")).toMatchObject({ status: "pending", holdsOpen: true });
			expect(await holdOf(v, "crash-1")).toBe(2);

			// Younger than the threshold: a reserve may still be working on it.
			expect(await sweep()).toEqual({ swept: 0 });
			expect(await stockOf(v)).toBe(3);

			await age("crash-1");
			expect(await sweep()).toEqual({ swept: 1 });
			expect(await stockOf(v)).toBe(5);
			expect(await stockOf(w)).toBe(5);
			expect(await auditSum(v)).toBe(5);
			expect(await auditSum(w)).toBe(5);
			expect(await rowsOf("crash-1")).toEqual([[v, "release", 2], [v, "reservation", -2]].sort());
			expect(eventsOf("crash-1")).toEqual([[v, "release", 2], [v, "reservation", -2]].sort());
			expect(await reservationOf("crash-1")).toMatchObject({ status: "released", reason: "expired", holdsOpen: false });
			expect(await holdOf(v, "crash-1")).toBeUndefined();
			// The line never taken is fenced, so a reserve still running late could not take it now.
			expect(await holdOf(w, "crash-1")).toBe(0);

			// A second sweep changes nothing.
			await age("crash-1");
			expect(await sweep()).toEqual({ swept: 0 });
			expect(await stockOf(v)).toBe(5);
			expect(await rowsOf("crash-1")).toHaveLength(2);
			expect(eventsOf("crash-1")).toHaveLength(2);
			// The order's stock is released: no late reserve takes any, and a release says it was done.
			await expect(reserve("crash-1", [{ variantId: v, quantity: 2 }, { variantId: w, quantity: 1 }])).rejects.toMatchObject({ code: 409, type: "RESERVATION_RELEASED" });
			expect(await release("crash-1")).toEqual({ released: false, alreadyReleased: true });
		});

		test("a reserve whose run is known to be over (an earlier run of this node, or its node back as a new run) is rolled back at the next sweep, not after the threshold", async () => {
			const [v] = await variantsWithStock(5);
			const dieMidReserve = async (orderId: string, runner: { nodeID: string; instanceID: string }) => {
				const spy = crashBeforeRow(orderId, "reservation");
				try {
					await expect(reserve(orderId, [{ variantId: v, quantity: 1 }])).rejects.toThrow("node died");
				} finally {
					spy.mockRestore();
				}
				expect(await reservationOf(orderId)).toMatchObject({ status: "pending", runner: { nodeID: svc.broker.nodeID, instanceID: svc.broker.instanceID } });
				await svc.db.reservations.updateOne({ orderId }, { $set: { runner } });
			};
			const registry = svc.broker.registry.nodes;
			const known = jest.spyOn(registry, "get").mockImplementation((id: any) => (id === "catalog-2" ? { id, instanceID: "catalog-2-second-run", available: true } : undefined));
			try {
				await dieMidReserve("over-1", { nodeID: svc.broker.nodeID, instanceID: "an-earlier-run" });
				await dieMidReserve("over-2", { nodeID: "catalog-2", instanceID: "catalog-2-first-run" });
				// Still this run's, a live node's or a lost node's (a paused process carries on): left to the threshold.
				await dieMidReserve("alive-1", { nodeID: svc.broker.nodeID, instanceID: svc.broker.instanceID });
				await dieMidReserve("alive-2", { nodeID: "catalog-2", instanceID: "catalog-2-second-run" });
				await dieMidReserve("lost-1", { nodeID: "catalog-3", instanceID: "catalog-3-run" });
				expect(await stockOf(v)).toBe(0);

				expect(await sweep()).toEqual({ swept: 2 });
				expect(await stockOf(v)).toBe(2);
				for (const orderId of ["over-1", "over-2"]) expect(await reservationOf(orderId)).toMatchObject({ status: "released", reason: "expired", holdsOpen: false });
				for (const orderId of ["alive-1", "alive-2", "lost-1"]) expect(await reservationOf(orderId)).toMatchObject({ status: "pending", holdsOpen: true });
				expect(await sweep()).toEqual({ swept: 0 });
			} finally {
				known.mockRestore();
			}
			for (const orderId of ["alive-1", "alive-2", "lost-1"]) await age(orderId);
			expect(await sweep()).toEqual({ swept: 3 });
			expect(await stockOf(v)).toBe(5);
			expect(await auditSum(v)).toBe(5);
		});

		test("two sweepers at once: one claims the reservation and the stock goes back once", async () => {
			const [v, w, x] = await variantsWithStock(5, 5, 5);
			// The node dies while taking the second line: the first is taken and recorded, the others not.
			const original = svc.db.variants.updateOne.bind(svc.db.variants);
			const spy = jest.spyOn(svc.db.variants, "updateOne").mockImplementation(async (...args: any[]) => {
				if (args[0].id === w && args[0].stock) throw new Error("node died");
				return original(...args);
			});
			try {
				await expect(reserve("crash-2", [{ variantId: v, quantity: 1 }, { variantId: w, quantity: 1 }, { variantId: x, quantity: 1 }])).rejects.toThrow("node died");
			} finally {
				spy.mockRestore();
			}
			expect(await stockOf(v)).toBe(4);
			await age("crash-2");

			const results = await Promise.all([sweep(), sweep()]);
			expect(results.map((r) => r.swept).sort()).toEqual([0, 1]);
			for (const id of [v, w, x]) {
				expect(await stockOf(id)).toBe(5);
				expect(await auditSum(id)).toBe(5);
			}
			expect(await rowsOf("crash-2")).toEqual([[v, "release", 1], [v, "reservation", -1]].sort());
			expect(eventsOf("crash-2")).toEqual([[v, "release", 1], [v, "reservation", -1]].sort());
		});

		test("a put-back whose audit row was lost gets its row, and no stock moves twice", async () => {
			const [plenty, scarce] = await variantsWithStock(5, 0);
			// The second line is short, the first goes back, and the node dies before the release row.
			const spy = crashBeforeRow("crash-3", "release");
			try {
				await expect(reserve("crash-3", [{ variantId: plenty, quantity: 2 }, { variantId: scarce, quantity: 1 }])).rejects.toThrow("node died");
			} finally {
				spy.mockRestore();
			}
			expect(await stockOf(plenty)).toBe(5);
			expect(await auditSum(plenty)).toBe(3);
			await age("crash-3");
			expect(await sweep()).toEqual({ swept: 1 });
			expect(await stockOf(plenty)).toBe(5);
			expect(await auditSum(plenty)).toBe(5);
			expect((await auditOf(plenty)).find((t) => t.type === "release")).toMatchObject({ delta: 2, reference: "crash-3", recovered: true });
			expect(await rowsOf("crash-3")).toEqual([[plenty, "release", 2], [plenty, "reservation", -2]].sort());
		});

		test("a release that came while the dead reserve was pending is completed by the sweeper", async () => {
			const [v, w] = await variantsWithStock(5, 5);
			const spy = crashBeforeRow("crash-4", "reservation");
			try {
				await expect(reserve("crash-4", [{ variantId: v, quantity: 1 }, { variantId: w, quantity: 1 }])).rejects.toThrow("node died");
			} finally {
				spy.mockRestore();
			}
			expect(await release("crash-4")).toEqual({ released: true });
			expect(await reservationOf("crash-4")).toMatchObject({ status: "cancelling" });
			expect(await stockOf(v)).toBe(4);
			await age("crash-4");
			expect(await sweep()).toEqual({ swept: 1 });
			expect(await stockOf(v)).toBe(5);
			expect(await auditSum(v)).toBe(5);
			expect(await reservationOf("crash-4")).toMatchObject({ status: "released", holdsOpen: false });
		});

		test("a reserve still running when the sweeper took it for dead cannot take stock afterwards", async () => {
			const [v, w] = await variantsWithStock(5, 5);
			const secondLine = holdStockUpdateOf(w);
			try {
				const reserving = reserve("zombie-1", [{ variantId: v, quantity: 1 }, { variantId: w, quantity: 1 }]);
				await secondLine.reached;
				await age("zombie-1");
				expect(await sweep()).toEqual({ swept: 1 });
				// Were it to take the second line now and then die, nobody would give that back: the fence stops it.
				const dies = crashBeforeRow("zombie-1", "reservation");
				secondLine.resume();
				try {
					await expect(reserving).rejects.toMatchObject({ code: 409, type: "RESERVATION_RELEASED" });
				} finally {
					dies.mockRestore();
				}
			} finally {
				secondLine.restore();
			}
			for (const id of [v, w]) {
				expect(await stockOf(id)).toBe(5);
				expect(await auditSum(id)).toBe(5);
			}
			expect(await reservationOf("zombie-1")).toMatchObject({ status: "released", reason: "expired" });
		});

		test("reserved and committed reservations are never rolled back; a commit cut short is settled without moving stock", async () => {
			const [v] = await variantsWithStock(10);
			await reserve("sold-1", [{ variantId: v, quantity: 2 }]);
			expect(await commit("sold-1")).toEqual({ committed: true });
			await reserve("unpaid-1", [{ variantId: v, quantity: 1 }]);
			// The node dies while dropping the holds of a commit, after its sale row.
			await reserve("sold-2", [{ variantId: v, quantity: 3 }]);
			const original = svc.db.variants.updateOne.bind(svc.db.variants);
			const spy = jest.spyOn(svc.db.variants, "updateOne").mockImplementation(async (...args: any[]) => {
				if (args[1].$unset && !args[1].$inc) throw new Error("node died");
				return original(...args);
			});
			try {
				await expect(commit("sold-2")).rejects.toThrow("node died");
			} finally {
				spy.mockRestore();
			}
			expect(await reservationOf("sold-2")).toMatchObject({ status: "committed", holdsOpen: true });
			expect(await holdOf(v, "sold-2")).toBe(3);
			for (const orderId of ["sold-1", "unpaid-1", "sold-2"]) await age(orderId);

			expect(await sweep()).toEqual({ swept: 1 });
			expect(await stockOf(v)).toBe(4);
			expect(await auditSum(v)).toBe(4);
			expect(await reservationOf("sold-1")).toMatchObject({ status: "committed", holdsOpen: false });
			expect(await reservationOf("sold-2")).toMatchObject({ status: "committed", holdsOpen: false });
			expect(await holdOf(v, "sold-2")).toBeUndefined();
			expect((await auditOf(v)).filter((t) => t.type === "sale").map((t) => [t.reference, t.quantity]).sort()).toEqual([["sold-1", 2], ["sold-2", 3]]);
			// An order waiting for its payment keeps its stock, however long it waits.
			expect(await reservationOf("unpaid-1")).toMatchObject({ status: "reserved", holdsOpen: true });
			expect(await holdOf(v, "unpaid-1")).toBe(1);
			expect(await sweep()).toEqual({ swept: 0 });
			expect(await stockOf(v)).toBe(4);
			// Commit and release drop their holds themselves.
			expect(await commit("unpaid-1")).toEqual({ committed: true });
			expect(await holdOf(v, "unpaid-1")).toBeUndefined();
			expect(await release("sold-1")).toEqual({ released: true });
			expect(await stockOf(v)).toBe(6);
			expect(await auditSum(v)).toBe(6);
		});
	});

	test("each node sweeps on a timer: a crashed reservation found in the store is rolled back", async () => {
		const node = await startShop({ services: [productsWithSweep(50)], noGateway: true });
		try {
			const products = node.broker.getLocalService("products") as any;
			const created = await node.broker.call<any, any>("products.create", { name: "Swept", price: 100, currency: "USD", variants: [{ sku: "SWEPT-1", stock: 4 }] });
			const v = created.variants[0].id;
			// The state a crash right after the decrement leaves: stock and hold moved, no audit row, the record pending.
			const old = new Date(Date.now() - 10 * 60_000);
			await products.db.variants.updateOne({ id: v }, { $inc: { stock: -3 }, $set: { "holds.r-stored": 3 } });
			await products.db.reservations.insert({ id: "r-stored", orderId: "stored-1", status: "pending", items: [{ variantId: v, quantity: 3, productId: created.id }], holdsOpen: true, createdAt: old, updatedAt: old });
			for (let i = 0; i < 100 && (await products.db.reservations.findById("r-stored")).holdsOpen; i++) await new Promise((r) => setTimeout(r, 20));
			expect(await products.db.reservations.findById("r-stored")).toMatchObject({ status: "released", holdsOpen: false });
			expect((await products.db.variants.findById(v)).stock).toBe(4);
			const trail = await products.db.inventory_transactions.find({ variantId: v });
			expect(trail.reduce((sum: number, t: any) => sum + t.delta, 0)).toBe(4);
		} finally {
			await node.stop();
		}
	});
});
