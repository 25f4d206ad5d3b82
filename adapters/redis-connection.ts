/**
 * Redis clients for the stores that REDIS_URL selects (carts, rate limits), and what an outage of
 * one looks like to the shop: its commands fail fast with a 503 ServiceUnavailableError, the outage
 * is logged once (when it starts and when it ends, not per request), and the node's readiness
 * probe reports it (redisOutages()). ioredis is required here, on first use, so the embedded
 * default never loads it.
 */
import type Redis from "ioredis";
import type { RedisOptions } from "ioredis";
import { ServiceUnavailableError } from "../lib/errors";

/**
 * How long a request may wait on Redis, and what happens to a command Redis did not answer.
 * - enableOfflineQueue false: while disconnected a command fails at once instead of waiting in a
 *   queue for the reconnect (ioredis' default kept requests ~10 s), and a command whose caller got
 *   a 503 is never sent later, when Redis is back (a cart line added after the customer was told no).
 * - maxRetriesPerRequest 0, autoResendUnfulfilledCommands false: a command in flight when the
 *   connection drops fails with the drop, for the same reason (its answer is unknown: a 503).
 * - commandTimeout 1 s: bounds a command on a connection that is open but not answering (Redis
 *   stuck, packets dropped without a reset); our commands are small scripts answered in
 *   milliseconds, so 1 s is ample headroom and still far below the gateway's request timeout.
 * - connectTimeout 2 s: a connection attempt into a black hole ends (default 10 s) and the next
 *   attempt starts; reconnects keep ioredis' backoff (at most every 2 s), so a recovery is seen
 *   within about 2 s.
 */
export const REDIS_CLIENT_OPTIONS = {
	enableOfflineQueue: false,
	maxRetriesPerRequest: 0,
	autoResendUnfulfilledCommands: false,
	commandTimeout: 1000,
	connectTimeout: 2000,
} as const satisfies RedisOptions;

/** How long a command issued while a connection is being made waits for it. */
const CONNECT_WAIT_MS = REDIS_CLIENT_OPTIONS.commandTimeout;
/** While down, how often the link checks that Redis answers again. */
const RECOVERY_PING_MS = 2000;

/** Where outages are reported: a Moleculer logger, or the console. */
export interface OutageLogger {
	warn(...args: unknown[]): void;
	info(...args: unknown[]): void;
}

// Errors of the connection, not of the command: Redis is unreachable, gone, or not answering.
const CONNECTION_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "ECONNABORTED"]);
const CONNECTION_MESSAGES = [/^Connection is closed/, /^Stream isn't writeable/, /^Command timed out/, /^Reached the max retries per request limit/, /^Command aborted due to connection close/, /^connect ETIMEDOUT/, /^Redis unavailable/];
// Replies of a Redis that cannot serve now (loading its data, busy in a script, failing over, full).
const UNAVAILABLE_REPLIES = /^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY|OOM) /;

/**
 * The 503 of a call that needed Redis while it is unreachable. Not a failure of the service: every node
 * of it shares that Redis, so it does not count towards opening the action's circuit (breaksCircuit),
 * which kept answering after Redis was back (a 5 s wait for "no node", then 503s, for up to 10 s).
 */
export class RedisUnavailableError extends ServiceUnavailableError {
	constructor(message: string) {
		super(message);
		this.name = "RedisUnavailableError";
	}
}

/** Whether an error from a Redis client means Redis is unavailable (a 503), rather than a bug in a command. */
export function isRedisUnavailable(err: unknown): boolean {
	if (!err || typeof err !== "object") return false;
	const { name, code, message } = err as { name?: unknown; code?: unknown; message?: unknown };
	if (name === "MaxRetriesPerRequestError") return true;
	if (typeof code === "string" && CONNECTION_CODES.has(code)) return true;
	if (typeof message !== "string") return false;
	return CONNECTION_MESSAGES.some((re) => re.test(message)) || UNAVAILABLE_REPLIES.test(message);
}

/** Links currently down, by what they serve (see redisOutages). */
const linksDown = new Set<RedisLink>();

/** What this process's Redis stores cannot reach now, e.g. ["carts"]: empty when all is well. */
export function redisOutages(): string[] {
	return [...new Set([...linksDown].map((l) => l.purpose))];
}

