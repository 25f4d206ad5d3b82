/**
 * The environment variables the shop reads, with their defaults (the payment, email and SMS
 * adapters read their own; the gateway reads HOST). A malformed or unsafe setting refuses to start
 * the process (readConfig throws while moleculer.config.ts loads), naming the variable: never a
 * silent default in its place.
 * The README's configuration table is written from this file.
 */
import fs from "node:fs";
import path from "node:path";
import { Validators } from "moleculer";
import { DEFAULT_SHIPPING_RATES, parseShippingRates, type ShippingRates } from "./checkout-totals";
import { isIsoCurrency } from "./catalog-rules";
import { emailProblem, normalizeEmail } from "./user-records";
import { MIN_BCRYPT_COST, bcryptCost } from "./password-policy";

/** Refuses the start: the message names the variable, what it takes and what it was given. */
function refuse(name: string, value: string | undefined, takes: string): never {
	throw new Error(`${name} must be ${takes}, not "${value}"`);
}

/** The longest delay a Node.js timer keeps: a longer one fires at once (TimeoutOverflowWarning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

interface WholeNumberRule {
	min: number;
	max?: number;
	/** What the variable takes, for the message: "a port number from 1 to 65535". */
	takes: string;
}

/**
 * A whole number from the environment; unset or empty keeps `fallback`. Digits only: "4.99", "1e3",
 * "0x10", "-1" or "abc" stop the start instead of being rounded, read otherwise or replaced by the default.
 */
export function wholeNumberSetting(name: string, value: string | undefined, fallback: number, rule: WholeNumberRule): number {
	if (value == null || value.trim() === "") return fallback;
	const v = value.trim();
	const n = Number(v);
	if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < rule.min || n > (rule.max ?? Number.MAX_SAFE_INTEGER)) refuse(name, value, rule.takes);
	return n;
}

const PORT: WholeNumberRule = { min: 1, max: 65535, takes: "a port number from 1 to 65535" };
/** A whole number of `unit`s from `min` (to `max`); `zeroMeans` says what 0 does where it is allowed. */
const count = (unit: string, min: number, max?: number, zeroMeans?: string): WholeNumberRule => ({
	min,
	max,
	takes: `a whole number of ${unit}, ${max ? `from ${min} to ${max}` : `${min} or more`}${zeroMeans ? ` (0 ${zeroMeans})` : ""}`,
});
// A longer delay than a timer keeps would fire at once: a REQUEST_TIMEOUT of 3000000000 would time every call out.
const MS = (zeroMeans?: string) => count("milliseconds", zeroMeans ? 0 : 1, MAX_TIMER_MS, zeroMeans);
const SECONDS = count("seconds", 1, Math.floor(MAX_TIMER_MS / 1000));
const PER_MINUTE = count("requests per minute", 0, undefined, "turns the limit off");
/** A cents setting (e.g. SHIPPING_FLAT_CENTS): "4.99" is not rounded, nor "-1" replaced. */
export const CENTS: WholeNumberRule = { min: 0, takes: "a whole number of cents, 0 or more (499 for 4.99)" };

/**
 * The fewest days a finished message may be kept for: the outboxes keep an event 7 days, and the notifications
 * service remembers handling one for this long (its notification_events), so a message removed sooner could
 * be sent again by a replayed event.
 */
export const MIN_RETENTION_DAYS = 8;
const RETENTION: WholeNumberRule = { min: 0, takes: `a whole number of days, ${MIN_RETENTION_DAYS} or more (0 keeps them for good)` };
/** 0 (the default) keeps for good. */
function retentionDays(name: string, value: string | undefined): number {
	const days = wholeNumberSetting(name, value, 0, RETENTION);
	if (days > 0 && days < MIN_RETENTION_DAYS) refuse(name, value, RETENTION.takes);
	return days;
}

const TRUE_WORDS = ["true", "1", "yes", "on"];
const FALSE_WORDS = ["false", "0", "no", "off"];

