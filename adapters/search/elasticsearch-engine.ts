/**
 * Search on Elasticsearch 8 (ELASTICSEARCH_URL): an index with explicit mappings created when
 * missing, a `multi_match` per query word with the name boosted and `fuzziness: AUTO:4,8`, filters in a bool query,
 * facets from aggregations (terms on the category path and the currency, ranges on price and rating, the same
 * buckets as the embedded engine), a completion suggester for autocomplete, bulk writes.
 * The index refreshes every second, which is the freshness the API promises.
 */
import type { Client, ClientOptions, estypes } from "@elastic/elasticsearch";
import type { SearchEngine, WriteOptions } from "./search-engine";
import { BadRequestError } from "../../lib/errors";
import {
	ES_FUZZINESS,
	searchWords,
	PRICE_BUCKETS,
	RATING_BUCKETS,
	optionValues,
	type ProductIndexDoc,
	type SearchQuery,
	type SearchResult,
	type SearchSort,
	type Suggestion,
} from "../../lib/search-query";

export interface ElasticsearchEngineOptions {
	node?: string;
	index: string;
	/** Extra client options (tests pass the mock's `Connection`). */
	clientOptions?: Partial<ClientOptions>;
}

/** What is stored per product: the index document plus the fields Elasticsearch needs. */
type EsProduct = ProductIndexDoc & { optionValues: string[]; suggest: { input: string[]; weight: number } };

/** Lower case without accents, as the embedded engine reads text: "creme" finds "Crème", "equi" suggests "Équinoxe". */
const FOLDED = "folded";

export const PRODUCT_MAPPINGS: estypes.MappingTypeMapping = {
	dynamic: "strict",
	properties: {
		id: { type: "keyword" },
		name: { type: "text", analyzer: FOLDED, fields: { keyword: { type: "keyword" } } },
		slug: { type: "keyword" },
		description: { type: "text", analyzer: FOLDED },
		categoryId: { type: "keyword" },
		categoryPath: { type: "keyword" },
		categoryNames: { type: "text", analyzer: FOLDED },
		price: { type: "long" },
		maxPrice: { type: "long" },
		currency: { type: "keyword" },
		inStock: { type: "boolean" },
		options: { type: "object", enabled: false },
		optionValues: { type: "text", analyzer: FOLDED },
		rating: { type: "float" },
		ratingCount: { type: "integer" },
		image: { type: "keyword", index: false },
		createdAt: { type: "date" },
		indexedAt: { type: "long" },
		suggest: { type: "completion", analyzer: FOLDED },
	},
};

export const PRODUCT_SETTINGS: estypes.IndicesIndexSettings = {
	refresh_interval: "1s",
	number_of_shards: 1,
	analysis: { analyzer: { [FOLDED]: { type: "custom", tokenizer: "standard", filter: ["lowercase", "asciifolding"] } } },
};

/** Every word-suffix of the name ("Wireless Headphones Pro", "Headphones Pro", "Pro"), so a prefix of any word suggests the product. */
export function suggestInputs(name: string): string[] {
	const words = name.split(/\s+/).filter(Boolean);
	return [...new Set(words.map((_, i) => words.slice(i).join(" ")))].slice(0, 10);
}

export function toEsProduct(doc: ProductIndexDoc): EsProduct {
	return { ...doc, optionValues: optionValues(doc), suggest: { input: suggestInputs(doc.name), weight: 1 + Math.round(doc.rating * 10) } };
}

// Elasticsearch returns range buckets sorted by `from`, so they are matched back by key, not position.
const priceKey = (b: { from: number; to: number | null }) => `${b.from}-${b.to ?? ""}`;
const ratingKey = (b: { from: number }) => `${b.from}+`;

const SORTS: Record<SearchSort, estypes.Sort> = {
	relevance: ["_score", { rating: "desc" }, { "name.keyword": "asc" }],
	price: [{ price: "asc" }, { "name.keyword": "asc" }],
	"-price": [{ price: "desc" }, { "name.keyword": "asc" }],
	rating: [{ rating: "desc" }, { ratingCount: "desc" }, { "name.keyword": "asc" }],
};

/**
 * Elasticsearch's `index.max_result_window` (its default, which our index keeps): a request for a hit
 * past it (`from + size`) is refused with a 400.
 */
export const MAX_RESULT_WINDOW = 10_000;

const TEXT_FIELDS = ["name^3", "categoryNames^1.5", "description", "optionValues"];

