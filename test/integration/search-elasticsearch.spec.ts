/**
 * The Elasticsearch engine. The first blocks run the search service against
 * @elastic/elasticsearch-mock (the only Elasticsearch here) and check the requests it sends:
 * index creation with explicit mappings, bulk writes, the bool/multi_match query, aggregations,
 * the completion suggester. The last block runs the end-to-end behaviours against a real server
 * when ELASTICSEARCH_URL is set (see the README).
 */
import Mock from "@elastic/elasticsearch-mock";
import { errors } from "@elastic/elasticsearch";
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import SearchService from "../../services/search.service";
import { ElasticsearchEngine } from "../../adapters/search";
import { PRICE_BUCKETS, toIndexDoc } from "../../lib/search-query";
import { FakeUsers, fakeToken } from "../helpers/fakes";
import { waitFor } from "../helpers/wait";

const INDEX = "shop-products";

interface Sent {
	method: string;
	path: string;
	querystring: Record<string, string>;
	body: any;
}

function row(id: string, name: string, over: Record<string, any> = {}) {
	return {
		id,
		name,
		slug: id,
		description: `About ${name}`,
		categoryId: "c-audio",
		categoryPath: ["electronics", "audio"],
		categoryNames: ["Electronics", "Audio"],
		price: 4_900,
		minPrice: 4_900,
		maxPrice: 5_900,
		currency: "USD",
		inStock: true,
		stock: 3,
		options: { Color: ["Black"] },
		rating: { average: 4.2, count: 5 },
		image: `https://img.example/${id}.jpg`,
		createdAt: "2024-02-01T00:00:00.000Z",
		isActive: true,
		...over,
	};
}

/** A catalog of `size` products with listForIndex (paged, and by ids) and test actions emitting the events. */
function fakeProducts(catalog: Map<string, ReturnType<typeof row>>): ServiceSchema {
	const active = () => [...catalog.values()].filter((r) => r.isActive).sort((a, b) => a.id.localeCompare(b.id));
	const strip = ({ isActive: _a, ...r }: ReturnType<typeof row>) => r;
	return {
		name: "products",
		actions: {
			listForIndex: {
				params: { $$strict: "remove", page: "number", pageSize: "number", ids: { type: "array", items: "string", optional: true } },
				handler(ctx: Context<{ page: number; pageSize: number; ids?: string[] }>) {
					const { page, pageSize, ids } = ctx.params;
					const all = active().filter((r) => !ids || ids.includes(r.id));
					return { rows: all.slice((page - 1) * pageSize, page * pageSize).map(strip), total: all.length, page, pageSize, totalPages: Math.ceil(all.length / pageSize) };
				},
			},
			archive: {
				params: { id: "string" },
				async handler(ctx: Context<{ id: string }>) {
					catalog.get(ctx.params.id)!.isActive = false;
					await ctx.emit("product.archived", { productId: ctx.params.id });
				},
			},
			rename: {
				params: { id: "string", name: "string" },
				async handler(ctx: Context<{ id: string; name: string }>) {
					catalog.get(ctx.params.id)!.name = ctx.params.name;
					await ctx.emit("product.updated", { productId: ctx.params.id });
				},
			},
		},
	};
}

/** The search service with its engine pointed at the mock. */
function searchOnMock(mock: Mock): ServiceSchema {
	return {
		name: "search",
		mixins: [SearchService as unknown as Partial<ServiceSchema>],
		methods: {
			createEngine() {
				return new ElasticsearchEngine({ node: "http://es.test:9200", index: INDEX, clientOptions: { Connection: mock.getConnection() } });
			},
		},
	};
}


