/**
 * Full-text product search with facets and autocomplete.
 * The index holds active products only. It is rebuilt from `products.listForIndex` at start (page
 * by page), periodically and on an admin's request, and kept current between rebuilds by catalog
 * events: each changed product is fetched again with `products.listForIndex({ids})` within ~50 ms.
 * The engine is embedded (minisearch) unless ELASTICSEARCH_URL selects Elasticsearch.
 */
import os from "node:os";
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import type {} from "moleculer-web";
import { HealthMixin } from "../mixins/health.mixin";
import type { ShopMeta } from "../mixins/types";
import "../mixins/types";
import { readConfig } from "../lib/config";
import { currencyFilterRule, priceFilterRule } from "../lib/catalog-rules";
import { BROKER_UNAVAILABLE_ERRORS, ServiceUnavailableError } from "../lib/errors";
import { pageParams } from "../lib/pagination";
import { createSearchEngine, type SearchEngine } from "../adapters/search";
import { cleanServiceCache } from "../mixins/cache-clean";
import { MAX_PREFIX_LENGTH, MAX_RAW_QUERY_LENGTH, MAX_SUGGESTIONS, SEARCH_SORTS, inStockMayChange, parseSearchQuery, queryText, toIndexDoc, type CategoryRef, type SearchParams } from "../lib/search-query";

interface SearchSettings {
	rest: string;
	/** Products per `listForIndex` call during a rebuild. */
	rebuildPageSize: number;
	/** How long events are gathered before the changed products are fetched in one call. */
	refreshDelayMs: number;
	/** A full rebuild also runs this often, to repair anything an event failed to tell us. */
	rebuildIntervalMs: number;
	/** How long a search waits for the first build of an embedded index before its 503. */
	indexWaitMs: number;
}

interface RebuildReport {
	indexed: number;
	removed: number;
	pages: number;
	tookMs: number;
}

type Rating = { average: number; count: number };

interface SearchVars {
	engine: SearchEngine;
	/** Products whose index entry must be fetched again. */
	pending: Set<string>;
	/** Ratings carried by `review.moderated`, applied on the next fetch of that product. */
	ratingOverrides: Map<string, Rating>;
	/** Logical time of the last event-driven write per product (see `rebuild`). */
	changedAt: Map<string, number>;
	clock: number;
	indexLock: Promise<unknown>;
	refreshTimer: NodeJS.Timeout | null;
	flushing: Promise<void> | null;
	/** Products whose last refresh failed on their own: failures in a row, and the timer that queues them again. */
	refreshRetries: Map<string, { failures: number; timer: NodeJS.Timeout }>;
	rebuilding: Promise<RebuildReport> | null;
	rebuildTimer: NodeJS.Timeout | null;
	rebuildFailures: number;
	lastRebuild: (RebuildReport & { at: string }) | null;
	/** Settles at the first full build of the index (indexBuilt settles it). */
	firstBuild: Promise<void>;
	indexBuilt: () => void;
	stopping: boolean;
}

interface SearchMethods {
	createEngine(): SearchEngine;
	categoriesForFilter(ctx: Context): Promise<CategoryRef[]>;
	engineFailed(err: unknown): never;
	awaitIndexBuilt(): Promise<void>;
	withIndexLock<T>(fn: () => Promise<T>): Promise<T>;
	queueRefresh(productId: string): void;
	scheduleFlush(): void;
	flush(): Promise<void>;
	refreshIsolating(ids: string[]): Promise<boolean>;
	tryRefresh(ids: string[]): Promise<"done" | unknown>;
	refreshFailed(productId: string, err: unknown): void;
	refreshProducts(ids: string[]): Promise<"done" | "needs-rebuild">;
	rebuild(): Promise<RebuildReport>;
	scheduleRebuild(delayMs: number): void;
}

/** How often a rebuild that waits for the products service looks for it (a registry lookup). */
const PRODUCTS_POLL_MS = 100;
/** The longest a rebuild keeps the event loop before letting requests through. */
const REBUILD_SLICE_MS = 50;
/** A product whose refresh fails is fetched again after 1 s, 2 s, 4 s... at most a minute apart. */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 60_000;
/** From this many failures in a row a product's failure is logged as an error. */
const RETRY_ERROR_AFTER = 5;