/** An on/off setting: true/false, 1/0, yes/no, on/off in any case; unset or empty keeps `fallback`. */
export function booleanSetting(name: string, value: string | undefined, fallback: boolean): boolean {
	const v = (value ?? "").trim().toLowerCase();
	if (v === "") return fallback;
	if (TRUE_WORDS.includes(v)) return true;
	if (FALSE_WORDS.includes(v)) return false;
	return refuse(name, value, "true or false (also 1/0, yes/no, on/off)");
}

/** HEALTH_PORT: unset or empty, no probe server (a REPL beside a node: `HEALTH_PORT= ...`); else its port. */
function healthPortSetting(value: string | undefined): number | undefined {
	if (value == null || value.trim() === "") return undefined;
	// Not 0: the image's HEALTHCHECK probes any HEALTH_PORT that is set, and port 0 answers nobody.
	return wholeNumberSetting("HEALTH_PORT", value, 0, { ...PORT, takes: "a port number from 1 to 65535, or empty for no probe server" });
}

/** Heartbeats in seconds; a node is taken for dead after the timeout, so it must outlast an interval. */
function heartbeatSettings(env: NodeJS.ProcessEnv) {
	const heartbeatInterval = wholeNumberSetting("HEARTBEAT_INTERVAL", env.HEARTBEAT_INTERVAL, 5, SECONDS);
	const heartbeatTimeout = wholeNumberSetting("HEARTBEAT_TIMEOUT", env.HEARTBEAT_TIMEOUT, 15, SECONDS);
	if (heartbeatTimeout <= heartbeatInterval) {
		throw new Error(`HEARTBEAT_TIMEOUT must be more seconds than HEARTBEAT_INTERVAL, not ${heartbeatTimeout} for ${heartbeatInterval}: every node would pass for dead between two heartbeats`);
	}
	return { heartbeatInterval, heartbeatTimeout };
}

/**
 * TRUST_PROXY: how many proxies in front of the gateway append to X-Forwarded-For (lib/client-ip.ts).
 * 0 ignores the header: without a proxy of ours it is written by the client.
 */
export function trustedProxyHops(value: string | undefined): number {
	const v = (value ?? "").trim().toLowerCase();
	if (["", "0", "false", "no"].includes(v)) return 0;
	if (["true", "yes"].includes(v)) return 1;
	const n = Number(v);
	if (/^\d+$/.test(v) && Number.isSafeInteger(n)) return n;
	throw new Error(`TRUST_PROXY must be the number of proxies in front of the gateway (0, 1, 2, ...) or true/false, not "${value}"`);
}

/**
 * Values of JWT_SECRET from example files and tutorials: whoever has read them can sign tokens. The
 * k8s dev overlay's is long and varied enough otherwise; that overlay runs with NODE_ENV=development.
 */
const PLACEHOLDER_SECRETS = ["replace_me", "local-only-jwt-secret-change-me", "dev-only-jwt-secret-not-for-production", "changeme", "change-me", "secret"];
/** The least JWT_SECRET length production accepts (also what a generated, stored one must have: lib/jwt.ts). */
export const MIN_SECRET_LENGTH = 32;
/** The fewest different characters a production JWT_SECRET may have: "aaaa…" is long but guessable. */
export const MIN_SECRET_VARIETY = 10;

/**
 * JWT_SECRET; in production a short, uniform or placeholder one refuses to start (it signs every
 * access token). Unset (or blank) with a TRANSPORTER refuses too, outside tests: each node would
 * generate its own (lib/jwt.ts) and answer 401 to every token another node signed.
 */