/** Mock routes answering like Elasticsearch 8, each request recorded. */
function mockElasticsearch(opts: { indexExists: boolean; search?: (body: any) => Record<string, any> }) {
	const mock = new Mock();
	const sent: Sent[] = [];
	const record = (p: any) => {
		sent.push({ method: p.method, path: p.path, querystring: p.querystring ?? {}, body: p.body });
	};
	let exists = opts.indexExists;
	mock.add({ method: "HEAD", path: `/${INDEX}` }, (p) => {
		record(p);
		return exists ? "" : new errors.ResponseError({ body: "", statusCode: 404, headers: {}, warnings: null, meta: {} as any });
	});
	mock.add({ method: "PUT", path: `/${INDEX}` }, (p) => {
		record(p);
		exists = true;
		return { acknowledged: true, shards_acknowledged: true, index: INDEX };
	});
	mock.add({ method: "POST", path: "/_bulk" }, (p) => {
		record(p);
		const ops = (p.body as any[]).filter((l) => l.index || l.delete);
		return { took: 1, errors: false, items: ops.map((op) => (op.index ? { index: { _id: op.index._id, status: 201, result: "created" } } : { delete: { _id: op.delete._id, status: 200, result: "deleted" } })) };
	});
	mock.add({ method: "POST", path: `/${INDEX}/_delete_by_query` }, (p) => {
		record(p);
		return { deleted: 2, total: 2, failures: [] };
	});
	mock.add({ method: ["GET", "POST"], path: `/${INDEX}/_count` }, (p) => {
		record(p);
		return { count: 7 };
	});
	mock.add({ method: ["GET", "POST"], path: `/${INDEX}/_search` }, (p) => {
		record(p);
		const body = p.body as any;
		if (opts.search) return opts.search(body);
		if (body.suggest) {
			return {
				hits: { total: { value: 0, relation: "eq" }, hits: [] },
				suggest: {
					products: [
						{
							text: body.suggest.products.prefix,
							offset: 0,
							length: 4,
							options: [
								{ text: "Headphones Pro", _index: INDEX, _id: "p1", _score: 3, _source: { id: "p1", name: "Wireless Headphones Pro" } },
								{ text: "Headset", _index: INDEX, _id: "p2", _score: 1, _source: { id: "p2", name: "Gaming Headset" } },
							],
						},
					],
				},
			};
		}
		return {
			took: 2,
			hits: {
				total: { value: 6, relation: "eq" },
				hits: [{ _index: INDEX, _id: "p1", _score: 2.5, _source: { id: "p1", name: "Wireless Headphones Pro", slug: "p1", price: 19_900, currency: "USD", rating: 4.6, ratingCount: 12, inStock: true, image: "https://img.example/p1.jpg" } }],
			},
			aggregations: {
				category: { buckets: [{ key: "electronics", doc_count: 6 }, { key: "audio", doc_count: 4 }] },
				currency: { buckets: [{ key: "USD", doc_count: 6 }] },
				// Elasticsearch sorts range buckets by `from`, whatever order they were asked in.
				price: { buckets: PRICE_BUCKETS.map((b, i) => ({ key: `${b.from}-${b.to ?? ""}`, from: b.from, doc_count: i === 4 ? 6 : 0 })) },
				rating: { buckets: [1, 2, 3, 4].map((from) => ({ key: `${from}+`, from, doc_count: from <= 4 ? 7 - from : 0 })) },
			},
		};
	});
	return { mock, sent };
}

