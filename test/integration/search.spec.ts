/**
 * Search with the embedded engine, end to end over HTTP. A fake products service stands in for
 * the catalog (listForIndex, with its `ids` filter, and the product events), so these tests exercise the
 * search service alone; the last block runs against the real products service when it exists.
 */
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { PRICE_BUCKETS } from "../../lib/search-query";
import { HealthMixin } from "../../mixins/health.mixin";
import SearchService from "../../services/search.service";
import { FakeUsers, fakeToken } from "../helpers/fakes";

type Row = Record<string, any> & { id: string; isActive?: boolean };

function product(id: string, name: string, over: Partial<Row> = {}): Row {
	return {
		id,
		name,
		slug: name.toLowerCase().replace(/\W+/g, "-"),
		description: "",
		categoryId: "c-misc",
		categoryPath: ["misc"],
		categoryNames: ["Misc"],
		price: 1500,
		minPrice: 1500,
		maxPrice: 1500,
		currency: "USD",
		inStock: true,
		stock: 5,
		options: {},
		rating: { average: 0, count: 0 },
		image: `https://img.example/${id}.jpg`,
		createdAt: new Date("2024-01-01").toISOString(),
		isActive: true,
		...over,
	};
}

const audio = { categoryPath: ["electronics", "audio"], categoryNames: ["Electronics", "Audio"] };
const phones = { categoryPath: ["electronics", "phones"], categoryNames: ["Electronics", "Phones"] };
const apparel = { categoryPath: ["apparel"], categoryNames: ["Apparel"] };
const gifts = { categoryPath: ["gifts"], categoryNames: ["Gifts"] };

function seedCatalog(): Map<string, Row> {
	const rows = [
		product("p-headphones", "Wireless Headphones", { ...audio, description: "Noise cancelling over-ear headphones", price: 19_900, minPrice: 19_900, maxPrice: 24_900, options: { Color: ["Black", "Silver"] }, rating: { average: 4.6, count: 12 } }),
		product("p-earbuds", "Sport Earbuds", { ...audio, description: "Sweat-proof earbuds", price: 4_900, minPrice: 4_900, maxPrice: 4_900, rating: { average: 3.9, count: 4 } }),
		product("p-speaker", "Bluetooth Speaker", { ...audio, description: "Portable speaker", price: 7_500, minPrice: 7_500, maxPrice: 7_500, inStock: false, stock: 0, rating: { average: 4.1, count: 8 } }),
		product("p-phone", "Pixel Phone", { ...phones, description: "A phone with a great camera", price: 59_900, minPrice: 59_900, maxPrice: 69_900, rating: { average: 4.4, count: 30 } }),
		product("p-case", "Phone Case", { ...phones, description: "Protects your phone", price: 1_999, minPrice: 1_999, maxPrice: 1_999, rating: { average: 2.5, count: 2 } }),
		product("p-tshirt", "Organic T-Shirt", { ...apparel, description: "Soft cotton tee", price: 2_500, minPrice: 2_500, maxPrice: 2_500, options: { Size: ["S", "M", "L"], Color: ["Red"] }, rating: { average: 4.8, count: 20 } }),
		product("p-hoodie", "Café Hoodie", { ...apparel, description: "Warm hoodie", price: 4_999, minPrice: 4_999, maxPrice: 5_499 }),
		// Priced in other currencies: 1,200 euro cents and 2,000 yen are not comparable with dollar cents.
		product("p-mug", "Enamel Mug", { ...gifts, price: 1_200, minPrice: 1_200, maxPrice: 1_200, currency: "EUR" }),
		product("p-teacup", "Porcelain Teacup", { ...gifts, price: 2_000, minPrice: 2_000, maxPrice: 2_000, currency: "JPY" }),
	];
	// Enough filler that a rebuild needs several pages of 200.
	for (let i = 0; i < 420; i++) rows.push(product(`p-filler-${String(i).padStart(3, "0")}`, `Filler Widget ${i}`, { price: 100 + i, minPrice: 100 + i, maxPrice: 100 + i }));
	return new Map(rows.map((r) => [r.id, r]));
}

interface FakeProductsOptions {
	/** false: a products service whose listForIndex ignores `ids` (as docs/services.md first had it). */
	idsFilter?: boolean;
	/** false: a products service whose listForIndex pages by `page` only (before `afterId`). */
	afterId?: boolean;
}

type ListForIndexParams = { page: number; pageSize: number; ids?: string[]; afterId?: string };

/** The catalog side of docs/services.md, in memory, plus test actions that change it and emit the events. */
interface Calls {
	listForIndex: ListForIndexParams[];
	/** Runs before listForIndex reads the catalog (to change it between two page reads). */
	beforeListForIndex?: (ctx: Context<ListForIndexParams>) => Promise<void>;
}