function jwtSecretSetting(env: NodeJS.ProcessEnv): string | undefined {
	const value = env.JWT_SECRET;
	const secret = value?.trim();
	if (!secret) {
		if (env.TRANSPORTER && env.NODE_ENV !== "test") {
			throw new Error("JWT_SECRET must be set when TRANSPORTER is (a cluster), the same on every node: set a random one (e.g. openssl rand -hex 32); unset, each node generates its own and refuses the tokens of the others");
		}
		return undefined;
	}
	if (env.NODE_ENV === "production" && (secret.length < MIN_SECRET_LENGTH || new Set(secret).size < MIN_SECRET_VARIETY || PLACEHOLDER_SECRETS.includes(secret.toLowerCase()))) {
		throw new Error(
			`JWT_SECRET is a placeholder, shorter than ${MIN_SECRET_LENGTH} characters or made of fewer than ${MIN_SECRET_VARIETY} different characters: set a random one (e.g. openssl rand -hex 32), the same on every node`,
		);
	}
	return value;
}

/** ADMIN_PASSWORD values published in this repository's own deployment files (docker-compose, k8s). */
const PLACEHOLDER_ADMIN_PASSWORDS = [...PLACEHOLDER_SECRETS, "local-only-admin-password", "dev-only-admin-password"];

/** ADMIN_PASSWORD; in production a published one refuses to start (its strength is checked by the users service). */
function adminPasswordSetting(value: string | undefined, production: boolean): string | undefined {
	if (!value) return undefined;
	if (production && PLACEHOLDER_ADMIN_PASSWORDS.includes(value.trim().toLowerCase())) {
		throw new Error("ADMIN_PASSWORD is a placeholder from the shop's example files: set your own, or leave it unset for a random one printed once in the log when the admin is created");
	}
	return value;
}

// The rule registration's params apply (services/users.service.ts): the admin's address is one a
// customer could have registered.
const checkEmail = new Validators.Fastest().compile({ email: { type: "email", mode: "precise", max: 254 } }) as (o: { email: string }) => true | unknown[];

/** ADMIN_EMAIL: an address, as registration takes it (trimmed, any case); anything else would become the admin's login. */
function adminEmailSetting(value: string | undefined): string | undefined {
	if (!value || !value.trim()) return undefined;
	const email = normalizeEmail(value);
	if (checkEmail({ email }) !== true) refuse("ADMIN_EMAIL", value, "an email address (e.g. admin@shop.example)");
	const problem = emailProblem(email);
	if (problem) throw new Error(`ADMIN_EMAIL is refused: ${problem}`);
	return value;
}

/** The shop's nine services, by the names SERVICES takes (with `api`, the gateway). */
export const SHOP_SERVICES = ["users", "products", "cart", "orders", "payments", "notifications", "search", "analytics", "reviews"];

/**
 * SERVICES, as moleculer-runner reads it: names of files in SERVICEDIR, or paths and globs. A plain
 * name that is no service of the shop (a typo) gave a running, ready node hosting nothing of it.
 */
