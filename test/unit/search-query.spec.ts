import {
	inStockMayChange,
	PRICE_BUCKETS,
	computeFacets,
	fuzzinessFor,
	inPriceBucket,
	matchesFilters,
	normalizeTerm,
	parseSearchQuery,
	searchWords,
	sortDocs,
	toIndexDoc,
	toSearchRow,
	type ProductIndexDoc,
	type SearchQuery,
} from "../../lib/search-query";
import MiniSearch from "minisearch";
import { buildSearchRequest, buildSuggestRequest, MAX_RESULT_WINDOW, suggestInputs } from "../../adapters/search/elasticsearch-engine";

function doc(id: string, over: Partial<ProductIndexDoc> = {}): ProductIndexDoc {
	return { id, name: id, slug: id, description: "", categoryId: null, categoryPath: [], categoryNames: [], price: 1000, maxPrice: 1000, currency: "USD", inStock: true, options: {}, rating: 0, ratingCount: 0, image: null, createdAt: null, indexedAt: 0, ...over };
}

const base: SearchQuery = { text: "", sort: "relevance", page: 1, pageSize: 20 };

describe("search query parsing", () => {
	test.each([
		[{}, { text: "", sort: "relevance", page: 1, pageSize: 20 }],
		[{ q: "  red \n  shoes\t" }, { text: "red shoes", sort: "relevance", page: 1, pageSize: 20 }],
		// The 200-character limit counts what is left once spaces collapse.
		[{ q: `${" ".repeat(150)}candle${" ".repeat(150)}` }, { text: "candle", sort: "relevance", page: 1, pageSize: 20 }],
		[{ category: " Shoes ", minPrice: 0, maxPrice: 500, minRating: 4, inStock: true, sort: "-price", page: 3, pageSize: 50 }, { text: "", category: "shoes", minPrice: 0, maxPrice: 500, minRating: 4, inStock: true, sort: "-price", page: 3, pageSize: 50 }],
		// inStock=false does not filter; a blank category is no category.
		[{ inStock: false, category: "  ", currency: "" }, { text: "", sort: "relevance", page: 1, pageSize: 20 }],
		[{ currency: "EUR", maxPrice: 1000 }, { text: "", currency: "EUR", maxPrice: 1000, sort: "relevance", page: 1, pageSize: 20 }],
		[{ pageSize: 1000, page: 0 }, { text: "", sort: "relevance", page: 1, pageSize: 100 }],
	] as const)("%j", (params, expected) => {
		expect(parseSearchQuery(params as any)).toEqual(expected);
	});

	describe("the category filter reads a slug in any case or an id, as the product list does", () => {
		const tree = [{ id: "cat-A1", slug: "clothing", children: [{ id: "cat-B2", slug: "t-shirts", children: [] }] }, { id: "cat-C3", slug: "home" }];
		const docs = [doc("tee", { categoryPath: ["clothing", "t-shirts"] }), doc("coat", { categoryPath: ["clothing"] }), doc("lamp", { categoryPath: ["home"] })];
		test.each([
			["clothing", "clothing", ["tee", "coat"]],
			["Clothing", "clothing", ["tee", "coat"]],
			["cat-A1", "clothing", ["tee", "coat"]],
			["cat-B2", "t-shirts", ["tee"]],
			[" T-Shirts ", "t-shirts", ["tee"]],
			// Ids are matched exactly; an unknown value is taken as a slug and matches nothing.
			["CAT-A1", "cat-a1", []],
			["shoes", "shoes", []],
		])("%j → the slug %s: %j", (category, slug, found) => {
			const q = parseSearchQuery({ category }, tree);
			expect(q.category).toBe(slug);
			expect(docs.filter((d) => matchesFilters(d, q)).map((d) => d.id)).toEqual(found);
			// Elasticsearch filters on the same slug.
			expect((buildSearchRequest("idx", q).query as any).bool.filter).toEqual([{ term: { categoryPath: slug } }]);
		});

		test("without the categories (products unreachable) the value is read as a slug", () => {
			expect(parseSearchQuery({ category: "Clothing" }).category).toBe("clothing");
		});
	});

	test.each([
		[{ page: 1e30 }, 1_000_000],
		[{ page: 1_000_000 }, 1_000_000],
	])("the page is at most 1,000,000: %j", (params, page) => expect(parseSearchQuery(params).page).toBe(page));

	test.each([
		[{ minPrice: 500, maxPrice: 100 }, "maxPrice"],
		[{ q: "x".repeat(201) }, "q"],
	])("422 for %j names %s", (params, field) => {
		try {
			parseSearchQuery(params);
			throw new Error("accepted");
		} catch (err: any) {
			expect(err.code).toBe(422);
			expect(err.data[0].field).toBe(field);
		}
	});

	test.each([
		["a", 0],
		["abc", 0],
		["abcd", 1],
		["abcdefg", 1],
		["abcdefgh", 2],
	])("fuzziness of %s is %i", (term, n) => expect(fuzzinessFor(term)).toBe(n));

	test.each(["candle lavender", "Organic T-Shirt, red", "  wi-fi / 5GHz…router  ", "3.5mm jack", "- * !", "café's crème"])("the words of %j are where the embedded engine's tokenizer splits", (text) => {
		const tokenize = MiniSearch.getDefault("tokenize") as (text: string) => string[];
		expect(searchWords(text)).toEqual(tokenize(text).filter(Boolean));
	});

	test("terms lose case and accents", () => {
		expect(normalizeTerm("CAFÉ")).toBe("cafe");
		expect(normalizeTerm("Ñandú")).toBe("nandu");
		expect(["Straße", "STRAẞE", "Ærø", "Smørrebrød", "Łódź", "Œuvre", "Þórr"].map(normalizeTerm)).toEqual(["strasse", "strasse", "aero", "smorrebrod", "lodz", "oeuvre", "thorr"]);
	});
});