function fakeProducts(catalog: Map<string, Row>, calls: Calls, opts: FakeProductsOptions = {}): ServiceSchema {
	const strip = ({ isActive: _active, ...row }: Row) => row;
	const active = () => [...catalog.values()].filter((r) => r.isActive !== false).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
	const actions: ServiceSchema["actions"] = {
		listForIndex: {
			params: {
				$$strict: "remove",
				page: { type: "number", integer: true, min: 1 },
				pageSize: { type: "number", integer: true, min: 1, max: 500 },
				...(opts.idsFilter === false ? {} : { ids: { type: "array", items: "string", optional: true } }),
				...(opts.afterId === false ? {} : { afterId: { type: "string", min: 1, optional: true } }),
			},
			async handler(ctx: Context<ListForIndexParams>) {
				calls.listForIndex.push({ ...ctx.params });
				await calls.beforeListForIndex?.(ctx);
				const all = active().filter((r) => !ctx.params.ids || ctx.params.ids.includes(r.id));
				const { page, pageSize, afterId } = ctx.params;
				const rows = afterId ? all.filter((r) => r.id > afterId).slice(0, pageSize) : all.slice((page - 1) * pageSize, page * pageSize);
				return { rows: rows.map(strip), total: all.length, page, pageSize, totalPages: Math.ceil(all.length / pageSize) };
			},
		},
		put: {
			params: { row: "object", silent: { type: "boolean", optional: true } },
			async handler(ctx: Context<{ row: Row; silent?: boolean }>) {
				const existed = catalog.has(ctx.params.row.id);
				catalog.set(ctx.params.row.id, { ...catalog.get(ctx.params.row.id), ...ctx.params.row });
				if (!ctx.params.silent) await ctx.emit(existed ? "product.updated" : "product.created", { productId: ctx.params.row.id });
			},
		},
		archive: {
			params: { id: "string", silent: { type: "boolean", optional: true } },
			async handler(ctx: Context<{ id: string; silent?: boolean }>) {
				catalog.get(ctx.params.id)!.isActive = false;
				if (!ctx.params.silent) await ctx.emit("product.archived", { productId: ctx.params.id });
			},
		},
		setStock: {
			params: { id: "string", stock: "number" },
			async handler(ctx: Context<{ id: string; stock: number }>) {
				const row = catalog.get(ctx.params.id)!;
				const delta = ctx.params.stock - row.stock;
				Object.assign(row, { stock: ctx.params.stock, inStock: ctx.params.stock > 0 });
				await ctx.emit("inventory.changed", { variantId: `${row.id}-v1`, productId: row.id, stock: ctx.params.stock, delta, type: "adjustment", reference: "test", eventId: `inv-${Date.now()}` });
			},
		},
	};
	return { name: "products", mixins: [HealthMixin], actions };
}

async function eventually<T>(probe: () => Promise<T>, ok: (value: T) => boolean, withinMs: number): Promise<{ value: T; ms: number }> {
	const start = Date.now();
	for (;;) {
		const value = await probe();
		const ms = Date.now() - start;
		if (ok(value)) return { value, ms };
		if (ms > withinMs) throw new Error(`Condition not met within ${withinMs} ms; last value: ${JSON.stringify(value).slice(0, 500)}`);
		await new Promise((r) => setTimeout(r, 20));
	}
}

async function waitForIndex(shop: Shop, documents: number) {
	await eventually(() => shop.broker.call<any>("search.stats"), (s) => s.documents === documents && !!s.lastRebuild, 10_000);
}

const ids = (res: { body: { rows: Array<{ id: string }> } }) => res.body.rows.map((r) => r.id);

