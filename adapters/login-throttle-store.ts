/**
 * Where the login throttle (lib/login-throttle.ts) counts failures: this process's own
 * LoginFailureStore, or the broker's Redis cacher, as the users service keeps it when the cacher is
 * Redis. A failure is counted in one step of the store (in Redis, one script), never a read and a
 * write: parallel guesses that all read one count and all wrote it plus one were each let through.
 * While that Redis is unavailable the throttle fails closed: login answers 503, fast, instead of
 * letting guesses through uncounted (credential stuffing would go unthrottled for as long as Redis
 * is down) or hanging on the cacher's client, whose defaults (20 retries, an offline queue) held a
 * login ~10 s before a 500.
 */
import type { Cachers } from "moleculer";
type Cacher = Cachers.Base<any>;
import { ServiceUnavailableError } from "../lib/errors";
import { LOGIN_THROTTLE, type FailureState, type LoginFailureStore } from "../lib/login-throttle";
import { isRedisUnavailable, REDIS_CLIENT_OPTIONS } from "./redis-connection";

export interface LoginThrottleStore {
	/** Counts one failure under `key`, atomically, and gives the state with it counted. */
	countFailure(key: string, now: number): Promise<FailureState>;
	/** Takes back one counted attempt: it was refused before its password was checked (bcrypt busy). */
	uncountFailure(key: string, now: number): Promise<void>;
	del(key: string): Promise<void>;
}

export function memoryLoginThrottleStore(states: LoginFailureStore): LoginThrottleStore {
	return {
		countFailure: async (key, now) => states.countFailure(key, now),
		uncountFailure: async (key, now) => states.uncountFailure(key, now),
		del: async (key) => states.delete(key),
	};
}

/** Moleculer's RedisCacher as far as this store uses it: its connection state, client and key prefix. */
type RedisCacher = Cacher & {
	connected?: boolean | null;
	prefix?: string;
	client: { eval(script: string, keys: number, ...args: string[]): Promise<unknown>; del(key: string): Promise<number> };
};

// INCR and the window's expiry in one step: the first failure opens the window, and a key left
// without an expiry (never, short of a bug) would lock for good, so it gets one too.
const COUNT_SCRIPT = `
local c = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if c == 1 or ttl < 0 then
	redis.call('PEXPIRE', KEYS[1], ARGV[1])
	ttl = tonumber(ARGV[1])
end
return {c, ttl}`;

// One count back, never below zero, and only while the window (the key) lasts.
const UNCOUNT_SCRIPT = `
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
if c > 0 then return redis.call('DECR', KEYS[1]) end
return 0`;

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

export function cacherLoginThrottleStore(cacher: Cacher, waitMs: number = REDIS_CLIENT_OPTIONS.commandTimeout, policy = LOGIN_THROTTLE): LoginThrottleStore {
	const redis = cacher as RedisCacher;
	// A counter under a name of its own: nodes of the previous version keep a JSON state under the
	// plain key, which INCR would refuse.
	const counter = (key: string) => `${redis.prefix ?? ""}${key}:count`;
	return {
		countFailure: async (key, now) => {
			const [count, ttl] = (await bounded(redis, () => redis.client.eval(COUNT_SCRIPT, 1, counter(key), String(policy.windowMs)), waitMs)) as [number, number];
			return { count, since: now - (policy.windowMs - ttl) };
		},
		uncountFailure: async (key) => void (await bounded(redis, () => redis.client.eval(UNCOUNT_SCRIPT, 1, counter(key)), waitMs)),
		del: async (key) => void (await bounded(redis, () => redis.client.del(counter(key)), waitMs)),
	};
}