/** Errors that say products or the search engine cannot be reached now, not that a product is bad. */
const UNREACHABLE_ERRORS = new Set([
	...BROKER_UNAVAILABLE_ERRORS,
	// The Elasticsearch client's: a down engine would otherwise be blamed on every product in turn.
	...["ConnectionError", "TimeoutError", "NoLivingConnectionsError"],
]);

function cannotIndexNow(err: unknown): boolean {
	const e = err as { name?: string; code?: number; statusCode?: number } | null;
	const status = e?.statusCode ?? 0;
	return UNREACHABLE_ERRORS.has(e?.name ?? "") || e?.code === 503 || status === 429 || status >= 500;
}

type SearchThis = SearchVars & SearchMethods & Pick<Service, "name" | "fullName"> & { settings: SearchSettings; broker: any; logger: any };

function rowsOf(res: unknown): Record<string, any>[] {
	if (Array.isArray(res)) return res;
	const rows = (res as { rows?: unknown })?.rows;
	return Array.isArray(rows) ? rows : [];
}

function productIdOf(ctx: Context<any>): string | null {
	const id = ctx.params?.productId;
	return typeof id === "string" && id ? id : null;
}

/** Answers are cached only over the embedded index, whose writes are visible when they return. */
const cachedEngine = (ctx: Context) => (ctx.service as unknown as SearchThis | undefined)?.engine?.kind === "embedded";