describe("search (embedded engine) over HTTP", () => {
	let shop: Shop;
	let catalog: Map<string, Row>;
	const calls: Calls = { listForIndex: [] };

	beforeAll(async () => {
		catalog = seedCatalog();
		shop = await startShop({ services: [FakeUsers, fakeProducts(catalog, calls), "search"] });
		await waitForIndex(shop, catalog.size);
	});
	afterAll(() => shop.stop());

	test("the start-up rebuild reads the catalog in pages of 200, each after the last id read", () => {
		// In id order: p-case, p-earbuds, then the fillers. The short third page is the last.
		expect(calls.listForIndex.filter((c) => !c.ids)).toEqual([
			{ page: 1, pageSize: 200 },
			{ page: 2, pageSize: 200, afterId: "p-filler-197" },
			{ page: 3, pageSize: 200, afterId: "p-filler-397" },
		]);
	});

	test("rows have the API shape", async () => {
		const res = await shop.http.get("/api/search?q=headphones");
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ total: 1, page: 1, pageSize: 20 });
		expect(res.body.rows[0]).toEqual({ id: "p-headphones", name: "Wireless Headphones", slug: "wireless-headphones", price: 19_900, currency: "USD", rating: 4.6, ratingCount: 12, inStock: true, image: "https://img.example/p-headphones.jpg" });
		expect(Object.keys(res.body.facets).sort()).toEqual(["category", "currency", "price", "rating"]);
	});

	test("a misspelt query still finds the product", async () => {
		for (const q of ["wireles hedphones", "headphnes", "earbudz", "organc tshirt", "cafe hoodie"]) {
			const res = await shop.http.get(`/api/search?q=${encodeURIComponent(q)}`);
			expect(res.status).toBe(200);
			expect(res.body.total).toBeGreaterThan(0);
		}
		expect(ids(await shop.http.get("/api/search?q=wireles%20hedphones"))[0]).toBe("p-headphones");
		expect(ids(await shop.http.get("/api/search?q=earbudz"))[0]).toBe("p-earbuds");
	});

	test("two neighbouring letters swapped are one typo, in search and autocomplete", async () => {
		for (const [q, id] of [["earbdus", "p-earbuds"], ["spaeker", "p-speaker"], ["cafe hoodei", "p-hoodie"], ["pixle phone", "p-phone"]]) {
			const res = await shop.http.get(`/api/search?q=${encodeURIComponent(q)}`);
			expect({ q, first: ids(res)[0] }).toEqual({ q, first: id });
		}
		// Two swaps are two edits, more than a seven-letter word allows; an unrelated word finds nothing.
		for (const q of ["aerbdus", "zebra"]) expect({ q, total: (await shop.http.get(`/api/search?q=${q}`)).body.total }).toEqual({ q, total: 0 });
		expect((await shop.http.get("/api/search/autocomplete?q=earbdu")).body.suggestions).toEqual([{ text: "Sport Earbuds", productId: "p-earbuds" }]);
		expect((await shop.http.get("/api/search/autocomplete?q=spaek")).body.suggestions).toEqual([{ text: "Bluetooth Speaker", productId: "p-speaker" }]);
		expect((await shop.http.get("/api/search/autocomplete?q=aerbdu")).body.suggestions).toEqual([]);
	});

	test("the name weighs more than the description", async () => {
		// "phone" is in the name of Pixel Phone and Phone Case, and only in the description of others.
		const res = await shop.http.get("/api/search?q=phone");
		expect(ids(res).slice(0, 2).sort()).toEqual(["p-case", "p-phone"]);
	});

	test("option values and category names are searchable", async () => {
		expect(ids(await shop.http.get("/api/search?q=silver"))).toEqual(["p-headphones"]);
		expect(ids(await shop.http.get("/api/search?q=apparel")).sort()).toEqual(["p-hoodie", "p-tshirt"]);
	});

	test("every facet count equals the total of the search filtered by that facet", async () => {
		for (const q of ["", "q=phone&"]) {
			const base = await shop.http.get(`/api/search?${q}pageSize=1`);
			const { category, currency, price, rating } = base.body.facets;
			expect(category.length).toBeGreaterThan(0);
			expect(currency.length).toBeGreaterThan(0);
			for (const f of currency) {
				const res = await shop.http.get(`/api/search?${q}currency=${f.value}`);
				expect({ facet: f.value, total: res.body.total }).toEqual({ facet: f.value, total: f.count });
			}
			for (const f of category) {
				const res = await shop.http.get(`/api/search?${q}category=${f.value}`);
				expect({ facet: f.value, total: res.body.total }).toEqual({ facet: f.value, total: f.count });
			}
			for (const f of price) {
				const to = f.to == null ? "" : `&maxPrice=${f.to}`;
				const res = await shop.http.get(`/api/search?${q}minPrice=${f.from}${to}`);
				expect({ facet: `${f.from}-${f.to}`, total: res.body.total }).toEqual({ facet: `${f.from}-${f.to}`, total: f.count });
			}
			for (const f of rating) {
				const res = await shop.http.get(`/api/search?${q}minRating=${f.from}`);
				expect({ facet: f.from, total: res.body.total }).toEqual({ facet: f.from, total: f.count });
			}
		}
	});

	test("the facets cover the buckets of API.md and count real hits", async () => {
		const res = await shop.http.get("/api/search?q=phone");
		expect(res.body.facets.price.map((b: any) => [b.from, b.to])).toEqual(PRICE_BUCKETS.map((b) => [b.from, b.to]));
		expect(res.body.facets.category).toEqual(expect.arrayContaining([{ value: "electronics", label: "Electronics", count: res.body.total }]));
	});

	test("a category filter includes its sub-categories", async () => {
		const res = await shop.http.get("/api/search?category=electronics&pageSize=100");
		expect(ids(res).sort()).toEqual(["p-case", "p-earbuds", "p-headphones", "p-phone", "p-speaker"]);
		expect(ids(await shop.http.get("/api/search?category=audio")).sort()).toEqual(["p-earbuds", "p-headphones", "p-speaker"]);
	});

	test("price, rating and stock filters", async () => {
		expect(ids(await shop.http.get("/api/search?category=electronics&minPrice=2000&maxPrice=20000")).sort()).toEqual(["p-earbuds", "p-headphones", "p-speaker"]);
		expect(ids(await shop.http.get("/api/search?category=audio&minRating=4")).sort()).toEqual(["p-headphones", "p-speaker"]);
		expect(ids(await shop.http.get("/api/search?category=audio&inStock=true")).sort()).toEqual(["p-earbuds", "p-headphones"]);
	});

	test("a currency filter keeps prices, their filters and facets in one currency", async () => {
		// Without it, amounts compare as minor units whatever their currency: the 2,000 yen teacup is above a 19.99 bound.
		expect(ids(await shop.http.get("/api/search?category=gifts&maxPrice=1999"))).toEqual(["p-mug"]);
		const all = await shop.http.get("/api/search?category=gifts");
		expect(all.body.facets.currency).toEqual([
			{ value: "EUR", count: 1 },
			{ value: "JPY", count: 1 },
		]);
		const yen = await shop.http.get("/api/search?category=gifts&currency=jpy&maxPrice=2500");
		expect(ids(yen)).toEqual(["p-teacup"]);
		expect(yen.body.rows[0]).toMatchObject({ price: 2_000, currency: "JPY" });
		expect(yen.body.facets.currency).toEqual([{ value: "JPY", count: 1 }]);
		expect(yen.body.facets.price.find((b: any) => b.from === 1_000).count).toBe(1);
		expect(ids(await shop.http.get("/api/search?currency=EUR"))).toEqual(["p-mug"]);
		expect((await shop.http.get("/api/search?currency=USD")).body.total).toBe((await shop.http.get("/api/search")).body.total - 2);
		// Empty is no filter, as an empty category is.
		expect((await shop.http.get("/api/search?category=gifts&currency=")).body.total).toBe(2);
		for (const bad of ["XYZ", "dollars", "US"]) {
			const res = await shop.http.get(`/api/search?currency=${bad}`);
			expect(res.status).toBe(422);
			expect(res.body.data.map((d: any) => d.field)).toEqual(["currency"]);
		}
	});

	test("sorts by price both ways and by rating", async () => {
		expect(ids(await shop.http.get("/api/search?category=electronics&sort=price"))).toEqual(["p-case", "p-earbuds", "p-speaker", "p-headphones", "p-phone"]);
		expect(ids(await shop.http.get("/api/search?category=electronics&sort=-price"))).toEqual(["p-phone", "p-headphones", "p-speaker", "p-earbuds", "p-case"]);
		expect(ids(await shop.http.get("/api/search?category=electronics&sort=rating"))).toEqual(["p-headphones", "p-phone", "p-speaker", "p-earbuds", "p-case"]);
	});

	test("pages", async () => {
		const all = ids(await shop.http.get("/api/search?category=electronics&sort=price"));
		const p2 = await shop.http.get("/api/search?category=electronics&sort=price&page=2&pageSize=2");
		expect(p2.body).toMatchObject({ total: 5, page: 2, pageSize: 2, totalPages: 3 });
		expect(ids(p2)).toEqual(all.slice(2, 4));
		const filler = await shop.http.get("/api/search?category=misc&pageSize=100&page=5");
		expect(filler.body).toMatchObject({ total: 420, page: 5, totalPages: 5 });
		expect(filler.body.rows).toHaveLength(20);
	});

	test("422 names the bad field; unknown params are ignored", async () => {
		const inverted = await shop.http.get("/api/search?minPrice=500&maxPrice=100");
		expect(inverted.status).toBe(422);
		expect(inverted.body.data[0].field).toBe("maxPrice");
		const sort = await shop.http.get("/api/search?sort=cheapest");
		expect(sort.status).toBe(422);
		expect(sort.body.data[0].field).toBe("sort");
		expect((await shop.http.get("/api/search?pageSize=101")).status).toBe(422);
		// Whole cents up to 1,000,000,000, as the product list takes them.
		for (const price of ["minPrice=99999999999999999999", "maxPrice=1000000001", "minPrice=1.5"]) {
			const res = await shop.http.get(`/api/search?${price}`);
			expect({ price, status: res.status, field: res.body.data?.[0]?.field }).toEqual({ price, status: 422, field: price.split("=")[0] });
		}
		// No page is that far: 422 naming page, not a 200 echoing "page": 1e+30.
		for (const page of ["1e30", "1000001"]) {
			const far = await shop.http.get(`/api/search?page=${page}`);
			expect(far.status).toBe(422);
			expect(far.body.data.map((d: any) => d.field)).toEqual(["page"]);
		}
		expect((await shop.http.get("/api/search?page=1000000")).body).toMatchObject({ page: 1_000_000, rows: [], total: 429 });
		expect((await shop.http.get("/api/search?minRating=6")).status).toBe(422);
		expect((await shop.http.get("/api/search?q=tee&foo=bar")).status).toBe(200);
	});

	test("autocomplete's q is limited to 100 characters once its spaces are collapsed", async () => {
		const padded = await shop.http.get(`/api/search/autocomplete?q=${encodeURIComponent(`${" ".repeat(120)}earb`)}`);
		expect(padded.status).toBe(200);
		expect(padded.body.suggestions).toEqual([{ text: "Sport Earbuds", productId: "p-earbuds" }]);
		const long = await shop.http.get(`/api/search/autocomplete?q=${"x".repeat(101)}`);
		expect(long.status).toBe(422);
		// Characters, not UTF-16 units: 60 emoji are 60.
		expect((await shop.http.get(`/api/search/autocomplete?q=${encodeURIComponent("🎧".repeat(60))}`)).status).toBe(200);
		expect((await shop.http.get(`/api/search?q=${encodeURIComponent("🎧".repeat(150))}`)).status).toBe(200);
		expect(long.body.data.map((d: any) => d.field)).toEqual(["q"]);
	});

	test("q is limited to 200 characters once its spaces are collapsed, so a padded short query is answered", async () => {
		const padded = await shop.http.get(`/api/search?q=${encodeURIComponent(`${" ".repeat(150)}headphones${"\t ".repeat(75)}`)}`);
		expect(padded.status).toBe(200);
		expect(ids(padded)).toEqual(["p-headphones"]);
		// 200 characters of words pass; 201 is a 422 naming q, as is a raw q past 1,000 characters.
		expect((await shop.http.get(`/api/search?q=${encodeURIComponent(`${"headphones ".repeat(18)}xx`)}`)).status).toBe(200);
		for (const q of [`${"headphones ".repeat(18)}xxx`, `${" ".repeat(1000)}x`]) {
			const res = await shop.http.get(`/api/search?q=${encodeURIComponent(q)}`);
			expect(res.status).toBe(422);
			expect(res.body.data.map((d: any) => d.field)).toEqual(["q"]);
		}
	});

	test("autocomplete suggests names by prefix, at most 10, quickly", async () => {
		const res = await shop.http.get("/api/search/autocomplete?q=head");
		expect(res.status).toBe(200);
		expect(res.body.suggestions[0]).toEqual({ text: "Wireless Headphones", productId: "p-headphones" });
		expect((await shop.http.get("/api/search/autocomplete?q=wirel")).body.suggestions[0].productId).toBe("p-headphones");
		const many = await shop.http.get("/api/search/autocomplete?q=fil");
		expect(many.body.suggestions).toHaveLength(10);
		expect(many.body.suggestions.every((s: any) => s.text.startsWith("Filler Widget"))).toBe(true);
		expect((await shop.http.get("/api/search/autocomplete?q=")).body).toEqual({ suggestions: [] });
		expect((await shop.http.get("/api/search/autocomplete?q=zzzz")).body).toEqual({ suggestions: [] });
		const start = process.hrtime.bigint();
		for (let i = 0; i < 20; i++) await shop.http.get("/api/search/autocomplete?q=ph");
		const avgMs = Number(process.hrtime.bigint() - start) / 1e6 / 20;
		expect(avgMs).toBeLessThan(50);
	});

	test("a new product is searchable within one second", async () => {
		await shop.broker.call("products.put", { row: product("p-kettle", "Electric Kettle", { categoryPath: ["kitchen"], categoryNames: ["Kitchen"], price: 3_900, minPrice: 3_900, maxPrice: 3_900 }) });
		const { ms } = await eventually(() => shop.http.get("/api/search?q=kettle"), (r) => r.body.total === 1, 1000);
		expect(ms).toBeLessThan(1000);
		expect((await shop.http.get("/api/search/autocomplete?q=kett")).body.suggestions).toEqual([{ text: "Electric Kettle", productId: "p-kettle" }]);
	});

	test("a change of name or price is searchable within one second", async () => {
		await shop.broker.call("products.put", { row: { id: "p-kettle", name: "Glass Kettle", price: 4_500, minPrice: 4_500, maxPrice: 4_500 } });
		await eventually(() => shop.http.get("/api/search?q=glass"), (r) => r.body.total === 1 && r.body.rows[0].price === 4_500, 1000);
		expect((await shop.http.get("/api/search?q=electric")).body.total).toBe(0);
	});

	test("an archived product disappears within one second, from search and autocomplete", async () => {
		expect((await shop.http.get("/api/search?q=kettle")).body.total).toBe(1);
		await shop.broker.call("products.archive", { id: "p-kettle" });
		await eventually(() => shop.http.get("/api/search?q=kettle"), (r) => r.body.total === 0, 1000);
		expect((await shop.http.get("/api/search/autocomplete?q=kett")).body.suggestions).toEqual([]);
		expect((await shop.http.get("/api/search?category=kitchen")).body.total).toBe(0);
	});

	test("stock changes move a product in and out of inStock=true", async () => {
		await shop.broker.call("products.setStock", { id: "p-speaker", stock: 3 });
		await eventually(() => shop.http.get("/api/search?category=audio&inStock=true"), (r) => ids(r).includes("p-speaker"), 1000);
		// A sale that leaves some in stock changes nothing search shows: the product is not fetched again.
		const search = shop.broker.getLocalService("search") as any;
		const refresh = jest.spyOn(search, "queueRefresh");
		try {
			await shop.broker.call("products.setStock", { id: "p-speaker", stock: 2 });
			expect(refresh).not.toHaveBeenCalled();
		} finally {
			refresh.mockRestore();
		}
		await shop.broker.call("products.setStock", { id: "p-speaker", stock: 0 });
		await eventually(() => shop.http.get("/api/search?category=audio&inStock=true"), (r) => !ids(r).includes("p-speaker"), 1000);
	});

	test("a moderated review's rating is applied even before the catalog stores it", async () => {
		expect(ids(await shop.http.get("/api/search?category=apparel&minRating=4"))).toEqual(["p-tshirt"]);
		await shop.broker.emit("review.moderated", { reviewId: "r1", productId: "p-hoodie", approved: true, rating: { average: 4.5, count: 1, histogram: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 1 } } });
		await eventually(() => shop.http.get("/api/search?category=apparel&minRating=4"), (r) => ids(r).includes("p-hoodie"), 1000);
	});

	test("events for many products are fetched together, by id", async () => {
		calls.listForIndex.length = 0;
		await Promise.all(["p-filler-001", "p-filler-002", "p-filler-003"].map((id) => shop.broker.emit("product.updated", { productId: id })));
		await eventually(async () => calls.listForIndex.length, (n) => n >= 1, 1000);
		await new Promise((r) => setTimeout(r, 100));
		expect(calls.listForIndex).toEqual([{ ids: ["p-filler-001", "p-filler-002", "p-filler-003"], page: 1, pageSize: 3 }]);
	});

	test("admin rebuild restores what events missed; only admins may run it", async () => {
		// Changed without events, as if the search service had been down.
		await shop.broker.call("products.archive", { id: "p-case", silent: true });
		await shop.broker.call("products.put", { row: product("p-lamp", "Desk Lamp"), silent: true });
		expect((await shop.http.get("/api/search?q=lamp")).body.total).toBe(0);

		expect((await shop.http.post("/api/search/rebuild", {})).status).toBe(401);
		const customer = fakeToken("u1");
		expect((await shop.http.post("/api/search/rebuild", {}, { token: customer })).status).toBe(403);
		const admin = fakeToken("a1", "admin");
		const res = await shop.http.post("/api/search/rebuild", {}, { token: admin });
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ indexed: catalog.size - 2, removed: 1, pages: 3 });

		expect(ids(await shop.http.get("/api/search?q=lamp"))).toEqual(["p-lamp"]);
		expect((await shop.http.get("/api/search?q=phone%20case")).body.total).toBe(0);
	});
});

