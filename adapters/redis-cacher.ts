/**
 * Moleculer's Redis cacher, made safe for a Redis outage. Its middleware writes a fresh result to
 * the cache without waiting for or catching the write: a write that fails (Redis dropped between the
 * read and the write) is an unhandled rejection, which stops a Node process. Here a failed write is
 * logged (once per outage) and dropped: the answer was already given, uncached. A clean or delete
 * while not connected (Redis down, or not yet connected at start: no command waits for a
 * connection) cannot reach the cache, which nobody reads meanwhile (the middleware skips a cacher
 * that is not connected); so it is not an error, and the whole cache is cleaned when Redis is back,
 * as entries cached before then may be stale.
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

	clean(match?: string | string[]): Promise<any> {
		return this.unlessDisconnected(() => super.clean(match));
	}

	del(key: string | string[]): Promise<any> {
		return this.unlessDisconnected(() => super.del(key));
	}

	/** Runs a clean or delete; while Redis is not connected, leaves it to the full clean when it is back. */
	private unlessDisconnected(op: () => Promise<any>): Promise<any> {
		const connected = () => (this as any).connected === true && (this as any).client?.status === "ready";
		if (!connected()) {
			this.hadOutage = true;
			return Promise.resolve();
		}
		return op().catch((err: Error) => {
			if (connected()) throw err;
			this.hadOutage = true;
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