describe("index documents", () => {
	test("a listForIndex row becomes an index document", () => {
		const d = toIndexDoc(
			{ id: "p1", name: "Tee", slug: "tee", description: "Soft", categoryId: "c1", categoryPath: ["Apparel", "tops"], categoryNames: ["Apparel", "Tops"], price: 2500, minPrice: 1999, maxPrice: 2999, currency: "EUR", inStock: true, stock: 7, options: { Size: ["S", "M"], Color: "Red" }, rating: { average: 4.5, count: 2 }, image: "i.jpg", createdAt: "2024-01-01T00:00:00Z" },
			42,
		);
		expect(d).toEqual({ id: "p1", name: "Tee", slug: "tee", description: "Soft", categoryId: "c1", categoryPath: ["apparel", "tops"], categoryNames: ["Apparel", "Tops"], price: 1999, maxPrice: 2999, currency: "EUR", inStock: true, options: { Size: ["S", "M"], Color: ["Red"] }, rating: 4.5, ratingCount: 2, image: "i.jpg", createdAt: "2024-01-01T00:00:00.000Z", indexedAt: 42 });
		expect(toSearchRow(d)).toEqual({ id: "p1", name: "Tee", slug: "tee", price: 1999, currency: "EUR", rating: 4.5, ratingCount: 2, inStock: true, image: "i.jpg" });
	});

	test("missing and odd fields get safe values", () => {
		const d = toIndexDoc({ id: 7, name: "X", price: 12.5, stock: 0, image: { url: "u.png" } }, 1);
		expect(d).toMatchObject({ id: "7", price: 0, maxPrice: 0, inStock: false, rating: 0, ratingCount: 0, categoryPath: [], image: "u.png", createdAt: null, currency: "USD" });
	});

	test.each([["yesterday"], [{}], [true], [Number.NaN]])("a stored createdAt of %p is no date, not an error that fails the batch", (createdAt) => {
		expect(toIndexDoc({ id: "p", name: "X", createdAt }, 1).createdAt).toBeNull();
	});

	test("the index keeps no stock figure, only whether it is in stock", () => {
		expect(toIndexDoc({ id: "p", name: "X", stock: 4 }, 1)).toMatchObject({ inStock: true });
		expect(toIndexDoc({ id: "p", name: "X", stock: 4 }, 1)).not.toHaveProperty("stock");
		expect(toIndexDoc({ id: "p", name: "X", stock: 4, inStock: false }, 1).inStock).toBe(false);
	});

	test.each([
		["a sale that leaves some", { stock: 3, delta: -1 }, false],
		["a sale of the last one", { stock: 0, delta: -1 }, true],
		["a reservation of the last two", { stock: 0, delta: -2 }, true],
		["a return to an empty shelf", { stock: 1, delta: 1 }, true],
		["a return to a stocked shelf", { stock: 5, delta: 2 }, false],
		["a sale audit row that moves nothing", { stock: 0, delta: 0 }, false],
		["no figures", {}, true],
		["a figure that is not a number", { stock: "3", delta: -1 }, true],
	])("inStockMayChange: %s → %s", (_what, change, expected) => {
		expect(inStockMayChange(change)).toBe(expected);
	});

	test("completion inputs start at every word", () => {
		expect(suggestInputs("Wireless  Headphones Pro")).toEqual(["Wireless Headphones Pro", "Headphones Pro", "Pro"]);
	});
});

