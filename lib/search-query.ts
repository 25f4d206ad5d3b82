/**
 * The search vocabulary shared by both engines: the indexed product document, the parsed query,
 * the facet buckets and the filter/sort rules. Both engines answer the same question the same way:
 * the embedded engine runs these functions, the Elasticsearch engine translates them into a query.
 */
import { invalidField } from "./errors";
import { charCount } from "./param-rules";
import { assertPriceRange } from "./catalog-query";
import { MAX_PAGE, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from "./pagination";
import { findCategoryRef } from "./catalog-rules";
import { spellOutLatin } from "./slug";

export type SearchSort = "relevance" | "price" | "-price" | "rating";
export const SEARCH_SORTS: SearchSort[] = ["relevance", "price", "-price", "rating"];

export interface SearchQuery {
	text: string;
	category?: string;
	/** Only products priced in this currency (ISO 4217, uppercase): price filters and facets then compare like with like. */
	currency?: string;
	minPrice?: number;
	maxPrice?: number;
	minRating?: number;
	inStock?: boolean;
	sort: SearchSort;
	page: number;
	pageSize: number;
}

/** One active product as the index holds it (built from `products.listForIndex` rows). */
export interface ProductIndexDoc {
	id: string;
	name: string;
	slug: string;
	description: string;
	categoryId: string | null;
	/** Slugs from the root category down to the product's own, so a filter on a parent matches. */
	categoryPath: string[];
	categoryNames: string[];
	/** The lowest price a customer can pay (cheapest variant): what rows show, filters and sorts use. */
	price: number;
	maxPrice: number;
	currency: string;
	inStock: boolean;
	options: Record<string, string[]>;
	rating: number;
	ratingCount: number;
	image: string | null;
	createdAt: string | null;
	/** Epoch ms of the last write: a rebuild removes what it did not touch. */
	indexedAt: number;
}

/** What answering a search needs of a product: its row, the filters, the sorts and the facets. */
export const SEARCHABLE_FIELDS = ["id", "name", "slug", "price", "currency", "rating", "ratingCount", "inStock", "image", "categoryPath", "categoryNames"] as const;
export type SearchableDoc = Pick<ProductIndexDoc, (typeof SEARCHABLE_FIELDS)[number]>;

export interface SearchRow {
	id: string;
	name: string;
	slug: string;
	price: number;
	currency: string;
	rating: number;
	ratingCount: number;
	inStock: boolean;
	image: string | null;
}

export interface ValueFacet {
	value: string;
	count: number;
}
export interface CategoryFacet extends ValueFacet {
	label?: string;
}
export interface RangeFacet {
	from: number;
	/** Inclusive upper bound; null for the open-ended top bucket. */
	to: number | null;
	count: number;
}
export interface SearchFacets {
	category: CategoryFacet[];
	/** The currencies of the matching products, so a storefront of a shop selling in several can offer `currency=`. */
	currency: ValueFacet[];
	price: RangeFacet[];
	rating: RangeFacet[];
}
export interface SearchResult {
	rows: SearchRow[];
	total: number;
	page: number;
	pageSize: number;
	totalPages: number;
	facets: SearchFacets;
}
export interface Suggestion {
	text: string;
	productId: string;
}

/**
 * Price facet buckets in cents. `to` is inclusive so that a bucket is exactly the filter
 * `minPrice=from&maxPrice=to` (prices are whole cents).
 */
export const PRICE_BUCKETS: Array<{ from: number; to: number | null }> = [
	{ from: 0, to: 999 },
	{ from: 1_000, to: 2_499 },
	{ from: 2_500, to: 4_999 },
	{ from: 5_000, to: 9_999 },
	{ from: 10_000, to: 24_999 },
	{ from: 25_000, to: null },
];

/** Rating facets are "n stars and up", exactly the filter `minRating=n`. */
export const RATING_BUCKETS: Array<{ from: number; to: number }> = [4, 3, 2, 1].map((from) => ({ from, to: 5 }));

/** The longest query, counted once whitespace is collapsed (`parseSearchQuery`). */
export const MAX_QUERY_LENGTH = 200;
/** The longest autocomplete prefix, counted the same way. */
export const MAX_PREFIX_LENGTH = 100;
/** The longest `q` as sent: room for a short query padded with spaces, which collapse away. */
export const MAX_RAW_QUERY_LENGTH = 1000;
export const MAX_SUGGESTIONS = 10;

/** Raw params after the validator's conversion (numbers are numbers, inStock a boolean). */
export interface SearchParams {
	q?: string;
	category?: string;
	currency?: string;
	minPrice?: number;
	maxPrice?: number;
	minRating?: number;
	inStock?: boolean;
	sort?: SearchSort;
	page?: number;
	pageSize?: number;
}

/** What the category filter needs of the catalog's categories (`products.listCategories`: a tree). */
export interface CategoryRef {
	id: string;
	slug: string;
	children?: CategoryRef[];
}

/**
 * The parsed query. `categories` (the catalog's tree) lets `category` be a category id as well as a
 * slug in any case, as in the product list; the index holds slugs (`categoryPath`), so the filter
 * becomes the named category's slug. Without them, or for a category not there, the value is taken
 * as a slug.
 */
export function parseSearchQuery(p: SearchParams, categories: readonly CategoryRef[] = []): SearchQuery {
	const text = queryText(p.q, MAX_QUERY_LENGTH);
	assertPriceRange(p.minPrice, p.maxPrice);
	const q: SearchQuery = {
		text,
		sort: p.sort ?? "relevance",
		page: Math.min(MAX_PAGE, Math.max(1, Math.floor(p.page ?? 1))),
		pageSize: Math.min(MAX_PAGE_SIZE, Math.max(1, Math.floor(p.pageSize ?? DEFAULT_PAGE_SIZE))),
	};
	const category = p.category?.trim();
	if (category) q.category = findCategoryRef(categories, category)?.slug ?? category.toLowerCase();
	if (p.currency) q.currency = p.currency;
	if (p.minPrice != null) q.minPrice = p.minPrice;
	if (p.maxPrice != null) q.maxPrice = p.maxPrice;
	if (p.minRating != null) q.minRating = p.minRating;
	// inStock=false means "do not filter", not "only what is sold out".
	if (p.inStock === true) q.inStock = true;
	return q;
}

/** Collapses whitespace and control characters; the engines tokenize the rest. */
export function normalizeText(value: string): string {
	// eslint-disable-next-line no-control-regex -- control characters become spaces
	return value.replace(/[\u0000-\u001F\u007F]+/g, " ").replace(/\s+/g, " ").trim();
}

/** `q` as both engines read it (whitespace collapsed), at most `max` characters (code points); else a 422 naming q. */
export function queryText(raw: string | undefined, max: number): string {
	const text = normalizeText(raw ?? "");
	if (text.length > max && charCount(text) > max) throw invalidField("q", `q must be at most ${max} characters`, "stringMax");
	return text;
}

/** White space and punctuation: where minisearch's default tokenizer, so the embedded engine, splits words. */
const WORD_SEPARATOR = /[\n\r\p{Z}\p{P}]+/u;

/** A query's words as both engines match them, each on its own: "t-shirt, red" is "t", "shirt" and "red". */
export function searchWords(text: string): string[] {
	return text.split(WORD_SEPARATOR).filter(Boolean);
}

/**
 * Lower case without diacritics, and the Latin letters no accent stripping reduces spelled out:
 * "Café" and "cafe", "Straße" and "strasse", "Ærø" and "aero" are the same word to a shopper (as
 * Elasticsearch's asciifolding has them, and as the slugs spell them).
 */
export function normalizeTerm(term: string): string {
	return spellOutLatin(term.normalize("NFD").replace(/\p{M}/gu, "")).toLowerCase();
}

/**
 * Edit distance allowed for a term, as Elasticsearch's `fuzziness: "AUTO:4,8"`: none below 4
 * characters, 1 up to 7, then 2. Stricter than plain AUTO, which lets "silver" match "filler".
 */
export const ES_FUZZINESS = "AUTO:4,8";
export function fuzzinessFor(term: string): number {
	return term.length < 4 ? 0 : term.length < 8 ? 1 : 2;
}

function toStringArray(value: unknown): string[] {
	if (Array.isArray(value)) return value.filter((v) => v != null && v !== "").map(String);
	if (typeof value === "string" && value) return value.split(/\s*[>/,]\s*/).filter(Boolean);
	return [];
}

function cents(value: unknown): number | undefined {
	return typeof value === "number" && Number.isSafeInteger(value) ? value : undefined;
}

/**
 * Whether a stock change can change what search knows of the product: only `inStock` is indexed,
 * and it can only change when the variant's stock crosses zero. Without the numbers, assume it can.
 */
export function inStockMayChange(change: { stock?: unknown; delta?: unknown }): boolean {
	const { stock, delta } = change;
	if (typeof stock !== "number" || typeof delta !== "number") return true;
	return stock > 0 !== stock - delta > 0;
}

/** Builds the index document from a `products.listForIndex` (or `getForIndex`) row. */
export function toIndexDoc(row: Record<string, any>, indexedAt: number): ProductIndexDoc {
	const price = cents(row.minPrice) ?? cents(row.price) ?? 0;
	const options: Record<string, string[]> = {};
	if (row.options && typeof row.options === "object") {
		for (const [k, v] of Object.entries(row.options as Record<string, unknown>)) options[k] = toStringArray(Array.isArray(v) ? v : [v]);
	}
	const rating = row.rating && typeof row.rating === "object" ? row.rating : { average: row.rating, count: row.ratingCount };
	return {
		id: String(row.id),
		name: String(row.name ?? ""),
		slug: String(row.slug ?? ""),
		description: String(row.description ?? ""),
		categoryId: row.categoryId ? String(row.categoryId) : null,
		categoryPath: toStringArray(row.categoryPath).map((s) => s.toLowerCase()),
		categoryNames: toStringArray(row.categoryNames),
		price,
		maxPrice: Math.max(price, cents(row.maxPrice) ?? price),
		currency: String(row.currency ?? "USD"),
		inStock: typeof row.inStock === "boolean" ? row.inStock : typeof row.stock === "number" && row.stock > 0,
		options,
		rating: typeof rating.average === "number" && Number.isFinite(rating.average) ? rating.average : 0,
		ratingCount: typeof rating.count === "number" ? rating.count : 0,
		image: typeof row.image === "string" ? row.image : row.image?.url ?? null,
		createdAt: isoDate(row.createdAt),
		indexedAt,
	};
}

/** A date the index can sort by, or null: one bad stored value must not fail the document (and its whole batch). */
function isoDate(value: unknown): string | null {
	if (!value || !(typeof value === "string" || typeof value === "number" || value instanceof Date)) return null;
	const date = new Date(value);
	return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** The words of a product a shopper may type besides its name: categories and option values. */
export function optionValues(doc: ProductIndexDoc): string[] {
	return Object.values(doc.options).flat();
}

export function toSearchRow(doc: SearchableDoc): SearchRow {
	return { id: doc.id, name: doc.name, slug: doc.slug, price: doc.price, currency: doc.currency, rating: doc.rating, ratingCount: doc.ratingCount, inStock: doc.inStock, image: doc.image };
}

export function matchesFilters(doc: SearchableDoc, q: SearchQuery): boolean {
	if (q.category && !doc.categoryPath.includes(q.category)) return false;
	if (q.currency && doc.currency !== q.currency) return false;
	if (q.minPrice != null && doc.price < q.minPrice) return false;
	if (q.maxPrice != null && doc.price > q.maxPrice) return false;
	if (q.minRating != null && doc.rating < q.minRating) return false;
	if (q.inStock && !doc.inStock) return false;
	return true;
}

export function inPriceBucket(price: number, bucket: { from: number; to: number | null }): boolean {
	return price >= bucket.from && (bucket.to == null || price <= bucket.to);
}

/** Facet counts over the documents that match the query and every filter. */
export function computeFacets(docs: SearchableDoc[]): SearchFacets {
	const categories = new Map<string, CategoryFacet>();
	const currencies = new Map<string, number>();
	for (const doc of docs) {
		currencies.set(doc.currency, (currencies.get(doc.currency) ?? 0) + 1);
		// A product counts once under each ancestor, as the category filter includes sub-categories.
		doc.categoryPath.forEach((slug, i) => {
			const f = categories.get(slug) ?? { value: slug, label: doc.categoryNames[i], count: 0 };
			f.count++;
			categories.set(slug, f);
		});
	}
	return {
		category: [...categories.values()].sort(byCountThenValue),
		currency: [...currencies].map(([value, count]) => ({ value, count })).sort(byCountThenValue),
		price: PRICE_BUCKETS.map((b) => ({ ...b, count: docs.filter((d) => inPriceBucket(d.price, b)).length })),
		rating: RATING_BUCKETS.map((b) => ({ ...b, count: docs.filter((d) => d.rating >= b.from).length })),
	};
}

/** Facet values as both engines list them: the most products first, then by value. */
export function byCountThenValue(a: ValueFacet, b: ValueFacet): number {
	return b.count - a.count || a.value.localeCompare(b.value);
}

/** Orders documents; `scores` (by id) decides relevance, ties fall back to rating then name. */
export function sortDocs<T extends SearchableDoc>(docs: T[], sort: SearchSort, scores?: Map<string, number>): T[] {
	const byName = (a: SearchableDoc, b: SearchableDoc) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id);
	const byRating = (a: SearchableDoc, b: SearchableDoc) => b.rating - a.rating || b.ratingCount - a.ratingCount;
	const compare: Record<SearchSort, (a: SearchableDoc, b: SearchableDoc) => number> = {
		relevance: (a, b) => (scores ? (scores.get(b.id) ?? 0) - (scores.get(a.id) ?? 0) : 0) || byRating(a, b) || byName(a, b),
		price: (a, b) => a.price - b.price || byName(a, b),
		"-price": (a, b) => b.price - a.price || byName(a, b),
		rating: (a, b) => byRating(a, b) || byName(a, b),
	};
	return [...docs].sort(compare[sort]);
}

export function emptyFacets(): SearchFacets {
	return computeFacets([]);
}
