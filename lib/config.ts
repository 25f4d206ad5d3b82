/**
 * The environment variables the shop reads, with their defaults (the payment, email and SMS
 * adapters read their own; the gateway reads HOST). Settings that would be unsafe refuse to start
 * the process, naming the variable.
 * The README's configuration table is written from this file.
 */
import path from "node:path";
import { centsSetting, DEFAULT_SHIPPING_RATES } from "./checkout-totals";

function int(value: string | undefined, fallback: number): number {
	if (value == null || value === "") return fallback;
	const n = Number(value);
	return Number.isFinite(n) ? Math.floor(n) : fallback;
}

function bool(value: string | undefined, fallback: boolean): boolean {
	if (value == null || value === "") return fallback;
	return !["0", "false", "no", "off"].includes(value.toLowerCase());
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

/** Values of JWT_SECRET from example files and tutorials: whoever has read them can sign tokens. */
const PLACEHOLDER_SECRETS = ["replace_me", "local-only-jwt-secret-change-me", "changeme", "change-me", "secret"];
/** The least JWT_SECRET length production accepts (also what a generated, stored one must have: lib/jwt.ts). */
export const MIN_SECRET_LENGTH = 32;

/** JWT_SECRET; in production a short or placeholder one refuses to start (it signs every access token). */
function jwtSecretSetting(value: string | undefined, production: boolean): string | undefined {
	if (!value) return undefined;
	if (production && (value.trim().length < MIN_SECRET_LENGTH || PLACEHOLDER_SECRETS.includes(value.trim().toLowerCase()))) {
		throw new Error(`JWT_SECRET is a placeholder or shorter than ${MIN_SECRET_LENGTH} characters: set a random one (e.g. openssl rand -hex 32), the same on every node`);
	}
	return value;
}

export function readConfig(env: NodeJS.ProcessEnv = process.env) {
	const isTest = env.NODE_ENV === "test";
	return {
		env: env.NODE_ENV ?? "development",
		isTest,
		port: int(env.PORT, 3000),
		metricsPort: int(env.METRICS_PORT, 3030),
		// Loopback unless told: the metrics carry sales figures. Deployments scraped from outside set 0.0.0.0.
		metricsHost: env.METRICS_HOST || "127.0.0.1",
		healthPort: env.HEALTH_PORT ? int(env.HEALTH_PORT, 0) : undefined,
		heartbeatInterval: int(env.HEARTBEAT_INTERVAL, 5),
		heartbeatTimeout: int(env.HEARTBEAT_TIMEOUT, 15),
		metricsEnabled: bool(env.METRICS_ENABLED, !isTest),
		dataDir: path.resolve(env.DATA_DIR ?? "./data"),
		namespace: env.NAMESPACE ?? "",
		nodeID: env.NODEID || undefined,
		transporter: env.TRANSPORTER || undefined,
		redisUrl: env.REDIS_URL || undefined,
		cacher: env.CACHER || undefined,
		mongoUri: env.MONGO_URI || undefined,
		elasticsearchUrl: env.ELASTICSEARCH_URL || undefined,
		logLevel: env.LOGLEVEL ?? (isTest ? "warn" : "info"),
		requestTimeout: int(env.REQUEST_TIMEOUT, 10_000),
		shutdownTimeout: int(env.SHUTDOWN_TIMEOUT, 10_000),
		// How long a call waits for a node of its service to come back (a restart) before it fails with 503; 0 never waits.
		serviceWaitMs: Math.max(0, int(env.SERVICE_WAIT_TIMEOUT, 5000)),
		tracing: env.TRACE_EXPORTER || (env.NODE_ENV === "development" ? "console" : undefined),
		zipkinUrl: env.ZIPKIN_URL ?? "http://localhost:9411",
		corsOrigins: env.CORS_ORIGINS ?? "*",
		rateLimit: int(env.RATE_LIMIT, 600),
		authRateLimit: int(env.AUTH_RATE_LIMIT, 30),
		trustProxy: trustedProxyHops(env.TRUST_PROXY),
		jwtSecret: jwtSecretSetting(env.JWT_SECRET, env.NODE_ENV === "production"),
		jwtTtlSeconds: int(env.JWT_TTL, 15 * 60),
		shippingFlatCents: centsSetting(env.SHIPPING_FLAT_CENTS, DEFAULT_SHIPPING_RATES.flatCents),
		freeShippingThresholdCents: centsSetting(env.FREE_SHIPPING_THRESHOLD_CENTS, DEFAULT_SHIPPING_RATES.freeThresholdCents),
		seedDemo: bool(env.SEED_DEMO, true),
		// An order left waiting for its payment (3-D Secure never completed) is cancelled after this.
		unpaidOrderTtlMinutes: Math.max(1, int(env.UNPAID_ORDER_TTL_MINUTES, 30)),
		adminEmail: env.ADMIN_EMAIL || undefined,
		adminPassword: env.ADMIN_PASSWORD || undefined,
	};
}

export type ShopConfig = ReturnType<typeof readConfig>;

/** When this process started: a lease that ends before then plus its length was taken by an earlier run. */
export function processStartedAt(): Date {
	return new Date(Date.now() - process.uptime() * 1000);
}