describe("filters, facets and sorts", () => {
	const docs = [
		doc("a", { categoryPath: ["electronics", "audio"], categoryNames: ["Electronics", "Audio"], price: 999, rating: 4.5 }),
		doc("b", { categoryPath: ["electronics", "phones"], categoryNames: ["Electronics", "Phones"], price: 1000, rating: 3, inStock: false }),
		doc("c", { categoryPath: ["apparel"], categoryNames: ["Apparel"], price: 25_000, rating: 5 }),
		doc("d", { price: 4_999, rating: 0, currency: "EUR" }),
	];

	test.each([
		[{ category: "electronics" }, ["a", "b"]],
		[{ category: "audio" }, ["a"]],
		[{ minPrice: 1000 }, ["b", "c", "d"]],
		[{ maxPrice: 999 }, ["a"]],
		[{ minPrice: 1000, maxPrice: 4999 }, ["b", "d"]],
		[{ minRating: 4 }, ["a", "c"]],
		[{ inStock: true }, ["a", "c", "d"]],
		[{ category: "electronics", inStock: true, minRating: 4 }, ["a"]],
		[{ currency: "EUR" }, ["d"]],
		[{ currency: "USD", minPrice: 1000 }, ["b", "c"]],
		[{ currency: "JPY" }, []],
	] as const)("%j matches %j", (filters, ids) => {
		expect(docs.filter((d) => matchesFilters(d, { ...base, ...filters })).map((d) => d.id)).toEqual(ids);
	});

	test("each facet count is the number of documents its filter keeps", () => {
		const facets = computeFacets(docs);
		expect(facets.category).toEqual([
			{ value: "electronics", label: "Electronics", count: 2 },
			{ value: "apparel", label: "Apparel", count: 1 },
			{ value: "audio", label: "Audio", count: 1 },
			{ value: "phones", label: "Phones", count: 1 },
		]);
		for (const f of facets.category) expect(docs.filter((d) => matchesFilters(d, { ...base, category: f.value })).length).toBe(f.count);
		expect(facets.currency).toEqual([
			{ value: "USD", count: 3 },
			{ value: "EUR", count: 1 },
		]);
		for (const f of facets.currency) expect(docs.filter((d) => matchesFilters(d, { ...base, currency: f.value })).length).toBe(f.count);
		for (const f of facets.price) expect(docs.filter((d) => matchesFilters(d, { ...base, minPrice: f.from, maxPrice: f.to ?? undefined })).length).toBe(f.count);
		for (const f of facets.rating) expect(docs.filter((d) => matchesFilters(d, { ...base, minRating: f.from })).length).toBe(f.count);
		expect(facets.price.map((f) => f.count)).toEqual([1, 1, 1, 0, 0, 1]);
		expect(facets.rating.map((f) => [f.from, f.count])).toEqual([[4, 2], [3, 3], [2, 3], [1, 3]]);
	});

	test("price buckets cover every price once", () => {
		for (const price of [0, 999, 1000, 2499, 2500, 9999, 10_000, 24_999, 25_000, 10_000_000]) {
			expect({ price, buckets: PRICE_BUCKETS.filter((b) => inPriceBucket(price, b)).length }).toEqual({ price, buckets: 1 });
		}
	});

	test.each([
		["price", ["a", "b", "d", "c"]],
		["-price", ["c", "d", "b", "a"]],
		["rating", ["c", "a", "b", "d"]],
		["relevance", ["c", "a", "b", "d"]],
	] as const)("sort %s", (sort, ids) => {
		expect(sortDocs(docs, sort).map((d) => d.id)).toEqual(ids);
	});

	test("relevance follows the scores", () => {
		expect(sortDocs(docs, "relevance", new Map([["d", 9], ["b", 5]])).map((d) => d.id)).toEqual(["d", "b", "c", "a"]);
	});
});