describe("Elasticsearch engine through the search service (mocked server)", () => {
	let shop: Shop;
	let es: ReturnType<typeof mockElasticsearch>;
	const catalog = new Map(Array.from({ length: 250 }, (_, i) => `p${String(i).padStart(3, "0")}`).map((id, i) => [id, row(id, `Product ${i}`)]));

	beforeAll(async () => {
		es = mockElasticsearch({ indexExists: false });
		shop = await startShop({ services: [FakeUsers, fakeProducts(catalog), searchOnMock(es.mock)] });
		await waitFor(() => es.sent.some((s) => s.path.endsWith("_delete_by_query")), (v) => v, 5000);
	});
	afterAll(() => shop.stop());

	test("creates the index with explicit mappings when it is missing", () => {
		const create = es.sent.find((s) => s.method === "PUT" && s.path === `/${INDEX}`)!;
		expect(create).toBeDefined();
		expect(create.body.settings).toMatchObject({ refresh_interval: "1s" });
		// Text is matched without case or accents, as the embedded engine reads it.
		expect(create.body.settings.analysis.analyzer.folded).toEqual({ type: "custom", tokenizer: "standard", filter: ["lowercase", "asciifolding"] });
		const props = create.body.mappings.properties;
		expect(create.body.mappings.dynamic).toBe("strict");
		expect(props.name).toMatchObject({ type: "text", analyzer: "folded", fields: { keyword: { type: "keyword" } } });
		for (const field of ["description", "categoryNames", "optionValues"]) expect(props[field]).toEqual({ type: "text", analyzer: "folded" });
		expect(props.categoryPath).toEqual({ type: "keyword" });
		expect(props.price).toEqual({ type: "long" });
		expect(props.rating).toEqual({ type: "float" });
		expect(props.inStock).toEqual({ type: "boolean" });
		expect(props.suggest).toEqual({ type: "completion", analyzer: "folded" });
	});

	test("the start-up rebuild writes pages in bulk, then deletes what it did not see", () => {
		const bulks = es.sent.filter((s) => s.path === "/_bulk");
		expect(bulks).toHaveLength(2);
		expect(bulks.map((b) => b.body.length / 2)).toEqual([200, 50]);
		const [action, doc] = bulks[0].body;
		expect(action).toEqual({ index: { _index: INDEX, _id: "p000" } });
		expect(doc).toMatchObject({ id: "p000", name: "Product 0", categoryPath: ["electronics", "audio"], price: 4_900, maxPrice: 5_900, rating: 4.2, ratingCount: 5, inStock: true, optionValues: ["Black"] });
		expect(doc.suggest.input).toEqual(["Product 0", "0"]);
		// Pages do not force a refresh each; the final delete_by_query does.
		expect(bulks[0].querystring.refresh).toBeUndefined();
		const cleanup = es.sent.find((s) => s.path.endsWith("_delete_by_query"))!;
		expect(cleanup.querystring).toMatchObject({ refresh: "true", conflicts: "proceed" });
		expect(Object.keys(cleanup.body.query.range.indexedAt)).toEqual(["lt"]);
		expect(cleanup.body.query.range.indexedAt.lt).toBeLessThanOrEqual(Math.min(...bulks.flatMap((b) => b.body.filter((l: any) => l.indexedAt).map((l: any) => l.indexedAt))));
	});

	test("GET /api/search sends a multi_match per word with the name boosted, bool filters, aggregations, sort and paging", async () => {
		es.sent.length = 0;
		const res = await shop.http.get("/api/search?q=wireles%20hedphones&category=Audio&currency=usd&minPrice=1000&maxPrice=30000&minRating=4&inStock=true&sort=price&page=2&pageSize=5");
		expect(res.status).toBe(200);
		const [req] = es.sent;
		expect(req.path).toBe(`/${INDEX}/_search`);
		expect(req.body.query).toEqual({
			bool: {
				must: [
					{ multi_match: { query: "wireles", fields: ["name^3", "categoryNames^1.5", "description", "optionValues"], fuzziness: "AUTO:4,8", operator: "and" } },
					// The word being typed may also be the start of a word.
					{
						bool: {
							should: [
								{ multi_match: { query: "hedphones", fields: ["name^3", "categoryNames^1.5", "description", "optionValues"], fuzziness: "AUTO:4,8", operator: "and" } },
								{ multi_match: { query: "hedphones", fields: ["name^3", "categoryNames^1.5", "description", "optionValues"], type: "bool_prefix" } },
							],
							minimum_should_match: 1,
						},
					},
				],
				filter: [{ term: { categoryPath: "audio" } }, { term: { currency: "USD" } }, { range: { price: { gte: 1000, lte: 30000 } } }, { range: { rating: { gte: 4 } } }, { term: { inStock: true } }],
			},
		});
		expect(req.body.aggs.category).toEqual({ terms: { field: "categoryPath", size: 100 } });
		expect(req.body.aggs.currency).toEqual({ terms: { field: "currency", size: 100 } });
		expect(req.body.aggs.price.range.field).toBe("price");
		expect(req.body.aggs.price.range.ranges[0]).toEqual({ key: "0-999", from: 0, to: 1000 });
		expect(req.body.aggs.price.range.ranges.at(-1)).toEqual({ key: "25000-", from: 25000 });
		expect(req.body.aggs.rating).toEqual({ range: { field: "rating", ranges: [{ key: "4+", from: 4 }, { key: "3+", from: 3 }, { key: "2+", from: 2 }, { key: "1+", from: 1 }] } });
		expect(req.body.sort).toEqual([{ price: "asc" }, { "name.keyword": "asc" }]);
		expect(req.body).toMatchObject({ from: 5, size: 5, track_total_hits: true });

		expect(res.body.rows).toEqual([{ id: "p1", name: "Wireless Headphones Pro", slug: "p1", price: 19_900, currency: "USD", rating: 4.6, ratingCount: 12, inStock: true, image: "https://img.example/p1.jpg" }]);
		expect(res.body).toMatchObject({ total: 6, page: 2, pageSize: 5, totalPages: 2 });
		expect(res.body.facets.category).toEqual([{ value: "electronics", count: 6 }, { value: "audio", count: 4 }]);
		expect(res.body.facets.currency).toEqual([{ value: "USD", count: 6 }]);
		expect(res.body.facets.price.find((b: any) => b.from === 10_000)).toEqual({ from: 10_000, to: 24_999, count: 6 });
		expect(res.body.facets.rating).toEqual([{ from: 4, to: 5, count: 3 }, { from: 3, to: 5, count: 4 }, { from: 2, to: 5, count: 5 }, { from: 1, to: 5, count: 6 }]);
	});

	test("each word of a query may be in a different field, as in the embedded engine (name + option value)", async () => {
		es.sent.length = 0;
		expect((await shop.http.get("/api/search?q=candle%20lavender")).status).toBe(200);
		// One multi_match of both words with operator "and" (best_fields) would need both in one field.
		const must = es.sent[0].body.query.bool.must;
		expect(must).toHaveLength(2);
		// The last word's own query is the first of its two ways (itself, or the start of a word).
		const own = [must[0], must[1].bool.should[0]];
		expect(own.map((m: any) => m.multi_match.query)).toEqual(["candle", "lavender"]);
		for (const m of own) expect(m.multi_match).toMatchObject({ fields: ["name^3", "categoryNames^1.5", "description", "optionValues"], fuzziness: "AUTO:4,8" });
		expect(own[0].multi_match.type ?? "best_fields").toBe("best_fields");
	});

	test("without a query: match_all, and relevance sorts by score first", async () => {
		es.sent.length = 0;
		await shop.http.get("/api/search");
		expect(es.sent[0].body.query).toEqual({ bool: { must: [{ match_all: {} }], filter: [] } });
		expect(es.sent[0].body.sort[0]).toBe("_score");
		expect(es.sent[0].body).toMatchObject({ from: 0, size: 20 });
	});

	test("autocomplete asks the completion suggester", async () => {
		es.sent.length = 0;
		const res = await shop.http.get("/api/search/autocomplete?q=head");
		expect(es.sent[0].body.suggest).toEqual({ products: { prefix: "head", completion: { field: "suggest", size: 10, skip_duplicates: true } } });
		expect(res.body).toEqual({ suggestions: [{ text: "Wireless Headphones Pro", productId: "p1" }, { text: "Gaming Headset", productId: "p2" }] });
		es.sent.length = 0;
		await shop.http.get("/api/search/autocomplete?q=headphnes");
		expect(es.sent[0].body.suggest.products.completion.fuzzy).toEqual({ fuzziness: 1 });
	});

	test("an update is re-fetched by id and written with an immediate refresh", async () => {
		es.sent.length = 0;
		await shop.broker.call("products.rename", { id: "p007", name: "Studio Monitor" });
		const bulk = await waitFor(() => es.sent.find((s) => s.path === "/_bulk"), (v) => !!v);
		expect(bulk!.querystring.refresh).toBe("true");
		expect(bulk!.body[0]).toEqual({ index: { _index: INDEX, _id: "p007" } });
		expect(bulk!.body[1]).toMatchObject({ name: "Studio Monitor", suggest: { input: ["Studio Monitor", "Monitor"] } });
	});

	test("an archived product is deleted from the index at once", async () => {
		es.sent.length = 0;
		await shop.broker.call("products.archive", { id: "p003" });
		const bulk = await waitFor(() => es.sent.find((s) => s.path === "/_bulk"), (v) => !!v);
		expect(bulk!.body).toEqual([{ delete: { _index: INDEX, _id: "p003" } }]);
		expect(bulk!.querystring.refresh).toBe("true");
	});

	test("admin rebuild re-indexes in bulk", async () => {
		es.sent.length = 0;
		const res = await shop.http.post("/api/search/rebuild", {}, { token: fakeToken("a1", "admin") });
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ indexed: 249, removed: 2, pages: 2 });
		const pages = es.sent.filter((s) => s.path === "/_bulk" && s.body[0].index);
		expect(pages.map((b) => b.body.length / 2)).toEqual([200, 49]);
	});
});

