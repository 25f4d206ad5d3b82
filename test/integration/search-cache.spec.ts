/** Search answers come from the cacher until the index changes, and a change is visible at once. */
import { startShop, type Shop } from "../helpers/shop";
import { FakeUsers, fakeToken } from "../helpers/fakes";
import { eventually } from "../helpers/cluster";

describe("search cache", () => {
	let shop: Shop;
	const admin = fakeToken("admin-1", "admin");
	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, "products", "search"] });
	});
	afterAll(() => shop.stop());

	test("a repeated query is served from the cache; an indexed change drops it", async () => {
		const created = await shop.http.post("/api/products", { name: "Quartz Teapot", price: 3100, currency: "USD", variants: [{ sku: "QT-1", name: "One", stock: 4 }] }, { token: admin });
		expect(created.status).toBe(201);
		await eventually(async () => (await shop.http.get("/api/search?q=quartz")).body.total === 1, 5000, 50);

		const engine = (shop.broker.getLocalService("search") as any).engine;
		const spy = jest.spyOn(engine, "search");
		const a = await shop.http.get("/api/search?q=quartz");
		const b = await shop.http.get("/api/search?q=quartz");
		expect(b.body).toEqual(a.body);
		expect(spy).toHaveBeenCalledTimes(0);

		const renamed = await shop.http.patch(`/api/products/${created.body.id}`, { name: "Quartz Kettle" }, { token: admin });
		expect(renamed.status).toBe(200);
		const after = await eventually(async () => {
			const r = await shop.http.get("/api/search?q=kettle");
			return r.body.total === 1 ? r.body : false;
		}, 1000, 50);
		expect(after.rows[0].name).toBe("Quartz Kettle");
		expect(spy).toHaveBeenCalled();
	});

	test("a repeated anonymous search is answered by the gateway without calling search, until an indexed change drops that answer too", async () => {
		const created = await shop.http.post("/api/products", { name: "Basalt Mug", price: 1400, currency: "USD", variants: [{ sku: "BM-1", name: "One", stock: 4 }] }, { token: admin });
		expect(created.status).toBe(201);
		await eventually(async () => (await shop.http.get("/api/search?q=basalt")).body.total === 1, 5000, 50);
		await eventually(async () => (await shop.http.get("/api/search/autocomplete?q=basa")).body.suggestions?.length > 0, 5000, 50);

		// Any call of the action looks in the broker's cache first.
		const handled = jest.spyOn(shop.broker.cacher!, "get");
		try {
			for (let i = 0; i < 3; i++) {
				expect((await shop.http.get("/api/search?q=basalt")).body.total).toBe(1);
				expect((await shop.http.get("/api/search/autocomplete?q=basa")).status).toBe(200);
			}
			const searchCalls = () => handled.mock.calls.filter(([key]) => String(key).startsWith("search.")).length;
			expect(searchCalls()).toBe(0);
			// Signed in: no shared copy, the action answers.
			expect((await shop.http.get("/api/search?q=basalt", { token: admin })).body.total).toBe(1);
			expect(searchCalls()).toBe(1);
		} finally {
			handled.mockRestore();
		}

		const renamed = await shop.http.patch(`/api/products/${created.body.id}`, { name: "Granite Mug" }, { token: admin });
		expect(renamed.status).toBe(200);
		await eventually(async () => (await shop.http.get("/api/search?q=granite")).body.total === 1, 1000, 50);
		expect((await shop.http.get("/api/search?q=basalt")).body.total).toBe(0);
	});
});
