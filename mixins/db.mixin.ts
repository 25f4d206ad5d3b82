/**
 * The one database factory: `DbMixin("orders", { orders: spec, order_events: spec })`.
 * MONGO_URI set → moleculer-db-adapter-mongoose with a mongoose schema per collection;
 * unset → NeDB files under DATA_DIR (in memory under NODE_ENV=test).
 * The service reads its collections as `this.db.<name>` and may define a `seedDB()` method, which
 * runs after connecting (it decides itself whether the collection is empty).
 */
import type { ServiceSchema, Service, ServiceBroker } from "moleculer";
import { Collection, type CollectionSpec } from "./collection";
import { readConfig, processStartedAt } from "../lib/config";
import { embeddedStoreRival, type StoreMark } from "../lib/embedded-store-replicas";
import { cleanServiceCache } from "./cache-clean";

export type Collections = Record<string, Collection>;

/**
 * No other process can be working on this node's data: there is no other node (no transporter), or
 * the store is embedded, which only the process holding its directory's lock writes. What a crash
 * left half done is then the previous run's, finished at start rather than after a stale window.
 */
export function aloneOnItsStore(broker: ServiceBroker): boolean {
	return !broker.transit || !readConfig().mongoUri;
}

export interface DbServiceThis {
	db: Collections;
	cleanCache(): Promise<void>;
	giveWayToOlderEmbeddedStore(): void;
}

export function DbMixin(serviceName: string, specs: Record<string, CollectionSpec>): Partial<ServiceSchema<any, any, DbServiceThis, any>> {
	const cacheCleanEvent = `cache.clean.${serviceName}`;
	return {
		events: {
			// Another node changed our data: drop what this node's cacher holds of this service.
			async [cacheCleanEvent](this: Service) {
				await this.broker.cacher?.clean(`${this.fullName}.**`);
			},
			// Also delivered once this node's own services are registered, so a node seen before that counts too.
			"$services.changed"(this: Service & DbServiceThis) {
				this.giveWayToOlderEmbeddedStore();
			},
		},
		methods: {
			/** Drops cached results of this service here and on every other node. */
			cleanCache(this: Service) {
				return cleanServiceCache(this);
			},
			/**
			 * A second node hosting this service on its own embedded store would be a second shop with its own
			 * stock and orders (see lib/embedded-store-replicas.ts): the one that started later stops at once.
			 */
			giveWayToOlderEmbeddedStore(this: Service) {
				const mark = this.metadata.store as StoreMark | undefined;
				if (!mark) return;
				const services = this.broker.registry.getServiceList({ onlyAvailable: true, skipInternal: true }) as any[];
				const rival = embeddedStoreRival({ name: this.name, nodeID: this.broker.nodeID, ...mark }, services);
				if (!rival) return;
				this.broker.fatal(
					`Service '${this.name}' already runs on node '${rival.nodeID}', and one of the two keeps its data on its own embedded store. ` +
						`Two nodes that do not share one database would each keep their own stock and orders, so this node stops. Run one node ` +
						`of '${this.name}', or set MONGO_URI on every node so that they share one database.`,
				);
			},
		},
		created(this: any) {
			const cfg = readConfig();
			const dataDir = cfg.isTest ? undefined : cfg.dataDir;
			this.db = {};
			// Over a transporter, other nodes learn where this service keeps its data (tests keep their stores in
			// memory and may start several in one process on purpose).
			if (!cfg.isTest && this.broker.transit) this.metadata.store = { since: processStartedAt().getTime(), embedded: !cfg.mongoUri } satisfies StoreMark;
			for (const [name, spec] of Object.entries(specs)) {
				this.db[name] = new Collection(name, spec, { mongoUri: cfg.mongoUri, dataDir });
			}
		},
		async started(this: any) {
			await Promise.all(Object.values(this.db as Collections).map((c) => c.connect()));
			if (typeof this.seedDB === "function") await this.seedDB();
		},
		async stopped(this: any) {
			await Promise.all(Object.values(this.db as Collections).map((c) => c.disconnect()));
		},
	};
}
