/**
 * Moleculer's Redis cacher, made safe for a Redis outage. Its middleware writes a fresh result to
 * the cache without waiting for or catching the write: a write that fails (Redis dropped between the
 * read and the write) is an unhandled rejection, which stops a Node process. Here a failed write is
 * logged (once per outage) and dropped: the answer was already given, uncached. A clean or delete
 * while not connected (Redis down, or not yet connected at start: no command waits for a
 * connection) cannot reach the cache, which nobody reads meanwhile (the middleware skips a cacher
 * that is not connected); so it is not an error, and the whole cache is cleaned when Redis is back,
 * as entries cached before then may be stale. One that fails while connected (a command timeout) is
 * the caller's error (its 503 says the change may not show yet), and is also tried again in the
 * background, so a stale entry does not outlive it by its whole TTL when nobody retries.
 * An outage is logged once when it begins and once when it ends: Moleculer's cacher logged an error
 * with its stack at every reconnect attempt (about one a second, for as long as Redis is down).
 */
import { Cachers } from "moleculer";
import { backoffDelay } from "../lib/retry-backoff";

/** Background tries of a clean that failed while connected: about a minute in all (1 + 2 + ... + 32 s). */
const RETRIES = 6;

export class ShopRedisCacher extends Cachers.Redis {
	private writeFailedAt: number | null = null;
	private hadOutage = false;

	init(broker: any) {
		super.init(broker);
		const client = (this as any).client;
		// Moleculer's own error listener logs every reconnect attempt; this one does what it did, said once.
		client.removeAllListeners("error");
		let down = false;
		client.on("error", (err: Error) => {
			(this as any).connected = false;
			this.hadOutage = true;
			this.broker.broadcastLocal("$cacher.error", { error: err, module: "cacher", type: "CLIENT_ERROR" });
			if (!down) this.logger.warn(`Redis cacher unavailable (${err.message}): requests go uncached until it is back.`);
			down = true;
		});
		client.on("ready", () => {
			down = false;
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
			if (!connected()) {
				this.hadOutage = true;
				return;
			}
			this.tryAgainLater(op, err);
			throw err;
		});
	}

	/** A clean or delete that failed while connected, run again after 1, 2, 4... s until it works (or an outage's full clean takes over). */
	private tryAgainLater(op: () => Promise<any>, first: Error, attempt = 1): void {
		if (attempt === 1) this.logger.warn(`Redis cacher: a cache clean or delete failed (${first.message}); trying again in the background.`);
		if (attempt > RETRIES) {
			this.logger.error(`Redis cacher: a cache clean or delete still failed after ${RETRIES} tries; its entries expire with their TTL.`);
			return;
		}
		const timer = setTimeout(() => {
			if (this.hadOutage) return;
			op().then(
				() => this.logger.info("Redis cacher: the cache clean or delete that had failed is done."),
				() => this.tryAgainLater(op, first, attempt + 1),
			);
		}, backoffDelay(attempt, { baseMs: 1000, factor: 2, maxMs: 2 ** (RETRIES - 1) * 1000, jitter: 0 }));
		timer.unref();
	}

	/** Quits when connected; while Redis is down there is no one to say goodbye to (quit would fail, logged as an error). */
	close(): Promise<any> {
		const client = (this as any).client;
		if (client && client.status !== "ready") {
			clearInterval((this as any).pingTimer);
			client.disconnect();
			return Promise.resolve();
		}
		return super.close();
	}

	set(key: string, data: any, ttl?: number): Promise<any> {
		return super.set(key, data, ttl).catch((err: Error) => {
			if (this.writeFailedAt === null) this.logger.warn(`Redis cacher: results are not cached while Redis is unavailable (${err.message}).`);
			this.writeFailedAt = Date.now();
			this.hadOutage = true;
		});
	}
}
