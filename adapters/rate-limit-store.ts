/**
 * Fixed-window request counters for the gateway's rate limits: in memory for one gateway,
 * in Redis when REDIS_URL is set so that limits hold across several gateways. While Redis is down
 * the Redis store's hit() throws a ServiceUnavailableError; what a limit does then is the gateway's
 * decision (services/api.service.ts).
 */
import { connectRedis, RedisLink, type OutageLogger } from "./redis-connection";

export interface WindowHit {
	/** Requests counted in the current window, this one included. */
	count: number;
	/** Milliseconds until the window resets. */
	resetMs: number;
}

export interface RateLimitStore {
	hit(key: string, windowMs: number): Promise<WindowHit>;
	close(): Promise<void>;
}

export class MemoryRateLimitStore implements RateLimitStore {
	private windows = new Map<string, { count: number; resetAt: number }>();
	private sweeper = setInterval(() => this.sweep(), 60_000).unref();

	async hit(key: string, windowMs: number): Promise<WindowHit> {
		const now = Date.now();
		let w = this.windows.get(key);
		if (!w || w.resetAt <= now) {
			w = { count: 0, resetAt: now + windowMs };
			this.windows.set(key, w);
		}
		w.count++;
		return { count: w.count, resetMs: w.resetAt - now };
	}

	private sweep() {
		const now = Date.now();
		for (const [k, w] of this.windows) if (w.resetAt <= now) this.windows.delete(k);
	}

	async close() {
		clearInterval(this.sweeper);
		this.windows.clear();
	}
}

// INCR and the first PEXPIRE in one step, so a crash between them cannot leave a counter forever.
const HIT_SCRIPT = `
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
return {c, ttl}`;

export class RedisRateLimitStore implements RateLimitStore {
	private link: RedisLink;
	/** `whileDown`: what the limits do while Redis is down, for the log (the gateway decides it). */
	constructor(url: string, private prefix = "shop:rl:", logger?: OutageLogger, whileDown?: string) {
		this.link = new RedisLink(connectRedis(url), "rate limits", logger, whileDown);
	}

	async hit(key: string, windowMs: number): Promise<WindowHit> {
		const [count, ttl] = (await this.link.run((redis) => redis.eval(HIT_SCRIPT, 1, this.prefix + key, String(windowMs)))) as [number, number];
		return { count, resetMs: ttl > 0 ? ttl : windowMs };
	}

	async close() {
		await this.link.close();
	}
}

export function createRateLimitStore(redisUrl?: string, namespace = "", outage: { logger?: OutageLogger; whileDown?: string } = {}): RateLimitStore {
	return redisUrl ? new RedisRateLimitStore(redisUrl, `${namespace || "shop"}:rl:`, outage.logger, outage.whileDown) : new MemoryRateLimitStore();
}
