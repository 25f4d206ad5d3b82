/**
 * The login throttle's shared store (lib/login-throttle.ts) in the broker's Redis cacher, as the
 * users service keeps it when the cacher is Redis. While that Redis is unavailable the throttle
 * fails closed: login answers 503, fast, instead of letting guesses through uncounted (credential
 * stuffing would go unthrottled for as long as Redis is down) or hanging on the cacher's client,
 * whose defaults (20 retries, an offline queue) held a login ~10 s before a 500.
 */
import type { Cachers } from "moleculer";
type Cacher = Cachers.Base<any>;
import { ServiceUnavailableError } from "../lib/errors";
import { stateTtlSeconds, type FailureState } from "../lib/login-throttle";
import { isRedisUnavailable, REDIS_CLIENT_OPTIONS } from "./redis-connection";

export interface LoginThrottleStore {
	get(key: string, now: number): Promise<FailureState | null>;
	set(key: string, state: FailureState, now: number): Promise<void>;
	del(key: string): Promise<void>;
}

/** The cacher's own view of its connection: false after an error, until it is ready again (Moleculer's RedisCacher). */
type RedisCacher = Cacher & { connected?: boolean | null };

const unavailable = () => new ServiceUnavailableError("Sign-in is unavailable for a moment, try again");

/** A cacher call bounded by REDIS_CLIENT_OPTIONS.commandTimeout, with a Redis failure as a 503. */
async function bounded<T>(cacher: RedisCacher, call: () => Promise<T>, waitMs: number): Promise<T> {
	if (cacher.connected === false) throw unavailable();
	let timer: NodeJS.Timeout | undefined;
	const timeout = new Promise<never>((_, reject) => {
		timer = setTimeout(() => reject(unavailable()), waitMs);
	});
	try {
		return await Promise.race([call(), timeout]);
	} catch (err) {
		if (err instanceof ServiceUnavailableError || isRedisUnavailable(err)) throw unavailable();
		throw err;
	} finally {
		clearTimeout(timer);
	}
}

export function cacherLoginThrottleStore(cacher: Cacher, waitMs: number = REDIS_CLIENT_OPTIONS.commandTimeout): LoginThrottleStore {
	const redis = cacher as RedisCacher;
	return {
		get: async (key) => ((await bounded(redis, () => redis.get(key) as Promise<FailureState | null>, waitMs)) ?? null),
		set: async (key, state, now) => void (await bounded(redis, () => redis.set(key, state, stateTtlSeconds(state, now)), waitMs)),
		del: async (key) => void (await bounded(redis, () => redis.del(key), waitMs)),
	};
}