describe("a rebuild that takes longer than the request timeout", () => {
	let shop: Shop;
	const calls: Calls = { listForIndex: [] };
	const catalog = new Map(Array.from({ length: 10 }, (_, i) => product(`p-${i}`, `Kettle Model ${i}`)).map((r) => [r.id, r]));

	beforeAll(async () => {
		const search = { name: "search", mixins: [SearchService as unknown as Partial<ServiceSchema>], settings: { rebuildPageSize: 3 } } as ServiceSchema;
		shop = await startShop({ services: [FakeUsers, fakeProducts(catalog, calls), search], broker: { requestTimeout: 400 } });
		await waitForIndex(shop, catalog.size);
	});
	afterAll(() => shop.stop());

	test("answers the admin with its report, not a timeout while it goes on", async () => {
		// Four pages of 250 ms: a second past the 400 ms every other call gets.
		calls.beforeListForIndex = () => new Promise((r) => setTimeout(r, 250));
		const res = await shop.http.post("/api/search/rebuild", {}, { token: fakeToken("a1", "admin") });
		calls.beforeListForIndex = undefined;
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ indexed: catalog.size, pages: 4 });
	});
});

describe("a full rebuild while an admin archives products", () => {
	let shop: Shop;
	const calls: Calls = { listForIndex: [] };
	const catalog = new Map(Array.from({ length: 10 }, (_, i) => product(`p-${i}`, `Lantern Model ${i}`)).map((r) => [r.id, r]));
	const admin = fakeToken("a1", "admin");
	const searchable = async () => ((await shop.http.get("/api/search?q=lantern&pageSize=100")).body.rows as Array<{ id: string }>).map((r) => r.id).sort();

	beforeAll(async () => {
		// Pages of 3, so that a rebuild of 10 products reads four.
		const search = { name: "search", mixins: [SearchService as unknown as Partial<ServiceSchema>], settings: { rebuildPageSize: 3 } } as ServiceSchema;
		shop = await startShop({ services: [FakeUsers, fakeProducts(catalog, calls), search] });
		await waitForIndex(shop, catalog.size);
	});
	afterAll(() => shop.stop());

	test("an archive between two page reads drops only the archived product; the one behind it stays searchable", async () => {
		// p-1 is archived (with its event, as DELETE /api/products/:id does) after the first page is read:
		// read by offset, the second page would start at p-4, and p-3 would be left out, then removed.
		calls.beforeListForIndex = async (ctx) => {
			if (ctx.params.ids || ctx.params.page !== 2) return;
			calls.beforeListForIndex = undefined;
			await ctx.call("products.archive", { id: "p-1" });
		};
		const res = await shop.http.post("/api/search/rebuild", {}, { token: admin });
		expect(res.status).toBe(200);
		expect(calls.beforeListForIndex).toBeUndefined();
		const active = [...catalog.values()].filter((r) => r.isActive !== false).map((r) => r.id).sort();
		expect(active).toHaveLength(9);
		await eventually(searchable, (found) => !found.includes("p-1"), 1000);
		expect(await searchable()).toEqual(active);
		expect((await shop.http.get("/api/search?pageSize=1")).body.total).toBe(9);
	});
});

