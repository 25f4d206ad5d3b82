/**
 * In-process search on minisearch: what answers need of each product lives in a Map, minisearch scores the text
 * (fuzzy matching for typos, prefix matching on the word being typed), and filters, facets, sorts
 * and pages run over the matching documents with the shared rules of lib/search-query.
 * minisearch's fuzzy matching is Levenshtein, where swapped neighbouring letters cost two edits: a word
 * allowed one edit also looks up its swaps (lib/search-typos), so a swap is one edit, as in Elasticsearch.
 * One index per process: run a single search instance with it, or use Elasticsearch.
 */
import MiniSearch, { type Query, type SearchResult as MiniSearchHit } from "minisearch";
import type { SearchEngine } from "./search-engine";
import {
	computeFacets,
	fuzzinessFor,
	matchesFilters,
	normalizeTerm,
	optionValues,
	SEARCHABLE_FIELDS,
	sortDocs,
	toSearchRow,
	type ProductIndexDoc,
	type SearchableDoc,
	type SearchQuery,
	type SearchResult,
	type Suggestion,
} from "../../lib/search-query";
import { typoLookups } from "../../lib/search-typos";

const FIELDS = ["name", "description", "categories", "options"];
const tokenize = MiniSearch.getDefault("tokenize") as (text: string) => string[];
/** minisearch's default weight of a fuzzy match, which it scales by `length / (length + edits)`. */
const FUZZY_WEIGHT = 0.45;

/** The query's words as the index holds its terms. */
function queryWords(text: string): string[] {
	return tokenize(text).map(normalizeTerm).filter(Boolean);
}

/**
 * One word of the query: itself within `edits` edits (also as a prefix when `prefix`), or one of its
 * swaps (lib/search-typos.ts), each swap scored as one more edit, so that an exact match ranks first.
 */
function wordQuery(word: string, edits: number, prefix: boolean): Query {
	const itself: Query = { queries: [word], fuzzy: edits || false, prefix };
	const typos = typoLookups(word, edits);
	if (!typos.swaps.length) return itself;
	const weight = (swaps: number) => () => (FUZZY_WEIGHT * word.length) / (word.length + swaps);
	const queries: Query[] = [itself, { combineWith: "OR", queries: typos.swaps, fuzzy: typos.swapEdits || false, prefix, boostTerm: weight(1) }];
	if (typos.doubleSwaps.length) queries.push({ combineWith: "OR", queries: typos.doubleSwaps, fuzzy: false, prefix, boostTerm: weight(2) });
	return { combineWith: "OR", queries };
}

/**
 * minisearch multiplies a hit's score by how many distinct query terms it matched, and a word's swaps
 * are terms of their own: undo it, so a product with both "form" and "from" is not twice as relevant.
 */
const relevance = (hit: MiniSearchHit) => hit.score / Math.max(1, hit.queryTerms.length);

/** What stays in memory per product besides the text index: what answers need, and the rebuild's stamp. */
type StoredDoc = SearchableDoc & Pick<ProductIndexDoc, "indexedAt">;

function toStored(d: ProductIndexDoc): StoredDoc {
	// Description, options and the rest only feed the text index: keeping them would cost memory per product.
	const stored: Record<string, unknown> = { indexedAt: d.indexedAt };
	for (const field of SEARCHABLE_FIELDS) stored[field] = d[field];
	return stored as StoredDoc;
}

export class EmbeddedSearchEngine implements SearchEngine {
	readonly kind = "embedded" as const;
	private readonly docs = new Map<string, StoredDoc>();
	private readonly index = new MiniSearch<ProductIndexDoc>({
		idField: "id",
		fields: FIELDS,
		extractField: (doc, field) => {
			if (field === "categories") return doc.categoryNames.concat(doc.categoryPath).join(" ");
			if (field === "options") return optionValues(doc).join(" ");
			return (doc as unknown as Record<string, unknown>)[field];
		},
		processTerm: (term) => normalizeTerm(term) || null,
	});

	async init(): Promise<void> {}

	async upsert(docs: ProductIndexDoc[]): Promise<void> {
		for (const doc of docs) {
			if (this.docs.has(doc.id)) this.index.replace(doc);
			else this.index.add(doc);
			this.docs.set(doc.id, toStored(doc));
		}
	}

	async remove(ids: string[]): Promise<void> {
		for (const id of ids) {
			if (!this.docs.has(id)) continue;
			this.index.discard(id);
			this.docs.delete(id);
		}
	}

	async removeIndexedBefore(indexedAt: number): Promise<number> {
		const stale = [...this.docs.values()].filter((d) => d.indexedAt < indexedAt).map((d) => d.id);
		await this.remove(stale);
		return stale.length;
	}

	async search(q: SearchQuery): Promise<SearchResult> {
		let candidates: StoredDoc[];
		let scores: Map<string, number> | undefined;
		if (q.text) {
			const words = queryWords(q.text);
			const query: Query = {
				combineWith: "AND",
				// The last word may still be being typed.
				queries: words.map((word, i) => wordQuery(word, fuzzinessFor(word), i === words.length - 1)),
			};
			const hits = this.index.search(query, { boost: { name: 3, categories: 1.5 } });
			scores = new Map(hits.map((h) => [String(h.id), relevance(h)]));
			candidates = hits.map((h) => this.docs.get(String(h.id))).filter((d): d is StoredDoc => !!d);
		} else {
			candidates = [...this.docs.values()];
		}
		const matching = candidates.filter((d) => matchesFilters(d, q));
		const sorted = sortDocs(matching, q.sort, scores);
		const offset = (q.page - 1) * q.pageSize;
		return {
			rows: sorted.slice(offset, offset + q.pageSize).map(toSearchRow),
			total: matching.length,
			page: q.page,
			pageSize: q.pageSize,
			totalPages: Math.ceil(matching.length / q.pageSize),
			facets: computeFacets(matching),
		};
	}

	async suggest(prefix: string, limit: number): Promise<Suggestion[]> {
		const query: Query = {
			combineWith: "AND",
			// Typos only once a few letters are there: "hea" should not suggest "tea".
			queries: queryWords(prefix).map((word) => wordQuery(word, word.length >= 5 ? 1 : 0, true)),
		};
		const hits = this.index.search(query, { fields: ["name"] });
		// Stable: equal scores keep minisearch's order.
		hits.sort((a, b) => relevance(b) - relevance(a));
		const out: Suggestion[] = [];
		for (const h of hits) {
			const doc = this.docs.get(String(h.id));
			if (doc) out.push({ text: doc.name, productId: doc.id });
			if (out.length >= limit) break;
		}
		return out;
	}

	async count(): Promise<number> {
		return this.docs.size;
	}

	async close(): Promise<void> {
		this.docs.clear();
		this.index.removeAll();
	}
}
