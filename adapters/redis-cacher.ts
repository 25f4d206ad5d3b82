/**
 * Moleculer's Redis cacher, made safe for a Redis outage. Its middleware writes a fresh result to
 * the cache without waiting for or catching the write: a write that fails (Redis dropped between the
 * read and the write) is an unhandled rejection, which stops a Node process. Here a failed write is
 * logged (once per outage) and dropped: the answer was already given, uncached. And entries cached
 * before an outage may be stale after it (the cleans of writes made meanwhile failed), so the whole
 * cache is cleaned when Redis is back.
 */
import { Cachers } from "moleculer";

export class ShopRedisCacher extends Cachers.Redis {
	private writeFailedAt: number | null = null;
	private hadOutage = false;

	init(broker: any) {
		super.init(broker);
		const client = (this as any).client;
		client.on("error", () => {
			this.hadOutage = true;
		});
		client.on("ready", () => {
			if (!this.hadOutage) return;
			this.hadOutage = false;
			this.writeFailedAt = null;
			// Whatever was cleaned during the outage was not: start afresh rather than serve it for its TTL.
			this.clean().then(
				() => this.logger.info("Redis cacher back: cache cleaned of entries from before the outage."),
				(err: Error) => this.logger.warn(`Redis cacher back, but cleaning the cache failed: ${err.message}`),
			);
		});
	}

	set(key: string, data: any, ttl?: number): Promise<any> {
		return super.set(key, data, ttl).catch((err: Error) => {
			if (this.writeFailedAt === null) this.logger.warn(`Redis cacher: results are not cached while Redis is unavailable (${err.message}).`);
			this.writeFailedAt = Date.now();
			this.hadOutage = true;
		});
	}
}