describe("search when the products service starts later, or cannot filter by ids", () => {
	let shop: Shop;
	const catalog = seedCatalog();
	const calls: Calls = { listForIndex: [] };

	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, "search"] });
	});
	afterAll(() => shop.stop());

	test("the index is built once products appears; a search waits for that build, and past its wait is a 503, never an empty result that would be cached", async () => {
		const search = shop.broker.getLocalService("search") as any;
		search.settings.indexWaitMs = 200;
		const early = await shop.http.get("/api/search?q=headphones");
		expect(early.status).toBe(503);
		expect(early.body.message).toMatch(/index is being built/);
		expect((await shop.http.get("/api/search/autocomplete?q=head")).status).toBe(503);
		search.settings.indexWaitMs = 5000;
		const waiting = shop.http.get("/api/search?q=headphones");
		await new Promise((r) => setTimeout(r, 300));
		shop.broker.createService(fakeProducts(catalog, calls, { idsFilter: false, afterId: false }));
		expect(ids(await waiting)).toEqual(["p-headphones"]);
		await waitForIndex(shop, catalog.size);
		expect(ids(await shop.http.get("/api/search?q=headphones"))).toEqual(["p-headphones"]);
	});

	test("without afterId the rebuild pages by page, and finds every product", async () => {
		const paged = calls.listForIndex.filter((c) => !c.ids);
		expect(paged.slice(0, 3).map((c) => c.page)).toEqual([1, 2, 3]);
		expect((await shop.http.get("/api/search?pageSize=1")).body.total).toBe(catalog.size);
	});

	test("without the ids filter a change still shows within one second, by a rebuild", async () => {
		await shop.broker.call("products.put", { row: product("p-mug", "Enamel Mug") });
		await eventually(() => shop.http.get("/api/search?q=enamel"), (r) => r.body.total === 1, 1000);
		await shop.broker.call("products.archive", { id: "p-mug" });
		await eventually(() => shop.http.get("/api/search?q=enamel"), (r) => r.body.total === 0, 1000);
	});
});