/**
 * Every word of the query, each in any field, as the embedded engine matches: one multi_match per word.
 * One multi_match of the whole text with `operator: "and"` (best_fields) needs every word in one field,
 * so "candle lavender" (name + option value) would find nothing; `cross_fields` takes no fuzziness.
 * A query of punctuation alone has no words and, as in the embedded engine, matches nothing.
 */
function textQuery(text: string): estypes.QueryDslQueryContainer[] {
	const words = searchWords(text);
	if (!words.length) return [{ match_none: {} }];
	return words.map((word, i) => {
		const itself: estypes.QueryDslQueryContainer = { multi_match: { query: word, fields: TEXT_FIELDS, fuzziness: ES_FUZZINESS, operator: "and" } };
		if (i < words.length - 1) return itself;
		// The word being typed: itself within its typos, or the start of a word however short, as the
		// embedded engine reads it (a one-word bool_prefix is a prefix query on each field).
		return { bool: { should: [itself, { multi_match: { query: word, fields: TEXT_FIELDS, type: "bool_prefix" } }], minimum_should_match: 1 } };
	});
}

/** The search request for a parsed query (exported for tests and for reading). */
export function buildSearchRequest(index: string, q: SearchQuery): estypes.SearchRequest {
	const filter: estypes.QueryDslQueryContainer[] = [];
	if (q.category) filter.push({ term: { categoryPath: q.category } });
	if (q.currency) filter.push({ term: { currency: q.currency } });
	if (q.minPrice != null || q.maxPrice != null) filter.push({ range: { price: { gte: q.minPrice, lte: q.maxPrice } } });
	if (q.minRating != null) filter.push({ range: { rating: { gte: q.minRating } } });
	if (q.inStock) filter.push({ term: { inStock: true } });
	const must: estypes.QueryDslQueryContainer[] = q.text ? textQuery(q.text) : [{ match_all: {} }];
	// Rows past the window cannot be fetched: a page beyond it asks for none (the total and facets
	// still come back), as the embedded engine answers a page past the end; a page across it is cut there.
	const from = (q.page - 1) * q.pageSize;
	const size = Math.max(0, Math.min(q.pageSize, MAX_RESULT_WINDOW - from));
	return {
		index,
		query: { bool: { must, filter } },
		aggs: {
			category: { terms: { field: "categoryPath", size: 100 } },
			currency: { terms: { field: "currency", size: 100 } },
			// Range aggregations exclude `to`; our buckets include it, and prices are whole cents.
			price: { range: { field: "price", ranges: PRICE_BUCKETS.map((b) => ({ key: priceKey(b), from: b.from, ...(b.to == null ? {} : { to: b.to + 1 }) })) } },
			rating: { range: { field: "rating", ranges: RATING_BUCKETS.map((b) => ({ key: ratingKey(b), from: b.from })) } },
		},
		sort: SORTS[q.sort],
		from: size ? from : 0,
		size,
		track_total_hits: true,
		_source: ["id", "name", "slug", "price", "currency", "rating", "ratingCount", "inStock", "image"],
	};
}

export function buildSuggestRequest(index: string, prefix: string, limit: number): estypes.SearchRequest {
	return {
		index,
		size: 0,
		_source: ["id", "name"],
		suggest: {
			products: {
				prefix,
				completion: { field: "suggest", size: limit, skip_duplicates: true, ...(prefix.length >= 5 ? { fuzzy: { fuzziness: 1 } } : {}) },
			},
		},
	};
}

interface Bucket {
	key: string | number;
	doc_count: number;
}

function bucketsOf(aggs: Record<string, any> | undefined, name: string): Bucket[] {
	return (aggs?.[name]?.buckets ?? []) as Bucket[];
}

/**
 * Elasticsearch's 400 refuses the request it was sent (the query a shopper typed), which asking
 * again will not change: the client's 400, not a "try again" outage. Anything else (down, 429, a
 * missing index, credentials) is thrown as it is.
 */
function refusedRequest(err: unknown): never {
	const status = (err as { statusCode?: number; meta?: { statusCode?: number } } | null)?.statusCode ?? (err as any)?.meta?.statusCode;
	if (status !== 400) throw err;
	const refused = new BadRequestError("Search cannot answer this query");
	// For the log (the gateway never sends a cause): what Elasticsearch said.
	(refused as Error).cause = err;
	throw refused;
}

export class ElasticsearchEngine implements SearchEngine {
	readonly kind = "elasticsearch" as const;
	readonly client: Client;
	readonly index: string;
	private ready = false;

	constructor(opts: ElasticsearchEngineOptions) {
		this.index = opts.index;
		// Required here, not at import: only ELASTICSEARCH_URL deployments need the client, which is slow to load.
		const { Client: EsClient } = require("@elastic/elasticsearch") as typeof import("@elastic/elasticsearch");
		this.client = new EsClient({ node: opts.node, ...opts.clientOptions });
	}