describe("Elasticsearch down", () => {
	test("a search is a 503, not a 500, and the service keeps running", async () => {
		const mock = new Mock();
		mock.add({ method: ["GET", "POST", "HEAD", "PUT"], path: "*" }, () => new errors.ResponseError({ body: { error: "unavailable" }, statusCode: 503, headers: {}, warnings: null, meta: {} as any }));
		const shop = await startShop({ services: [FakeUsers, fakeProducts(new Map()), searchOnMock(mock)] });
		try {
			const res = await shop.http.get("/api/search?q=x");
			expect(res.status).toBe(503);
			expect(res.body).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE" });
			expect((await shop.http.get("/api/search/autocomplete?q=x")).status).toBe(503);
			expect((await shop.http.get("/api/health")).status).toBe(200);
		} finally {
			await shop.stop();
		}
	});
});

describe("Elasticsearch refusing a request (mocked server)", () => {
	const TOTAL = 12_345;
	let shop: Shop;
	let sent: Sent[];
	let search: any;
	const searches = () => sent.filter((s) => s.path.endsWith("/_search"));

	beforeAll(async () => {
		// As Elasticsearch 8: a hit past index.max_result_window (10,000) is a 400; so is a query it cannot parse.
		const refuse = (type: string, reason: string) => new errors.ResponseError({ body: { error: { type, reason }, status: 400 }, statusCode: 400, headers: {}, warnings: null, meta: {} as any });
		const es = mockElasticsearch({
			indexExists: true,
			search: (body) => {
				if ((body.from ?? 0) + (body.size ?? 10) > 10_000) return refuse("illegal_argument_exception", "Result window is too large, from + size must be less than or equal to: [10000]");
				if (JSON.stringify(body).includes("refuseme")) return refuse("search_phase_execution_exception", "all shards failed");
				if (body.suggest) return { hits: { total: { value: 0, relation: "eq" }, hits: [] }, suggest: { products: [] } };
				const hits = Array.from({ length: body.size ?? 10 }, (_, i) => ({ _index: INDEX, _id: `h${i}`, _score: 1, _source: { id: `h${i}`, name: `Hit ${i}`, slug: `h${i}`, price: 100, currency: "USD", rating: 0, ratingCount: 0, inStock: true, image: null } }));
				return { took: 1, hits: { total: { value: TOTAL, relation: "eq" }, hits }, aggregations: { category: { buckets: [{ key: "misc", doc_count: TOTAL }] }, price: { buckets: [] }, rating: { buckets: [] } } };
			},
		});
		sent = es.sent;
		shop = await startShop({ services: [FakeUsers, fakeProducts(new Map()), searchOnMock(es.mock)] });
		search = shop.broker.getLocalService("search");
		await waitFor(() => search.lastRebuild, (v) => !!v, 5000);
	});
	afterAll(() => shop.stop());
	afterEach(() => jest.restoreAllMocks());

	test("a page past 10,000 results is 200 with no rows and the real total, as the embedded engine answers, and asks for no rows", async () => {
		const logged = jest.spyOn(search.logger, "error");
		sent.length = 0;
		const res = await shop.http.get("/api/search?page=501&pageSize=20");
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ rows: [], total: TOTAL, page: 501, pageSize: 20, totalPages: 618 });
		expect(res.body.facets.category).toEqual([{ value: "misc", count: TOTAL }]);
		expect(searches().map((s) => [s.body.from, s.body.size])).toEqual([[0, 0]]);
		expect(logged).not.toHaveBeenCalled();
	});

	test("a page across the 10,000th result has the rows up to it", async () => {
		sent.length = 0;
		const res = await shop.http.get("/api/search?page=334&pageSize=30");
		expect(res.status).toBe(200);
		expect(searches().map((s) => [s.body.from, s.body.size])).toEqual([[9_990, 10]]);
		expect(res.body).toMatchObject({ total: TOTAL, page: 334, pageSize: 30 });
		expect(res.body.rows).toHaveLength(10);
		// The last page inside the window is a whole one.
		sent.length = 0;
		expect((await shop.http.get("/api/search?page=500&pageSize=20")).body.rows).toHaveLength(20);
		expect(searches().map((s) => [s.body.from, s.body.size])).toEqual([[9_980, 20]]);
	});

	test("another 400 from Elasticsearch is the client's 400, logged as a warning, not a 503 outage", async () => {
		const error = jest.spyOn(search.logger, "error");
		const warn = jest.spyOn(search.logger, "warn");
		const res = await shop.http.get("/api/search?q=refuseme");
		expect(res.status).toBe(400);
		expect(res.body).toMatchObject({ code: 400, type: "BAD_REQUEST", message: "Search cannot answer this query" });
		expect(JSON.stringify(res.body)).not.toContain("search_phase_execution_exception");
		expect((await shop.http.get("/api/search/autocomplete?q=refuseme")).status).toBe(400);
		expect(error).not.toHaveBeenCalled();
		expect(warn).toHaveBeenCalledWith(expect.stringContaining("search_phase_execution_exception"));
	});
});

