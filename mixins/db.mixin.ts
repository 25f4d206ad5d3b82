/**
 * The one database factory: `DbMixin("orders", { orders: spec, order_events: spec })`.
 * MONGO_URI set → moleculer-db-adapter-mongoose with a mongoose schema per collection;
 * unset → NeDB files under DATA_DIR (in memory under NODE_ENV=test).
 * The service reads its collections as `this.db.<name>` and may define a `seedDB()` method, which
 * runs after connecting (it decides itself whether the collection is empty).
 */
import type { ServiceSchema, Service } from "moleculer";
import { Collection, type CollectionSpec } from "./collection";
import { readConfig } from "../lib/config";

export type Collections = Record<string, Collection>;

export interface DbServiceThis {
	db: Collections;
	cleanCache(): Promise<void>;
}

export function DbMixin(serviceName: string, specs: Record<string, CollectionSpec>): Partial<ServiceSchema<any, any, DbServiceThis, any>> {
	const cacheCleanEvent = `cache.clean.${serviceName}`;
	return {
		events: {
			// Another node changed our data: drop what this node's cacher holds of this service.
			async [cacheCleanEvent](this: Service) {
				await this.broker.cacher?.clean(`${this.fullName}.**`);
			},
		},
		methods: {
			/** Drops cached results of this service here and on every other node. */
			async cleanCache(this: Service) {
				await this.broker.cacher?.clean(`${this.fullName}.**`);
				this.broker.broadcast(cacheCleanEvent);
			},
		},
		created(this: any) {
			const cfg = readConfig();
			const dataDir = cfg.isTest ? undefined : cfg.dataDir;
			this.db = {};
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