	async init(): Promise<void> {
		if (this.ready) return;
		const exists = await this.client.indices.exists({ index: this.index });
		if (!exists) {
			try {
				await this.client.indices.create({ index: this.index, settings: PRODUCT_SETTINGS, mappings: PRODUCT_MAPPINGS });
			} catch (err: any) {
				// Another search instance created it between our check and our create.
				if (err?.body?.error?.type !== "resource_already_exists_exception" && err?.meta?.body?.error?.type !== "resource_already_exists_exception") throw err;
			}
		}
		this.ready = true;
	}

	async upsert(docs: ProductIndexDoc[], opts: WriteOptions = {}): Promise<void> {
		if (!docs.length) return;
		const operations = docs.flatMap((d) => [{ index: { _index: this.index, _id: d.id } }, toEsProduct(d)]);
		await this.bulk(operations, opts);
	}

	async remove(ids: string[], opts: WriteOptions = {}): Promise<void> {
		if (!ids.length) return;
		await this.bulk(ids.map((id) => ({ delete: { _index: this.index, _id: id } })), opts);
	}

	private async bulk(operations: estypes.BulkRequest["operations"], opts: WriteOptions): Promise<void> {
		// An event's change is refreshed at once (events come batched, so refreshes stay few);
		// a rebuild's pages wait for the refresh at its end.
		const res = await this.client.bulk({ operations, ...(opts.immediate ? { refresh: true } : {}) });
		if (!res.errors) return;
		// A delete of a document that is already gone is not a failure.
		const failed = res.items.map((item) => Object.values(item)[0]).filter((r) => r?.error && !(r.status === 404));
		if (failed.length) throw new Error(`Elasticsearch bulk failed for ${failed.length} item(s): ${failed[0]!.error!.type}: ${failed[0]!.error!.reason}`);
	}

	async removeIndexedBefore(indexedAt: number): Promise<number> {
		const res = await this.client.deleteByQuery({ index: this.index, query: { range: { indexedAt: { lt: indexedAt } } }, conflicts: "proceed", refresh: true });
		return res.deleted ?? 0;
	}

	async search(q: SearchQuery): Promise<SearchResult> {
		const res = await this.client.search<EsProduct>(buildSearchRequest(this.index, q)).catch(refusedRequest);
		const total = typeof res.hits.total === "number" ? res.hits.total : (res.hits.total?.value ?? 0);
		const aggs = res.aggregations as Record<string, any> | undefined;
		const priceCounts = new Map(bucketsOf(aggs, "price").map((b) => [String(b.key), b.doc_count]));
		const ratingCounts = new Map(bucketsOf(aggs, "rating").map((b) => [String(b.key), b.doc_count]));
		return {
			rows: res.hits.hits.map((h) => {
				const s = h._source!;
				return { id: s.id ?? h._id, name: s.name, slug: s.slug, price: s.price, currency: s.currency, rating: s.rating, ratingCount: s.ratingCount, inStock: s.inStock, image: s.image ?? null };
			}),
			total,
			page: q.page,
			pageSize: q.pageSize,
			totalPages: Math.ceil(total / q.pageSize),
			facets: {
				category: bucketsOf(aggs, "category").map((b) => ({ value: String(b.key), count: b.doc_count })),
				currency: bucketsOf(aggs, "currency").map((b) => ({ value: String(b.key), count: b.doc_count })),
				price: PRICE_BUCKETS.map((b) => ({ ...b, count: priceCounts.get(priceKey(b)) ?? 0 })),
				rating: RATING_BUCKETS.map((b) => ({ ...b, count: ratingCounts.get(ratingKey(b)) ?? 0 })),
			},
		};
	}

	async suggest(prefix: string, limit: number): Promise<Suggestion[]> {
		const res = await this.client.search<EsProduct>(buildSuggestRequest(this.index, prefix, limit)).catch(refusedRequest);
		const entries = (res.suggest?.products ?? []) as Array<estypes.SearchCompletionSuggest<EsProduct>>;
		const out: Suggestion[] = [];
		for (const entry of entries) {
			const options = Array.isArray(entry.options) ? entry.options : [entry.options];
			for (const o of options) out.push({ text: o._source?.name ?? o.text, productId: o._source?.id ?? o._id! });
		}
		return out.slice(0, limit);
	}

	async count(): Promise<number> {
		const res = await this.client.count({ index: this.index });
		return res.count;
	}

	async close(): Promise<void> {
		await this.client.close();
	}
}