describe("Elasticsearch engine on its own (mocked server)", () => {
	test("does not create an index that exists", async () => {
		const es = mockElasticsearch({ indexExists: true });
		const engine = new ElasticsearchEngine({ node: "http://es.test:9200", index: INDEX, clientOptions: { Connection: es.mock.getConnection() } });
		await engine.init();
		await engine.init();
		expect(es.sent.map((s) => `${s.method} ${s.path}`)).toEqual([`HEAD /${INDEX}`]);
	});

	test("a failed bulk item is an error; deleting a missing document is not", async () => {
		const mock = new Mock();
		mock.add({ method: "POST", path: "/_bulk" }, (p) => {
			const first = (p.body as any[])[0];
			if (first.delete) return { errors: true, items: [{ delete: { _id: first.delete._id, status: 404, result: "not_found", error: undefined } }] };
			return { errors: true, items: [{ index: { _id: "x", status: 400, error: { type: "mapper_parsing_exception", reason: "failed to parse field [price]" } } }] };
		});
		const engine = new ElasticsearchEngine({ node: "http://es.test:9200", index: INDEX, clientOptions: { Connection: mock.getConnection() } });
		await expect(engine.upsert([toIndexDoc(row("x", "X"), Date.now())])).rejects.toThrow(/mapper_parsing_exception/);
		await expect(engine.remove(["gone"])).resolves.toBeUndefined();
	});
});