describe("the Elasticsearch query for a parsed search", () => {
	test("no text and no filters is match_all with empty filters", () => {
		const req = buildSearchRequest("idx", base);
		expect(req.query).toEqual({ bool: { must: [{ match_all: {} }], filter: [] } });
		expect(req).toMatchObject({ index: "idx", from: 0, size: 20 });
	});

	test("a swap of neighbouring letters stays one edit (transpositions are on by default), in search and autocomplete", () => {
		// The only word is also the word being typed: its own match is the first of its two ways.
		const match = (buildSearchRequest("idx", { ...base, text: "candel" }).query as any).bool.must[0].bool.should[0].multi_match;
		expect(match).toMatchObject({ query: "candel", fuzziness: "AUTO:4,8" });
		expect(match.fuzzy_transpositions ?? true).toBe(true);
		const fuzzy = (buildSuggestRequest("idx", "candel", 10).suggest as any).products.completion.fuzzy;
		expect(fuzzy).toMatchObject({ fuzziness: 1 });
		expect(fuzzy.transpositions ?? true).toBe(true);
	});

	test("each word is a multi_match of its own, in any field: words in different fields match together", () => {
		const must = (buildSearchRequest("idx", { ...base, text: "candle lavender" }).query as any).bool.must;
		const fields = ["name^3", "categoryNames^1.5", "description", "optionValues"];
		const itself = (query: string) => ({ multi_match: { query, fields, fuzziness: "AUTO:4,8", operator: "and" } });
		// The last word, still being typed, may also be the start of a word (as the embedded engine reads it).
		expect(must).toEqual([itself("candle"), { bool: { should: [itself("lavender"), { multi_match: { query: "lavender", fields, type: "bool_prefix" } }], minimum_should_match: 1 } }]);
		// Punctuation separates words, as in the embedded engine; a query of punctuation alone matches nothing.
		const words = (must: any[]) => must.map((m: any) => (m.multi_match ?? m.bool.should[0].multi_match).query);
		expect(words((buildSearchRequest("idx", { ...base, text: "t-shirt" }).query as any).bool.must)).toEqual(["t", "shirt"]);
		expect((buildSearchRequest("idx", { ...base, text: "- *" }).query as any).bool.must).toEqual([{ match_none: {} }]);
	});

	test.each([
		// page, pageSize → from, size: never a hit past Elasticsearch's result window.
		[1, 20, 0, 20],
		[500, 20, 9_980, 20],
		[334, 30, 9_990, 10],
		[501, 20, 0, 0],
		[1_000_000, 100, 0, 0],
	])("page %i of %i asks for from %i, size %i", (page, pageSize, from, size) => {
		const req = buildSearchRequest("idx", { ...base, page, pageSize });
		expect(req).toMatchObject({ from, size, track_total_hits: true });
		expect(req.from! + req.size!).toBeLessThanOrEqual(MAX_RESULT_WINDOW);
	});

	test("only one bound of the price range", () => {
		const req = buildSearchRequest("idx", { ...base, minPrice: 500, page: 3, pageSize: 10, sort: "rating" });
		expect((req.query as any).bool.filter).toEqual([{ range: { price: { gte: 500, lte: undefined } } }]);
		expect(req).toMatchObject({ from: 20, size: 10, sort: [{ rating: "desc" }, { ratingCount: "desc" }, { "name.keyword": "asc" }] });
	});
});
