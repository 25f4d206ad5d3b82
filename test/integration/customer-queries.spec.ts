/**
 * A customer's lists (orders, messages, wishlist) and the checks on a customer's orders read that
 * customer's documents, not every customer's: the embedded store answers a query from an index only
 * when the query names all of that index's fields, and these indexes were compound ({userId, createdAt}).
 */
import { startShop, type Shop } from "../helpers/shop";

jest.setTimeout(30_000);

describe("a customer's queries in the embedded store", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: ["users", "orders", "notifications"], noGateway: true });
	});
	afterAll(() => shop?.stop());

	const collection = (service: string, name: string) => (shop.broker.getLocalService(service) as any).db[name];

	test.each([
		["orders", "orders", (userId: string, i: number) => ({ userId, number: `SH-TEST-${userId}-${i}`, status: "delivered", items: [], createdAt: new Date() })],
		["notifications", "notifications", (userId: string, i: number) => ({ userId, dedupeKey: `k-${userId}-${i}`, channel: "email", status: "sent", createdAt: new Date() })],
		["users", "user_wishlist", (userId: string, i: number) => ({ userId, productId: `p-${i}`, addedAt: new Date() })],
	])("%s.%s: the candidates of a query by userId are that customer's documents", async (service, name, doc) => {
		const coll = collection(service, name);
		const docs = [];
		for (let u = 0; u < 50; u++) for (let i = 0; i < 20; i++) docs.push(doc(`user-${u}`, i));
		await coll.insertMany(docs);
		const nedb = coll.backend.db;
		expect(nedb._getRawCandidates({ userId: "user-7" })).toHaveLength(20);
		expect(nedb._getRawCandidates({ userId: "user-7", status: { $nin: ["delivered"] } })).toHaveLength(20);
		expect(await coll.count({ userId: "user-7" })).toBe(20);
	});

	test("orders of one millisecond come in the same order on every page, each once (the id breaks the tie)", async () => {
		const orders = collection("orders", "orders");
		const at = new Date("2026-11-30T12:00:00.000Z");
		const base = { userId: "tie-user", status: "confirmed", items: [], createdAt: at, total: 100, currency: "USD" };
		await orders.insertMany(Array.from({ length: 30 }, (_, i) => ({ ...base, number: `SH-TIE-${i}` })));
		const meta = { user: { id: "tie-user", role: "customer", sid: "s" } };
		const seen: string[] = [];
		for (let page = 1; page <= 5; page++) {
			const res: any = await shop.broker.call("orders.list", { page, pageSize: 7 }, { meta });
			seen.push(...res.rows.map((o: any) => o.id));
		}
		expect(seen).toHaveLength(30);
		expect(new Set(seen).size).toBe(30);
		expect(seen).toEqual([...seen].sort().reverse());
	});
});