/**
 * The end-to-end checks of search.spec.ts against a real Elasticsearch 8:
 * `ELASTICSEARCH_URL=http://localhost:9200 npx jest test/integration/search-elasticsearch.spec.ts`.
 * Uses a fresh index per run and deletes it afterwards.
 */
const realEs = process.env.ELASTICSEARCH_URL ? describe : describe.skip;

realEs("Elasticsearch engine against a real server", () => {
	let shop: Shop;
	const index = `shop-products-test-${Date.now().toString(36)}`;
	const catalog = new Map([
		["h1", row("h1", "Wireless Headphones", { price: 19_900, minPrice: 19_900, maxPrice: 19_900, rating: { average: 4.6, count: 12 } })],
		["e1", row("e1", "Sport Earbuds", { price: 4_900, minPrice: 4_900, maxPrice: 4_900, rating: { average: 3.9, count: 3 } })],
		["t1", row("t1", "Organic T-Shirt", { categoryPath: ["apparel"], categoryNames: ["Apparel"], price: 2_500, minPrice: 2_500, maxPrice: 2_500 })],
	]);

	beforeAll(async () => {
		shop = await startShop({
			services: [
				FakeUsers,
				fakeProducts(catalog),
				{ name: "search", mixins: [SearchService as unknown as Partial<ServiceSchema>], methods: { createEngine: () => new ElasticsearchEngine({ node: process.env.ELASTICSEARCH_URL, index }) } },
			],
		});
		await waitFor(() => shop.broker.call<any>("search.stats"), (s) => !!s.lastRebuild && s.documents === 3, 15_000);
	});
	afterAll(async () => {
		const engine = new ElasticsearchEngine({ node: process.env.ELASTICSEARCH_URL, index });
		await engine.client.indices.delete({ index }).catch(() => undefined);
		await engine.close();
		await shop.stop();
	});

	test("a misspelt query finds the product", async () => {
		const res = await shop.http.get("/api/search?q=wireles%20hedphones");
		expect(res.body.rows.map((r: any) => r.id)).toEqual(["h1"]);
	});

	test("facet counts equal the hits behind them", async () => {
		const base = await shop.http.get("/api/search");
		for (const f of base.body.facets.category) expect((await shop.http.get(`/api/search?category=${f.value}`)).body.total).toBe(f.count);
		for (const f of base.body.facets.currency) expect((await shop.http.get(`/api/search?currency=${f.value}`)).body.total).toBe(f.count);
		for (const f of base.body.facets.price) expect((await shop.http.get(`/api/search?minPrice=${f.from}${f.to == null ? "" : `&maxPrice=${f.to}`}`)).body.total).toBe(f.count);
		for (const f of base.body.facets.rating) expect((await shop.http.get(`/api/search?minRating=${f.from}`)).body.total).toBe(f.count);
	});

	test("autocomplete and an archived product gone within a second", async () => {
		expect((await shop.http.get("/api/search/autocomplete?q=earb")).body.suggestions).toEqual([{ text: "Sport Earbuds", productId: "e1" }]);
		await shop.broker.call("products.archive", { id: "e1" });
		await waitFor(() => shop.http.get("/api/search?q=earbuds"), (r) => r.body.total === 0, 1000);
	});

	test("a change is searchable within a second", async () => {
		await shop.broker.call("products.rename", { id: "t1", name: "Linen Shirt" });
		await waitFor(() => shop.http.get("/api/search?q=linen"), (r) => r.body.total === 1, 1000);
	});
});
