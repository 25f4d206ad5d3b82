/** Picks the cart store once, from configuration: Redis when REDIS_URL is set, embedded otherwise. */
import type { Collection } from "../../mixins/collection";
import type { CartStore } from "./cart-store";
import { MemoryCartStore } from "./memory-cart-store";
import { RedisCartStore } from "./redis-cart-store";
import type { OutageLogger } from "../redis-connection";

export * from "./cart-store";
export { MemoryCartStore } from "./memory-cart-store";
export { RedisCartStore } from "./redis-cart-store";

export async function createCartStore(opts: { redisUrl?: string; persist?: Collection; logger?: OutageLogger }): Promise<CartStore> {
	if (opts.redisUrl) return new RedisCartStore(opts.redisUrl, { logger: opts.logger });
	const store = new MemoryCartStore({ persist: opts.persist });
	await store.load();
	return store;
}