const SearchService: ServiceSchema<SearchSettings, SearchMethods, SearchVars> = {
	name: "search",
	mixins: [HealthMixin],
	settings: { rest: "/", rebuildPageSize: 200, refreshDelayMs: 50, rebuildIntervalMs: 15 * 60_000, indexWaitMs: 5000 },

	actions: {
		search: {
			rest: "GET /search",
			openapi: { response: "SearchResult" },
			// Cached until the next index write (withIndexLock cleans): a hot query costs a lookup.
			// Embedded engine only: Elasticsearch makes some writes visible later than they return.
			cache: { enabled: cachedEngine, keys: ["q", "category", "currency", "minPrice", "maxPrice", "minRating", "inStock", "sort", "page", "pageSize"], ttl: 60 },
			params: {
				$$strict: "remove",
				// The 200-character limit applies once spaces are collapsed (parseSearchQuery).
				q: { type: "string", optional: true, max: MAX_RAW_QUERY_LENGTH },
				category: { type: "string", optional: true, max: 200 },
				currency: currencyFilterRule,
				// As the product list takes them: whole cents up to 1,000,000,000.
				minPrice: priceFilterRule,
				maxPrice: priceFilterRule,
				minRating: { type: "number", min: 0, max: 5, optional: true, convert: true },
				inStock: { type: "boolean", optional: true, convert: true },
				sort: { type: "enum", values: SEARCH_SORTS, optional: true },
				...pageParams,
			},
			async handler(this: SearchThis, ctx: Context<SearchParams, ShopMeta>) {
				await this.awaitIndexBuilt();
				const query = parseSearchQuery(ctx.params, ctx.params.category?.trim() ? await this.categoriesForFilter(ctx) : []);
				return this.engine.search(query).catch((err) => this.engineFailed(err));
			},
		},

		autocomplete: {
			rest: "GET /search/autocomplete",
			openapi: { response: "Autocomplete" },
			cache: { enabled: cachedEngine, keys: ["q", "limit"], ttl: 60 },
			params: {
				$$strict: "remove",
				// The 100-character limit applies once spaces are collapsed, as for search's q.
				q: { type: "string", optional: true, max: MAX_RAW_QUERY_LENGTH },
				limit: { type: "number", integer: true, min: 1, max: MAX_SUGGESTIONS, optional: true, convert: true },
			},
			async handler(this: SearchThis, ctx: Context<{ q?: string; limit?: number }, ShopMeta>) {
				const prefix = queryText(ctx.params.q, MAX_PREFIX_LENGTH);
				if (!prefix) return { suggestions: [] };
				await this.awaitIndexBuilt();
				const suggestions = await this.engine.suggest(prefix, ctx.params.limit ?? MAX_SUGGESTIONS).catch((err) => this.engineFailed(err));
				return { suggestions };
			},
		},

		rebuild: {
			rest: "POST /search/rebuild",
			openapi: { response: "SearchRebuild" },
			roles: ["admin"],
			// A large catalog takes longer than REQUEST_TIMEOUT (~20 s for 50,000 products): the admin was answered 503
			// while it went on. Callers wait for its report (a second call joins the rebuild under way).
			timeout: 10 * 60_000,
			params: {},
			async handler(this: SearchThis) {
				return this.rebuild();
			},
		},

		/** Index state for operators and probes. */
		stats: {
			visibility: "public",
			params: {},
			async handler(this: SearchThis) {
				return { engine: this.engine.kind, documents: await this.engine.count(), pendingRefresh: this.pending.size, lastRebuild: this.lastRebuild };
			},
		},
	},

	events: {
		"product.created"(this: SearchThis, ctx: Context<{ productId: string }>) {
			const id = productIdOf(ctx);
			if (id) this.queueRefresh(id);
		},
		"product.updated"(this: SearchThis, ctx: Context<{ productId: string }>) {
			const id = productIdOf(ctx);
			if (id) this.queueRefresh(id);
		},
		// A category renamed or moved: its products' documents carry its names and slugs.
		"category.updated"(this: SearchThis, ctx: Context<{ productIds?: unknown }>) {
			const ids = Array.isArray(ctx.params?.productIds) ? ctx.params.productIds : [];
			for (const id of ids) if (typeof id === "string" && id) this.queueRefresh(id);
		},
		async "product.archived"(this: SearchThis, ctx: Context<{ productId: string }>) {
			const id = productIdOf(ctx);
			if (!id) return;
			// Gone at once; the refresh after it overrides any fetch that was already in flight.
			await this.withIndexLock(async () => {
				this.changedAt.set(id, ++this.clock);
				await this.engine.remove([id], { immediate: true });
			});
			this.queueRefresh(id);
		},
		"inventory.changed"(this: SearchThis, ctx: Context<{ productId: string; stock?: number; delta?: number }>) {
			const id = productIdOf(ctx);
			// Most stock changes (every sale) leave the product as searchable as it was.
			if (id && inStockMayChange(ctx.params)) this.queueRefresh(id);
		},
		"review.moderated"(this: SearchThis, ctx: Context<{ productId: string; rating?: Rating }>) {
			const id = productIdOf(ctx);
			if (!id) return;
			// The products service stores this rating from the same event, maybe after we fetch.
			const r = ctx.params.rating;
			if (r && typeof r.average === "number" && typeof r.count === "number") this.ratingOverrides.set(id, { average: r.average, count: r.count });
			this.queueRefresh(id);
		},
	},

	methods: {
		createEngine(this: SearchThis) {
			return createSearchEngine(readConfig());
		},

		/**
		 * The catalog's categories, so `?category=` may name one by id as the product list allows (the
		 * index holds slugs only). `products.listCategories` is cached by the broker until a catalog
		 * write. Without it (products unreachable) the filter is read as a slug, which still answers
		 * the common case, rather than failing the search.
		 */
		async categoriesForFilter(this: SearchThis, ctx: Context) {
			try {
				const tree = await ctx.call<unknown, Record<string, never>>("products.listCategories", {});
				return Array.isArray(tree) ? (tree as CategoryRef[]) : [];
			} catch (err) {
				this.logger.warn(`Categories unavailable, the search's category filter is read as a slug: ${(err as Error)?.message ?? err}`);
				return [];
			}
		},

		/**
		 * An embedded index is this process's own and starts empty: until its first full build, its answers
		 * would be empty or partial, and cached (in a shared Redis cache, for every node) as if true. A
		 * request waits for that build (`indexWaitMs`: a restart's build takes a moment), then is a 503:
		 * the client tries again (and the balancer may send it to another search node). Elasticsearch's
		 * index outlives the node, so it serves at once.
		 */
		async awaitIndexBuilt(this: SearchThis) {
			if (this.lastRebuild || this.engine.kind !== "embedded") return;
			let timer: NodeJS.Timeout | undefined;
			await Promise.race([this.firstBuild, new Promise((resolve) => (timer = setTimeout(resolve, this.settings.indexWaitMs)))]);
			clearTimeout(timer);
			if (!this.lastRebuild) throw new ServiceUnavailableError("The search index is being built, try again in a moment");
		},

		/**
		 * An engine failure (Elasticsearch down) is a 503 to the client, not a 500. A query the engine
		 * refused (its 4xx client error) is the client's answer, and no outage to log as one.
		 */
		engineFailed(this: SearchThis, err: unknown): never {
			if (err instanceof Errors.MoleculerClientError) {
				const cause = (err as Error).cause as Error | undefined;
				this.logger.warn(`Search engine refused a query: ${err.message}${cause ? ` (${cause.message})` : ""}`);
				throw err;
			}
			this.logger.error("Search engine failed:", err);
			const unavailable = new ServiceUnavailableError("Search is unavailable, try again");
			// The engine's client has already retried; the broker repeating the call only delays the answer.
			unavailable.retryable = false;
			throw unavailable;
		},

		/** Index writes one at a time, so an older fetch never lands after a newer one. */
		withIndexLock<T>(this: SearchThis, fn: () => Promise<T>): Promise<T> {
			// Every index write goes through here, so it is also where cached answers are dropped.
			const write = async () => {
				try {
					return await fn();
				} finally {
					// The gateways' copies of anonymous answers too (publicCache, see merged).
					await cleanServiceCache(this);
				}
			};
			const run = this.indexLock.then(write, write);
			this.indexLock = run.catch(() => undefined);
			return run;
		},

		queueRefresh(this: SearchThis, productId: string) {
			this.pending.add(productId);
			this.scheduleFlush();
		},

		/** Gathers events for a few ms, then fetches their products in one call (a running flush picks them up itself). */
		scheduleFlush(this: SearchThis) {
			if (this.refreshTimer || this.flushing || this.stopping || !this.pending.size) return;
			this.refreshTimer = setTimeout(() => {
				this.refreshTimer = null;
				void this.flush();
			}, this.settings.refreshDelayMs);
		},

		async flush(this: SearchThis) {
			if (this.flushing) return this.flushing;
			this.flushing = (async () => {
				while (this.pending.size && !this.stopping) {
					const ids = [...this.pending].slice(0, 200);
					for (const id of ids) this.pending.delete(id);
					// Products or the engine unreachable: the ids are pending again; try shortly.
					if (!(await this.refreshIsolating(ids))) await new Promise((r) => setTimeout(r, 1000).unref());
				}
			})().finally(() => {
				this.flushing = null;
				// Ids queued between the loop's last check and now.
				this.scheduleFlush();
			});
			return this.flushing;
		},

		/**
		 * Refreshes these products. False when products or the engine cannot be reached: the ids not
		 * refreshed are pending again. Any other failure is pinned on the product(s) causing it, so that one bad
		 * product does not hold back the others.
		 */
		async refreshIsolating(this: SearchThis, ids: string[]) {
			const waitAll = (which: string[], why: unknown) => {
				this.logger.warn(`Search refresh of ${which.length} product(s) failed, retrying: ${(why as Error)?.message ?? why}`);
				for (const id of which) this.pending.add(id);
				return false;
			};
			const outcome = await this.tryRefresh(ids);
			if (outcome === "done") return true;
			if (cannotIndexNow(outcome)) return waitAll(ids, outcome);
			if (ids.length === 1) {
				this.refreshFailed(ids[0], outcome);
				return true;
			}
			// Fetched one at a time, the good products are indexed now and only the bad one waits.
			const failed: Array<[string, unknown]> = [];
			for (let i = 0; i < ids.length && !this.stopping; i++) {
				const one = await this.tryRefresh([ids[i]]);
				if (one === "done") continue;
				if (cannotIndexNow(one)) return waitAll([...failed.map(([id]) => id), ...ids.slice(i)], one);
				failed.push([ids[i], one]);
			}
			// Every one failing is products failing (its store down, say), not each product: they wait together.
			if (failed.length === ids.length) return waitAll(ids, failed[0][1]);
			for (const [id, err] of failed) this.refreshFailed(id, err);
			return true;
		},

		/** One refresh: "done", or what it failed with. A product refreshed fine starts its failures over. */
		async tryRefresh(this: SearchThis, ids: string[]): Promise<"done" | unknown> {
			try {
				const outcome = await this.withIndexLock(() => this.refreshProducts(ids));
				if (outcome === "needs-rebuild") await this.rebuild();
			} catch (err) {
				return err;
			}
			// Fine again (fixed, or changed since): the next failure starts over at the shortest delay.
			for (const id of ids) {
				const retry = this.refreshRetries.get(id);
				if (!retry) continue;
				clearTimeout(retry.timer);
				this.refreshRetries.delete(id);
			}
			return "done";
		},

		/** Queues a product that failed on its own again later, each time later, without holding up the loop. */
		refreshFailed(this: SearchThis, productId: string, err: unknown) {
			if (this.stopping) return;
			const previous = this.refreshRetries.get(productId);
			if (previous) clearTimeout(previous.timer);
			const failures = (previous?.failures ?? 0) + 1;
			const retryMs = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(failures - 1, 16));
			const message = `Search refresh of product ${productId} failed ${failures} time(s), retrying in ${retryMs} ms: ${(err as Error)?.message ?? err}`;
			if (failures >= RETRY_ERROR_AFTER) this.logger.error(message);
			else this.logger.warn(message);
			const timer = setTimeout(() => this.queueRefresh(productId), retryMs);
			timer.unref();
			this.refreshRetries.set(productId, { failures, timer });
		},

		/**
		 * Fetches the products again with `products.listForIndex({ids})`; those that come back are
		 * indexed, the others (archived, deleted) removed. A products service without the `ids`
		 * filter answers with a page of the whole catalog: unless that page is the whole catalog,
		 * the answer says nothing about our ids and a rebuild does the refresh instead.
		 */
		async refreshProducts(this: SearchThis, ids: string[]) {
			const stamp = ++this.clock;
			const res: any = await this.broker.call("products.listForIndex", { ids, page: 1, pageSize: ids.length });
			const rows = rowsOf(res);
			const total = typeof res?.total === "number" ? res.total : rows.length;
			if (total > ids.length) return "needs-rebuild";
			const now = Date.now();
			const docs = rows.map((row) => {
				const doc = toIndexDoc(row, now);
				const rating = this.ratingOverrides.get(doc.id);
				if (rating) {
					doc.rating = rating.average;
					doc.ratingCount = rating.count;
					this.ratingOverrides.delete(doc.id);
				}
				return doc;
			});
			const found = new Set(docs.map((d) => d.id));
			for (const id of ids) this.changedAt.set(id, stamp);
			await this.engine.upsert(docs, { immediate: true });
			await this.engine.remove(ids.filter((id) => !found.has(id)), { immediate: true });
			return "done";
		},

		/**
		 * Re-indexes every active product page by page, then removes what no page contained.
		 * Pages follow the id order by key (`afterId`: the rows after the last one read), so an archive or
		 * a new product between two reads cannot push an untouched product off the pages, and out of the index.
		 * (A products service without `afterId` pages by `page` as before.)
		 * Events keep being applied meanwhile: a page skips a product that an event refreshed after
		 * the page was fetched, since the event's copy is newer.
		 */
		rebuild(this: SearchThis) {
			if (this.rebuilding) return this.rebuilding;
			this.rebuilding = (async () => {
				const startedAt = Date.now();
				await this.engine.init();
				const pageSize = this.settings.rebuildPageSize;
				let page = 1;
				let afterId: string | undefined;
				let indexed = 0;
				let sliceStart = Date.now();
				for (; !this.stopping; page++) {
					// Reading and indexing pages never yields to the event loop by itself (it is all local
					// promises): let waiting requests in now and then, or a rebuild stalls the shop for a second.
					if (Date.now() - sliceStart >= REBUILD_SLICE_MS) {
						await new Promise((resolve) => setImmediate(resolve));
						sliceStart = Date.now();
					}
					const fetchedAt = ++this.clock;
					const res: any = await this.broker.call("products.listForIndex", { page, pageSize, ...(afterId ? { afterId } : {}) });
					const rows = rowsOf(res);
					await this.withIndexLock(async () => {
						const now = Date.now();
						const fresh = rows.filter((row) => (this.changedAt.get(String(row.id)) ?? 0) < fetchedAt);
						await this.engine.upsert(fresh.map((row) => toIndexDoc(row, now)));
					});
					indexed += rows.length;
					// Only a short page is the last: `totalPages` drops with an archive while rows after our key remain.
					if (rows.length < pageSize) break;
					afterId = String(rows[rows.length - 1].id);
				}
				if (this.stopping) throw new Error("Search service stopping");
				const removed = await this.withIndexLock(() => this.engine.removeIndexedBefore(startedAt));
				this.changedAt.clear();
				const report = { indexed, removed, pages: page, tookMs: Date.now() - startedAt };
				this.lastRebuild = { ...report, at: new Date().toISOString() };
				this.indexBuilt();
				this.logger.info(`Search index rebuilt: ${indexed} products, ${removed} removed, ${report.tookMs} ms`);
				return report;
			})().finally(() => {
				this.rebuilding = null;
			});
			return this.rebuilding;
		},

		/**
		 * Rebuilds after `delayMs`; retries with a growing delay while products fails. While no
		 * products service is registered (at start it is still loading its collections) it only looks
		 * again shortly, so the index fills as soon as the catalog can be read.
		 */
		scheduleRebuild(this: SearchThis, delayMs: number) {
			if (this.rebuildTimer) clearTimeout(this.rebuildTimer);
			if (this.stopping) return;
			this.rebuildTimer = setTimeout(async () => {
				this.rebuildTimer = null;
				if (!this.broker.registry.hasService("products")) return this.scheduleRebuild(PRODUCTS_POLL_MS);
				try {
					await this.rebuild();
					this.rebuildFailures = 0;
					this.scheduleRebuild(this.settings.rebuildIntervalMs);
				} catch (err) {
					this.rebuildFailures++;
					const retryMs = Math.min(30_000, 250 * 2 ** Math.min(this.rebuildFailures, 7));
					if (!this.stopping) this.logger.warn(`Search rebuild failed (${(err as Error).message}); retrying in ${retryMs} ms`);
					this.scheduleRebuild(retryMs);
				}
			}, delayMs);
			this.rebuildTimer.unref();
		},
	},

	/**
	 * Over the embedded index (Elasticsearch is left as it is):
	 * - Anonymous answers are kept by the gateway too, as the broker's cache keeps them, and cleaned
	 *   with it on every index write: a repeated search costs what a product listing does, not an
	 *   action call. Elasticsearch makes some writes visible later than they return, so neither cache
	 *   is used with it.
	 * - The index lives in each search process, so every instance must see every product event: a
	 *   group of its own per process makes the broker deliver each event to all of them (with
	 *   Elasticsearch the index is shared and one instance per event is right).
	 */
	merged(schema: ServiceSchema) {
		if (readConfig().elasticsearchUrl) return;
		for (const name of ["search", "autocomplete"]) {
			const action = schema.actions?.[name];
			if (action && typeof action === "object") schema.actions![name] = { ...action, publicCache: true };
		}
		if (!schema.events) return;
		const group = `search-${os.hostname()}-${process.pid}`;
		for (const [name, def] of Object.entries(schema.events)) {
			schema.events[name] = typeof def === "function" ? { handler: def, group } : { ...def, group };
		}
	},

	created(this: SearchThis) {
		this.pending = new Set();
		this.ratingOverrides = new Map();
		this.changedAt = new Map();
		this.clock = 0;
		this.indexLock = Promise.resolve();
		this.refreshTimer = null;
		this.flushing = null;
		this.refreshRetries = new Map();
		this.rebuilding = null;
		this.rebuildTimer = null;
		this.rebuildFailures = 0;
		this.lastRebuild = null;
		this.firstBuild = new Promise((resolve) => (this.indexBuilt = resolve));
		this.stopping = false;
		this.engine = this.createEngine();
	},

	async started(this: SearchThis) {
		this.stopping = false;
		// The products service may start after us (or on another node): rebuild in the background.
		this.scheduleRebuild(0);
	},

	async stopped(this: SearchThis) {
		this.stopping = true;
		if (this.refreshTimer) clearTimeout(this.refreshTimer);
		if (this.rebuildTimer) clearTimeout(this.rebuildTimer);
		for (const retry of this.refreshRetries.values()) clearTimeout(retry.timer);
		this.refreshRetries.clear();
		// A fetch still in flight fails against the closed engine and is dropped: nothing is lost
		// that the rebuild at the next start does not restore.
		await this.engine.close().catch((err) => this.logger.warn(`Closing the search engine failed: ${(err as Error).message}`));
	},
};

export default SearchService;