/**
 * One Redis client serving one purpose ("carts", "rate limits"), through which every command goes
 * (run): a failure of Redis becomes a ServiceUnavailableError, and the outage is tracked and logged.
 */
export class RedisLink {
	private downSince: number | null = null;
	private recovery: NodeJS.Timeout | undefined;

	/**
	 * @param purpose what the client serves, for logs and readiness ("carts")
	 * @param whileDown what the shop does about it while Redis is down, for the log
	 */
	constructor(
		readonly client: Redis,
		readonly purpose: string,
		private readonly logger: OutageLogger = console,
		private readonly whileDown = "answering 503 until it is back",
	) {
		// Without a listener ioredis prints every failed reconnect to the console.
		client.on("error", (err: Error) => this.markDown(err));
		client.on("ready", () => this.markUp());
	}

	get isDown(): boolean {
		return this.downSince !== null;
	}

	/** Runs a command, mapping an unavailable Redis to a 503 (other errors, e.g. a script's, pass unchanged). */
	async run<T>(command: (redis: Redis) => Promise<T>): Promise<T> {
		const status = this.client.status;
		// A connection is being made (the first, or a reconnect): wait a little for it rather than fail.
		if (status === "wait" || status === "connecting" || status === "connect") await this.whenReady(CONNECT_WAIT_MS);
		if (this.client.status !== "ready") throw this.unavailable(this.downSince === null ? new Error(`Redis not connected (${this.client.status})`) : undefined);
		try {
			return await command(this.client);
		} catch (err) {
			if (!isRedisUnavailable(err)) throw err;
			throw this.unavailable(err as Error);
		}
	}

	/** Closes the client, also while it is reconnecting (QUIT would wait for a connection). */
	async close(): Promise<void> {
		this.stopRecovery();
		linksDown.delete(this);
		if (this.client.status === "ready") await this.client.quit().catch(() => undefined);
		this.client.disconnect();
	}

	private unavailable(cause?: Error): ServiceUnavailableError {
		if (cause) this.markDown(cause);
		return new RedisUnavailableError(`Redis unavailable (${this.purpose}), try again`);
	}

	private whenReady(ms: number): Promise<void> {
		return new Promise((resolve) => {
			const done = () => {
				clearTimeout(timer);
				this.client.off("ready", done);
				this.client.off("close", done);
				resolve();
			};
			const timer = setTimeout(done, ms);
			this.client.once("ready", done);
			this.client.once("close", done);
		});
	}

	private markDown(err: Error) {
		if (this.client.status === "end") return;
		if (this.downSince !== null) return;
		this.downSince = Date.now();
		linksDown.add(this);
		this.logger.warn(`Redis unavailable for ${this.purpose} (${err.message}): ${this.whileDown}.`);
		// A connection that stays open but stopped answering never emits "ready" again: ask it.
		this.recovery = setInterval(() => {
			if (this.client.status !== "ready") return;
			this.client.ping().then(() => this.markUp(), () => undefined);
		}, RECOVERY_PING_MS).unref();
	}

	private markUp() {
		if (this.downSince === null) return;
		const seconds = Math.round((Date.now() - this.downSince) / 1000);
		this.downSince = null;
		linksDown.delete(this);
		this.stopRecovery();
		this.logger.info(`Redis is back for ${this.purpose} (down ${seconds}s).`);
	}

	private stopRecovery() {
		if (this.recovery) clearInterval(this.recovery);
		this.recovery = undefined;
	}
}

/** A client with REDIS_CLIENT_OPTIONS. */
export function connectRedis(url: string): Redis {
	const { default: IORedis } = require("ioredis") as typeof import("ioredis");
	return new IORedis(url, { ...REDIS_CLIENT_OPTIONS });
}

/**
 * The same options with the URL's own parts (host, port, password, db, TLS), as one object: for a
 * client that takes a single options argument, such as Moleculer's Redis cacher (`redis:` option).
 */
export function redisClientOptions(url: string): RedisOptions {
	const { parseURL } = require("ioredis/built/utils") as { parseURL(url: string): RedisOptions };
	// The scheme in any case (REDISS:// too): a TLS URL must never connect in clear text.
	const tls = /^rediss:/i.test(url) ? { tls: {} } : {};
	return { ...parseURL(url), ...tls, ...REDIS_CLIENT_OPTIONS };
}