function servicesSetting(value: string | undefined): string[] | undefined {
	const v = nonEmpty(value);
	if (v === undefined) return undefined;
	const names = v.split(",").map((s) => s.trim()).filter(Boolean);
	const known = ["api", ...SHOP_SERVICES];
	// Paths and globs (services/**, dist/services/users.service.js) are the runner's to resolve.
	const unknown = names.filter((n) => !/[/*.]/.test(n) && !known.includes(n));
	if (unknown.length) refuse("SERVICES", value, `a comma list of ${known.join(", ")} (or paths); "${unknown.join('", "')}" is none of them`);
	return names;
}

/**
 * NODE_ENV, one of the three the shop knows. Any other value (`Production`, `prod`) was taken as "not
 * production" without a word, which turned off the checks that refuse placeholder secrets.
 */
function nodeEnvSetting(value: string | undefined): "production" | "development" | "test" | undefined {
	const v = nonEmpty(value);
	if (v === undefined || v === "production" || v === "development" || v === "test") return v;
	return refuse("NODE_ENV", value, "production, development or test (lower case)");
}

/**
 * CORS_ORIGINS: `*`, or a comma list of whole origins (scheme, host, optional port; `*` wildcards in the
 * host). An entry with a path (a trailing slash) or that is no URL never matched any browser's Origin,
 * so CORS was off for it without a word.
 */
function corsOriginsSetting(value: string | undefined): string {
	const v = nonEmpty(value);
	if (v === undefined || v.trim() === "*") return "*";
	const bad = v
		.split(",")
		.map((s) => s.trim())
		// Any scheme (an app's capacitor://localhost too), a host name or a bracketed IPv6 address, a port.
		.filter((o) => !/^[a-z][a-z0-9+.-]*:\/\/(\[[0-9a-f:.]+\]|[a-z0-9*]([a-z0-9*.-]*[a-z0-9*])?)(:\d{1,5})?$/i.test(o));
	if (bad.length) refuse("CORS_ORIGINS", value, `* or a comma list of whole origins such as https://shop.example.com (no path, no trailing slash); "${bad.join('", "')}" is not one`);
	return v;
}

/**
 * SERVICEDIR, where moleculer-runner looks for the service files: one that is not a directory gave a
 * node that "started successfully" hosting nothing (the runner loads what it finds, here nothing).
 * Checked by the broker's configuration (moleculer.config.ts), which the runner reads, not by
 * readConfig: other readers (scripts, a check of the deployment files) need no build.
 */
export function checkServiceDir(value: string | undefined): void {
	const v = nonEmpty(value);
	if (v === undefined) return;
	let isDir = false;
	try {
		isDir = fs.statSync(path.resolve(v)).isDirectory();
	} catch {
		/* missing */
	}
	if (!isDir) refuse("SERVICEDIR", value, `a directory of service files (dist/services after npm run build); ${path.resolve(v)} is none`);
}

export function readConfig(env: NodeJS.ProcessEnv = process.env) {
	const nodeEnv = nodeEnvSetting(env.NODE_ENV);
	const isTest = nodeEnv === "test";
	const production = nodeEnv === "production";
	return {
		services: servicesSetting(env.SERVICES),
		env: nodeEnv ?? "development",
		isTest,
		// 0 lets the system pick a free port: nodes without the gateway, and tests.
		port: wholeNumberSetting("PORT", env.PORT, 3000, { ...PORT, min: 0, takes: "a port number from 1 to 65535 (0: any free port)" }),
		metricsPort: wholeNumberSetting("METRICS_PORT", env.METRICS_PORT, 3030, PORT),
		// Loopback unless told: the metrics carry sales figures. Deployments scraped from outside set 0.0.0.0.
		/** Blank is unset, as for every other setting (a `HOST= ` line in an .env file). */
		host: nonEmpty(env.HOST) ?? "0.0.0.0",
		metricsHost: nonEmpty(env.METRICS_HOST) ?? "127.0.0.1",
		healthPort: healthPortSetting(env.HEALTH_PORT),
		...heartbeatSettings(env),
		metricsEnabled: booleanSetting("METRICS_ENABLED", env.METRICS_ENABLED, !isTest),
		// Empty is unset: DATA_DIR= wrote the files into the working directory, and a later start without it found an empty shop.
		dataDir: path.resolve(nonEmpty(env.DATA_DIR) ?? "./data"),
		namespace: nonEmpty(env.NAMESPACE) ?? "",
		nodeID: env.NODEID || undefined,
		transporter: env.TRANSPORTER || undefined,
		redisUrl: serverUrlSetting("REDIS_URL", env.REDIS_URL, REDIS_URL),
		cacher: cacherSetting(env.CACHER),
		mongoUri: serverUrlSetting("MONGO_URI", env.MONGO_URI, { schemes: ["mongodb", "mongodb+srv"], takes: "a MongoDB connection string (mongodb://host:27017/shop or mongodb+srv://...)" }),
		elasticsearchUrl: serverUrlSetting("ELASTICSEARCH_URL", env.ELASTICSEARCH_URL, httpUrl("http://localhost:9200")),
		logLevel: logLevelSetting(env.LOGLEVEL, isTest ? "warn" : "info"),
		logFormat: logFormatSetting(env.LOG_FORMAT),
		requestTimeout: wholeNumberSetting("REQUEST_TIMEOUT", env.REQUEST_TIMEOUT, 10_000, MS()),
		shutdownTimeout: wholeNumberSetting("SHUTDOWN_TIMEOUT", env.SHUTDOWN_TIMEOUT, 10_000, MS()),
		// Off where an ingress or a CDN compresses answers already.
		compression: booleanSetting("COMPRESSION", env.COMPRESSION, true),
		// Longer than the idle timeout of a proxy that pools connections to the gateway (ingress-nginx and AWS ALB: 60 s),
		// so the proxy, not the gateway, closes an idle one. Node's 5 s raced its next request on it: a 502 to a customer.
		keepAliveTimeout: wholeNumberSetting("KEEP_ALIVE_TIMEOUT", env.KEEP_ALIVE_TIMEOUT, 65_000, count("milliseconds", 1000, MAX_TIMER_MS)),
		// How long a call waits for a node of its service to come back (a restart) before it fails with 503; 0 never waits.
		serviceWaitMs: wholeNumberSetting("SERVICE_WAIT_TIMEOUT", env.SERVICE_WAIT_TIMEOUT, 5000, MS("never waits")),
		tracing: traceExporterSetting(env.TRACE_EXPORTER) ?? (nodeEnv === "development" ? "console" : undefined),
		zipkinUrl: serverUrlSetting("ZIPKIN_URL", env.ZIPKIN_URL, httpUrl("http://localhost:9411")) ?? "http://localhost:9411",
		// Empty is unset: CORS_ORIGINS= allowed no origin at all (403 to every browser request).
		corsOrigins: corsOriginsSetting(env.CORS_ORIGINS),
		rateLimit: wholeNumberSetting("RATE_LIMIT", env.RATE_LIMIT, 600, PER_MINUTE),
		authRateLimit: wholeNumberSetting("AUTH_RATE_LIMIT", env.AUTH_RATE_LIMIT, 30, PER_MINUTE),
		trustProxy: trustedProxyHops(env.TRUST_PROXY),
		jwtSecret: jwtSecretSetting(env),
		// At least a second: a token born expired would answer 401 on every authenticated route.
		jwtTtlSeconds: wholeNumberSetting("JWT_TTL", env.JWT_TTL, 15 * 60, count("seconds", 1)),
		// Each step doubles the work of a login; never below MIN_BCRYPT_COST, nor so high a login takes seconds.
		bcryptCost: wholeNumberSetting("BCRYPT_COST", env.BCRYPT_COST, bcryptCost(isTest), count("rounds", MIN_BCRYPT_COST, 15)),
		shippingFlatCents: wholeNumberSetting("SHIPPING_FLAT_CENTS", env.SHIPPING_FLAT_CENTS, DEFAULT_SHIPPING_RATES.flatCents, CENTS),
		freeShippingThresholdCents: wholeNumberSetting("FREE_SHIPPING_THRESHOLD_CENTS", env.FREE_SHIPPING_THRESHOLD_CENTS, DEFAULT_SHIPPING_RATES.freeThresholdCents, CENTS),
		shippingRatesByCurrency: shippingRatesSetting(env.SHIPPING_RATES),
		seedDemo: booleanSetting("SEED_DEMO", env.SEED_DEMO, true),
		// An order left waiting for its payment (3-D Secure never completed) is cancelled after this.
		unpaidOrderTtlMinutes: wholeNumberSetting("UNPAID_ORDER_TTL_MINUTES", env.UNPAID_ORDER_TTL_MINUTES, 30, count("minutes", 1)),
		// Also read by adapters/channels (readNotificationConfig); here so that a malformed value stops every node's start.
		notifyConcurrency: wholeNumberSetting("NOTIFY_CONCURRENCY", env.NOTIFY_CONCURRENCY, 4, count("workers", 1)),
		// Unset, no limit by count: NOTIFY_RETRY_MINUTES bounds the retries in time, as an operator reckons an outage.
		notifyMaxAttempts: wholeNumberSetting("NOTIFY_MAX_ATTEMPTS", env.NOTIFY_MAX_ATTEMPTS, Infinity, count("attempts", 1)),
		// A day: five attempts (the old default) gave up after 30 s, before most provider outages were over.
		notifyRetryMinutes: wholeNumberSetting("NOTIFY_RETRY_MINUTES", env.NOTIFY_RETRY_MINUTES, 24 * 60, count("minutes", 1)),
		notificationRetentionDays: retentionDays("NOTIFICATION_RETENTION_DAYS", env.NOTIFICATION_RETENTION_DAYS),
		adminEmail: adminEmailSetting(env.ADMIN_EMAIL),
		adminPassword: adminPasswordSetting(env.ADMIN_PASSWORD, production),
	};
}

export type ShopConfig = ReturnType<typeof readConfig>;

/** A setting's value, or undefined when unset or blank ("empty counts as unset"). */
export function nonEmpty(value: string | undefined): string | undefined {
	return value == null || value.trim() === "" ? undefined : value.trim();
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"];

/** Whether a logger set to `configured` prints lines of `level`. */
export function logShows(configured: string, level: string): boolean {
	return LOG_LEVELS.indexOf(level) <= LOG_LEVELS.indexOf(configured);
}

/** LOGLEVEL: one of Moleculer's levels; anything else logged nothing at all (LOGLEVEL=verbose). */
function logLevelSetting(value: string | undefined, fallback: string): string {
	const v = nonEmpty(value)?.toLowerCase();
	if (v === undefined) return fallback;
	if (!LOG_LEVELS.includes(v)) refuse("LOGLEVEL", value, `one of ${LOG_LEVELS.join(", ")}`);
	return v;
}

const LOG_FORMATS = ["full", "json", "short"] as const;

/**
 * LOG_FORMAT: "full" (date, level, node id, module; a logged error's stack continues on the lines
 * after), "json" (one JSON object per line, stacks inside it: for log shippers), or "short" (time of
 * day only, for a terminal).
 */
function logFormatSetting(value: string | undefined): (typeof LOG_FORMATS)[number] {
	const v = nonEmpty(value)?.toLowerCase();
	if (v === undefined) return "full";
	if (!(LOG_FORMATS as readonly string[]).includes(v)) refuse("LOG_FORMAT", value, `one of ${LOG_FORMATS.join(", ")}`);
	return v as (typeof LOG_FORMATS)[number];
}

const TRACE_EXPORTERS = ["console", "zipkin", "jaeger", "event"];

/** TRACE_EXPORTER: a comma list of exporters; a misspelt one traced every call and exported nothing. */
function traceExporterSetting(value: string | undefined): string | undefined {
	const v = nonEmpty(value);
	if (v === undefined) return undefined;
	const kinds = v.split(",").map((k) => k.trim().toLowerCase());
	if (kinds.some((k) => !TRACE_EXPORTERS.includes(k))) refuse("TRACE_EXPORTER", value, `a comma list of ${TRACE_EXPORTERS.join(", ")}`);
	return kinds.join(",");
}

/** CACHER: `Memory`, or a Redis URL (redis:// or, with TLS, rediss://); anything else fell back to memory unseen. */
function cacherSetting(value: string | undefined): string | undefined {
	const v = nonEmpty(value);
	if (v === undefined) return undefined;
	if (v.toLowerCase() === "memory") return "Memory";
	return serverUrlSetting("CACHER", v, { ...REDIS_URL, takes: `Memory, or ${REDIS_URL.takes}` });
}

interface ServerUrlRule {
	/** URL schemes taken, lower case. */
	schemes: string[];
	/** What the variable takes, for the message. */
	takes: string;
}

const REDIS_URL: ServerUrlRule = { schemes: ["redis", "rediss"], takes: "a Redis URL (redis://host:6379, or rediss:// for TLS)" };

export function httpUrl(example: string): ServerUrlRule {
	return { schemes: ["http", "https"], takes: `an http:// or https:// URL (${example})` };
}

/**
 * The address of a server the shop connects to; unset or blank is unset. Another scheme, no host,
 * or an http(s) URL that does not parse stops the start, naming the variable: the client libraries
 * failed later with "Invalid URL" or a DNS error on the junk, without saying where it came from.
 * A password in the value is not repeated in the message.
 */
export function serverUrlSetting(name: string, value: string | undefined, rule: ServerUrlRule): string | undefined {
	const v = nonEmpty(value);
	if (v === undefined) return undefined;
	const scheme = /^([a-z][a-z0-9+.-]*):\/\/[^/?#]/i.exec(v)?.[1].toLowerCase();
	// A MongoDB string may list several hosts (h1:27017,h2:27017), which URL does not parse; any other must parse.
	if (!scheme || !rule.schemes.includes(scheme) || (!scheme.startsWith("mongodb") && !URL.canParse(v))) refuse(name, withoutPassword(v), rule.takes);
	if (scheme.startsWith("mongodb") && !mongoCredentialsEncoded(v)) {
		refuse(name, withoutPassword(v), `${rule.takes}, its user name and password percent-encoded (: / ? # [ ] @ % as %3A %2F %3F %23 %5B %5D %40 %25)`);
	}
	return v;
}

/**
 * The MongoDB driver's own rule: the credentials of a connection string hold none of `: / ? # [ ] @`
 * unencoded (one `:` between user and password). Otherwise it failed only at connect, as "Password
 * contains unescaped characters", or took part of the password for a host.
 */
function mongoCredentialsEncoded(uri: string): boolean {
	const rest = uri.slice(uri.indexOf("://") + 3).split("?")[0];
	const at = rest.lastIndexOf("@");
	if (at < 0) return true;
	const credentials = rest.slice(0, at);
	if (!/^[^:/?#[\]@]*(:[^:/?#[\]@]*)?$/.test(credentials)) return false;
	try {
		decodeURIComponent(credentials);
		return true;
	} catch {
		return false;
	}
}

/**
 * The value as a refusal may show it: whatever comes before the last `@` (a user and password, as
 * well written or not: `redis//:pw@host`, an unencoded `@` in the password) becomes `***`.
 */
function withoutPassword(url: string): string {
	const at = url.lastIndexOf("@");
	if (at < 0) return url;
	const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0] ?? "";
	return `${scheme}***${url.slice(at)}`;
}

/** SHIPPING_RATES (see parseShippingRates); unset or empty: none. */
function shippingRatesSetting(value: string | undefined): ShippingRates["byCurrency"] {
	const v = nonEmpty(value);
	if (v === undefined) return undefined;
	const rates = parseShippingRates(v, isIsoCurrency);
	if (typeof rates === "string") refuse("SHIPPING_RATES", value, `a comma list of CUR:flat:threshold in whole minor units (EUR:499:4500,JPY:800:8000): ${rates}`);
	return rates;
}

/** The shipping rates the shop charges: the flat rate and threshold, and the per-currency ones. */
export function shippingRatesOf(cfg: ShopConfig): ShippingRates {
	return { flatCents: cfg.shippingFlatCents, freeThresholdCents: cfg.freeShippingThresholdCents, byCurrency: cfg.shippingRatesByCurrency };
}

/** When this process started: a lease that ends before then plus its length was taken by an earlier run. */
export function processStartedAt(): Date {
	return new Date(Date.now() - process.uptime() * 1000);
}
