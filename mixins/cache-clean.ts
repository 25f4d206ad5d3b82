/**
 * Drops a service's cached results: its entries in this node's broker cacher, then everywhere else
 * through `cache.clean.<service>` (other nodes' cachers, see DbMixin, and the gateways' response
 * caches). Apart from db.mixin.ts so a service without collections (search) need not load the stores.
 */
import type { Service } from "moleculer";

export async function cleanServiceCache(service: Pick<Service, "name" | "fullName" | "broker">): Promise<void> {
	await service.broker.cacher?.clean(`${service.fullName}.**`);
	service.broker.broadcast(`cache.clean.${service.name}`);
}
