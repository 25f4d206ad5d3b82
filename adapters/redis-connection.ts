import type Redis from "ioredis";

/**
 * A Redis client for the stores that REDIS_URL selects (carts, rate limits). ioredis is required
 * here, on first use, so the embedded default never loads it.
 */
export function connectRedis(url: string): Redis {
	const { default: IORedis } = require("ioredis") as typeof import("ioredis");
	return new IORedis(url, { maxRetriesPerRequest: 2 });
}
