/** Picks the search engine from the configuration: Elasticsearch when ELASTICSEARCH_URL is set. */
import type { ShopConfig } from "../../lib/config";
import type { SearchEngine } from "./search-engine";
import { EmbeddedSearchEngine } from "./embedded-engine";
import { ElasticsearchEngine } from "./elasticsearch-engine";

export type { SearchEngine } from "./search-engine";
export { EmbeddedSearchEngine } from "./embedded-engine";
export { ElasticsearchEngine } from "./elasticsearch-engine";

export function createSearchEngine(cfg: Pick<ShopConfig, "elasticsearchUrl" | "namespace">): SearchEngine {
	if (cfg.elasticsearchUrl) return new ElasticsearchEngine({ node: cfg.elasticsearchUrl, index: `${(cfg.namespace || "shop").toLowerCase()}-products` });
	return new EmbeddedSearchEngine();
}