describe("search with the real products service", () => {
	let shop: Shop;
	const admin = () => fakeToken("admin-1", "admin");

	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, "products", "search"] });
		await eventually(() => shop.broker.call<any>("search.stats"), (s) => !!s.lastRebuild, 10_000);
	});
	afterAll(() => shop.stop());

	test("a product created over the API is found, misspelt, within a second; archived, it is gone", async () => {
		const created = await shop.http.post(
			"/api/products",
			{ name: "Merino Sweater", description: "Fine knit", price: 8_900, currency: "USD", variants: [{ sku: `MS-${Date.now()}`, name: "M", stock: 4, options: { Size: "M" } }] },
			{ token: admin() },
		);
		expect(created.status).toBe(201);
		await eventually(() => shop.http.get("/api/search?q=merno%20sweter"), (r) => r.body.total === 1, 1000);
		expect((await shop.http.get("/api/search?q=merino")).body.rows[0]).toMatchObject({ id: created.body.id, price: 8_900, inStock: true });
		expect((await shop.http.delete(`/api/products/${created.body.id}`, { token: admin() })).status).toBeLessThan(300);
		await eventually(() => shop.http.get("/api/search?q=merino"), (r) => r.body.total === 0, 1000);
	});

	test("the category filter names a category as the product list does (slug in any case, or id, with sub-categories) and finds the same rows", async () => {
		const category = async (body: object) => (await shop.http.post("/api/categories", body, { token: admin() })).body;
		const clothing = await category({ name: "Filter Clothing" });
		const shirts = await category({ name: "Filter Shirts", parentId: clothing.id });
		const home = await category({ name: "Filter Home" });
		const created: string[] = [];
		for (const [i, categoryId] of [clothing.id, shirts.id, shirts.id, home.id].entries()) {
			const res = await shop.http.post("/api/products", { name: `Filter Item ${i}`, price: 1_000 + i, currency: "USD", categoryId, variants: [{ sku: `FI-${Date.now()}-${i}`, stock: 1 }] }, { token: admin() });
			expect(res.status).toBe(201);
			created.push(res.body.id);
		}
		await eventually(() => shop.http.get("/api/search?q=filter%20item"), (r) => r.body.total === created.length, 1000);

		const listed = async (path: string) => ((await shop.http.get(path)).body.rows as Array<{ id: string }>).map((r) => r.id).sort();
		for (const [named, expected] of [
			[clothing.slug, created.slice(0, 3)],
			["Filter-Clothing", created.slice(0, 3)],
			[clothing.slug.toUpperCase(), created.slice(0, 3)],
			[clothing.id, created.slice(0, 3)],
			[shirts.id, created.slice(1, 3)],
			[home.id, created.slice(3)],
		] as const) {
			const q = `category=${encodeURIComponent(named)}&pageSize=100`;
			const fromSearch = await listed(`/api/search?${q}`);
			expect(fromSearch).toEqual([...expected].sort());
			expect(await listed(`/api/products?${q}`)).toEqual(fromSearch);
		}
		for (const unknown of ["no-such-category", "nope-id"]) {
			expect((await shop.http.get(`/api/search?category=${unknown}`)).body.total).toBe(0);
			expect((await shop.http.get(`/api/products?category=${unknown}`)).body.total).toBe(0);
		}
	});

	test("a category renamed or moved reaches the search documents of its products within a second", async () => {
		const category = async (body: object) => (await shop.http.post("/api/categories", body, { token: admin() })).body;
		const parent = await category({ name: "Outerwear", slug: "outerwear" });
		const knitwear = await category({ name: "Knitwear", slug: "knitwear" });
		const created = await shop.http.post(
			"/api/products",
			{ name: "Cable Cardigan", price: 9_900, currency: "USD", categoryId: knitwear.id, variants: [{ sku: `CC-${Date.now()}`, name: "M", stock: 2 }] },
			{ token: admin() },
		);
		expect(created.status).toBe(201);
		const found = (q: string) => async () => (await shop.http.get(`/api/search?${q}`)).body.rows.map((r: { id: string }) => r.id);
		await eventually(found("category=knitwear"), (ids) => ids.includes(created.body.id), 1000);

		expect((await shop.http.patch(`/api/categories/${knitwear.id}`, { name: "Woollens", slug: "woollens" }, { token: admin() })).status).toBe(200);
		await eventually(found("category=woollens"), (ids) => ids.includes(created.body.id), 1000);
		expect(await found("category=knitwear")()).not.toContain(created.body.id);
		const facets = (await shop.http.get("/api/search?q=cardigan")).body.facets.category;
		expect(facets).toContainEqual(expect.objectContaining({ value: "woollens", count: 1 }));
		expect(facets.map((f: { value: string }) => f.value)).not.toContain("knitwear");

		expect((await shop.http.patch(`/api/categories/${knitwear.id}`, { parentId: parent.id }, { token: admin() })).status).toBe(200);
		await eventually(found("category=outerwear"), (ids) => ids.includes(created.body.id), 1000);
	});

	test("a category with more products than one category.updated carries reaches every one of their search documents", async () => {
		const socks = (await shop.http.post("/api/categories", { name: "Socks", slug: "socks" }, { token: admin() })).body;
		// Stored behind search's back (no product events), so only the category's announcements bring them in.
		const products = shop.broker.getLocalService("products") as any;
		const now = new Date();
		await products.db.products.insertMany(
			Array.from({ length: 1_100 }, (_, i) => ({ name: `Wool Sock ${i}`, slug: `wool-sock-${i}`, description: "", price: 900, currency: "USD", categoryId: socks.id, isActive: true, createdAt: now, updatedAt: now })),
		);
		const total = (q: string) => async () => (await shop.http.get(`/api/search?${q}`)).body.total as number;
		expect(await total("category=socks")()).toBe(0);

		expect((await shop.http.patch(`/api/categories/${socks.id}`, { name: "Hosiery", slug: "hosiery" }, { token: admin() })).status).toBe(200);
		await eventually(total("category=hosiery"), (n) => n === 1_100, 5_000);
	});
});
