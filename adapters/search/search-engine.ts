/**
 * The seam between the search service and where its index lives: the embedded engine (default)
 * or Elasticsearch (ELASTICSEARCH_URL). The service holds one and never asks which.
 */
import type { ProductIndexDoc, SearchQuery, SearchResult, Suggestion } from "../../lib/search-query";

export interface WriteOptions {
	/** Searchable when the call returns (Elasticsearch refreshes the index); bulk loads leave it off. */
	immediate?: boolean;
}

export interface SearchEngine {
	readonly kind: "embedded" | "elasticsearch";
	/** Prepares the index (Elasticsearch: creates it with its mappings when missing). Idempotent. */
	init(): Promise<void>;
	/** Adds or replaces products by id. */
	upsert(docs: ProductIndexDoc[], opts?: WriteOptions): Promise<void>;
	remove(ids: string[], opts?: WriteOptions): Promise<void>;
	/** Removes every product last written before `indexedAt` (what a full rebuild did not see). */
	removeIndexedBefore(indexedAt: number): Promise<number>;
	search(query: SearchQuery): Promise<SearchResult>;
	/** Name suggestions for a prefix, best first, at most `limit`. */
	suggest(prefix: string, limit: number): Promise<Suggestion[]>;
	count(): Promise<number>;
	close(): Promise<void>;
}
