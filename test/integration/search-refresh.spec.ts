/**
 * How the search index keeps up with catalog changes when fetching products fails: one product that
 * cannot be fetched must not hold back the others, and products being unreachable keeps every
 * change queued until they answer again. Real products service, real broker, over HTTP.
 */
import { errors } from "@elastic/elasticsearch";
import { loadService, startShop, type Shop } from "../helpers/shop";
import { FakeUsers, fakeToken } from "../helpers/fakes";
import { waitFor } from "../helpers/wait";

describe("search refresh when fetching products fails", () => {
	let shop: Shop;
	let search: any;
	const admin = () => fakeToken("admin-1", "admin");
	const total = async (q: string) => (await shop.http.get(`/api/search?q=${encodeURIComponent(q)}`)).body.total as number;
	const searchable = (q: string, withinMs: number) => waitFor(() => total(q), (n) => n === 1, withinMs);

	async function createProduct(name: string): Promise<string> {
		const sku = `${name.replace(/\W+/g, "-").toUpperCase()}-${Date.now()}`;
		const res = await shop.http.post("/api/products", { name, price: 5_000, currency: "USD", variants: [{ sku, name: "One", stock: 3, options: {} }] }, { token: admin() });
		expect(res.status).toBe(201);
		return res.body.id;
	}

	/** A new product, once search finds it by `word`. */
	async function indexedProduct(name: string, word: string): Promise<string> {
		const id = await createProduct(name);
		await searchable(word, 2000);
		return id;
	}

	async function rename(id: string, name: string) {
		expect((await shop.http.patch(`/api/products/${id}`, { name }, { token: admin() })).status).toBe(200);
	}

	/**
	 * Makes `products.listForIndex` fail with `error` whenever `fails` holds for the ids it is asked
	 * for; records each such fetch (its ids and when).
	 */
	function breakIndexFetch(fails: (ids: string[]) => boolean, error: () => Error) {
		const collection = (shop.broker.getLocalService("products") as any).db.products;
		const find = collection.find.bind(collection);
		const fetches: Array<{ ids: string[]; at: number }> = [];
		const spy = jest.spyOn(collection, "find").mockImplementation((...args: any[]) => {
			const [query] = args;
			const ids = query?.id?.$in;
			if (query?.isActive === true && Array.isArray(ids) && fails(ids)) {
				fetches.push({ ids: [...ids], at: Date.now() });
				return Promise.reject(error());
			}
			return find(...args);
		});
		const alone = () => fetches.filter((f) => f.ids.length === 1).map((f) => f.at);
		return { fetches, alone, restore: () => spy.mockRestore() };
	}

	/** This product's fetch fails, as a data bug made it. */
	const breakIndexFetchOf = (productId: string) => breakIndexFetch((ids) => ids.includes(productId), () => new TypeError("Cannot read properties of undefined (reading 'map')"));

	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, "products", "search"] });
		search = shop.broker.getLocalService("search");
		await waitFor(() => shop.broker.call<any>("search.stats"), (s) => !!s.lastRebuild, 10_000);
	});
	afterAll(() => shop.stop());

	test("a product that cannot be fetched does not hold back the others, and is retried with a growing delay", async () => {
		const stool = await indexedProduct("Teak Stool", "teak");
		const warn = jest.spyOn(search.logger, "warn");
		const broken = breakIndexFetchOf(stool);
		try {
			await rename(stool, "Oak Stool");
			const bench = await createProduct("Walnut Bench");
			await searchable("walnut", 2000);
			await rename(bench, "Walnut Bench Seat");
			await searchable("seat", 2000);

			// Fetched on its own again after about 1 s, then 2 s later: not every few ms.
			await waitFor(async () => broken.alone().length, (n) => n >= 3, 5000);
			const [first, second, third] = broken.alone();
			expect(second - first).toBeGreaterThanOrEqual(900);
			expect(third - second).toBeGreaterThanOrEqual(1800);
			// Not every few ms: besides those three, only the batches it spoiled (the rename and the creation may share one or not).
			expect(broken.fetches.length).toBeLessThanOrEqual(6);
			expect(warn).toHaveBeenCalledWith(expect.stringContaining(`product ${stool} failed`));
			expect(await total("oak")).toBe(0);
		} finally {
			broken.restore();
			warn.mockRestore();
		}
		// Fixed: the next retry (4 s after the third failure) indexes the new name.
		await searchable("oak", 6000);
		expect(await total("teak")).toBe(0);
	}, 20_000);

	test("a change that refreshes fine clears the failures: the next failure starts over at the shortest delay", async () => {
		const shelf = await indexedProduct("Cedar Shelf", "cedar");
		let broken = breakIndexFetchOf(shelf);
		try {
			await rename(shelf, "Cedar Wall Shelf");
			await waitFor(async () => broken.alone().length, (n) => n >= 2, 3000);
		} finally {
			broken.restore();
		}
		await rename(shelf, "Maple Shelf");
		await searchable("maple", 1000);

		broken = breakIndexFetchOf(shelf);
		try {
			await rename(shelf, "Maple Wall Shelf");
			await waitFor(async () => broken.alone().length, (n) => n >= 3, 5000);
			const [first, second, third] = broken.alone();
			expect(second - first).toBeGreaterThanOrEqual(900);
			expect(third - second).toBeGreaterThanOrEqual(1800);
		} finally {
			broken.restore();
		}
		await rename(shelf, "Birch Shelf");
		await searchable("birch", 1000);
	}, 15_000);

	test("while the search engine is down, the changes stay queued together and are retried after a pause", async () => {
		const lamp = await indexedProduct("Brass Lamp", "brass");
		const rug = await indexedProduct("Wool Rug", "wool");
		const attempts: Array<{ ids: string[]; at: number }> = [];
		const upsert = jest.spyOn(search.engine, "upsert").mockImplementation(async (...args: any[]) => {
			attempts.push({ ids: args[0].map((d: { id: string }) => d.id).sort(), at: Date.now() });
			throw new errors.ConnectionError("connect ECONNREFUSED 127.0.0.1:9200");
		});
		try {
			await rename(lamp, "Brass Desk Lamp");
			await rename(rug, "Wool Area Rug");
			await waitFor(async () => attempts.length, (n) => n >= 2, 3000);
			// Nothing is blamed on a product: the batch is written again whole, a pause later.
			const batch = attempts[0].ids;
			expect(batch.length).toBeGreaterThanOrEqual(1);
			expect(attempts[1].ids).toEqual(expect.arrayContaining(batch));
			expect(attempts[1].at - attempts[0].at).toBeGreaterThanOrEqual(900);
		} finally {
			upsert.mockRestore();
		}
		await searchable("desk", 2000);
		await searchable("area", 2000);
	}, 10_000);

	test("while products is unreachable, the changes stay queued together and are retried after a pause", async () => {
		const chair = await indexedProduct("Rattan Chair", "rattan");
		const desk = await indexedProduct("Pine Desk", "pine");
		await shop.broker.destroyService(shop.broker.getLocalService("products"));

		const refreshProducts = search.refreshProducts;
		const attempts: Array<{ ids: string[]; at: number }> = [];
		const spy = jest.spyOn(search, "refreshProducts").mockImplementation((ids: any) => {
			attempts.push({ ids: [...ids].sort(), at: Date.now() });
			return refreshProducts(ids);
		});
		try {
			await Promise.all([chair, desk].map((productId) => shop.broker.emit("product.updated", { productId })));
			await waitFor(async () => attempts.length, (n) => n >= 2, 5000);
			// Nothing is blamed on a product: both ids are fetched together each time, a pause apart.
			expect(attempts.map((a) => a.ids)).toEqual(attempts.map(() => [chair, desk].sort()));
			expect(attempts[1].at - attempts[0].at).toBeGreaterThanOrEqual(900);
		} finally {
			spy.mockRestore();
		}
		// Back (with the empty catalog a fresh products service has under tests): the queued refresh
		// runs and finds that neither product exists any more.
		shop.broker.createService(loadService("products"));
		await waitFor(async () => (await total("rattan")) + (await total("pine")), (n) => n === 0, 5000);
	}, 15_000);

	test("when every product of a batch fails alike (the products store is down), none is blamed: the batch waits together", async () => {
		// Last: the failures of the tests before would open the circuit breaker on products.listForIndex;
		// the one before this started a fresh products service.
		const mug = await indexedProduct("Clay Mug", "mug");
		const jug = await indexedProduct("Clay Jug", "jug");
		const down = breakIndexFetch(() => true, () => Object.assign(new Error("connection to the database lost"), { code: 500 }));
		try {
			// The batch, then each product alone: all fail alike, so all go back to wait together.
			expect(await search.refreshIsolating([mug, jug])).toBe(false);
			expect(down.fetches).toHaveLength(3);
			expect(search.refreshRetries.size).toBe(0);
			expect([...search.pending]).toEqual(expect.arrayContaining([mug, jug]));
		} finally {
			down.restore();
		}
		await rename(mug, "Stoneware Mug");
		await rename(jug, "Stoneware Jug");
		await waitFor(() => total("stoneware"), (n) => n === 2, 3000);
	}, 10_000);
});
