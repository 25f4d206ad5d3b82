/**
 * lib/config.ts: a malformed or unsafe setting stops the start naming the variable (readConfig
 * throws while moleculer.config.ts loads), never a silent default in its place.
 * JWT_SECRET's rules are in jwt.spec.ts, TRUST_PROXY's in client-ip.spec.ts.
 */
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { CENTS, checkServiceDir, readConfig, wholeNumberSetting, type ShopConfig } from "../../lib/config";
import { publishedValues } from "../helpers/published-settings";
import { readPaymentsConfig } from "../../adapters/payments/config";

describe("numbers", () => {
	test.each<[string, string, keyof ShopConfig, unknown]>([
		["PORT", "8080", "port", 8080],
		["PORT", "0", "port", 0], // any free port: nodes without the gateway (test/helpers/cluster.ts)
		["PORT", "65535", "port", 65535],
		["PORT", " 3000 ", "port", 3000],
		["METRICS_PORT", "3031", "metricsPort", 3031],
		["HEALTH_PORT", "3001", "healthPort", 3001],
		["HEALTH_PORT", "", "healthPort", undefined], // the README's `env HEALTH_PORT= node dist/scripts/repl.js`
		["HOST", " ", "host", "0.0.0.0"], // a `HOST= ` line in an .env file: unset, like any blank setting
		["HOST", " 127.0.0.1 ", "host", "127.0.0.1"],
		["METRICS_HOST", " ", "metricsHost", "127.0.0.1"],
		["HEARTBEAT_INTERVAL", "1", "heartbeatInterval", 1],
		["HEARTBEAT_TIMEOUT", "60", "heartbeatTimeout", 60],
		["REQUEST_TIMEOUT", "3000", "requestTimeout", 3000],
		["SHUTDOWN_TIMEOUT", "8000", "shutdownTimeout", 8000],
		["KEEP_ALIVE_TIMEOUT", "620000", "keepAliveTimeout", 620000],
		["KEEP_ALIVE_TIMEOUT", "1000", "keepAliveTimeout", 1000],
		["SERVICE_WAIT_TIMEOUT", "0", "serviceWaitMs", 0],
		["RATE_LIMIT", "0", "rateLimit", 0],
		["AUTH_RATE_LIMIT", "0", "authRateLimit", 0],
		["RATE_LIMIT", "100000", "rateLimit", 100000],
		["JWT_TTL", "7200", "jwtTtlSeconds", 7200],
		["UNPAID_ORDER_TTL_MINUTES", "1", "unpaidOrderTtlMinutes", 1],
		["NOTIFY_CONCURRENCY", "8", "notifyConcurrency", 8],
		["NOTIFY_MAX_ATTEMPTS", "1", "notifyMaxAttempts", 1],
		["NOTIFY_MAX_ATTEMPTS", "", "notifyMaxAttempts", Infinity],
		["NOTIFY_RETRY_MINUTES", "90", "notifyRetryMinutes", 90],
		["NOTIFICATION_RETENTION_DAYS", "0", "notificationRetentionDays", 0],
		["NOTIFICATION_RETENTION_DAYS", "8", "notificationRetentionDays", 8],
		["NOTIFICATION_RETENTION_DAYS", "365", "notificationRetentionDays", 365],
		["SHIPPING_FLAT_CENTS", "0", "shippingFlatCents", 0],
		["FREE_SHIPPING_THRESHOLD_CENTS", "10000", "freeShippingThresholdCents", 10000],
		["SHIPPING_RATES", "JPY:800:8000, EUR:499:4500", "shippingRatesByCurrency", { JPY: { flatCents: 800, freeThresholdCents: 8000 }, EUR: { flatCents: 499, freeThresholdCents: 4500 } }],
		["SHIPPING_RATES", "", "shippingRatesByCurrency", undefined],
		// Empty counts as unset.
		["DATA_DIR", "", "dataDir", path.resolve("./data")],
		["DATA_DIR", " ", "dataDir", path.resolve("./data")],
		["LOGLEVEL", "", "logLevel", "info"],
		["LOGLEVEL", "Debug", "logLevel", "debug"],
		["LOG_FORMAT", "", "logFormat", "full"],
		["LOG_FORMAT", "JSON", "logFormat", "json"],
		["LOG_FORMAT", "short", "logFormat", "short"],
		["CORS_ORIGINS", "", "corsOrigins", "*"],
		["ZIPKIN_URL", "", "zipkinUrl", "http://localhost:9411"],
		["TRACE_EXPORTER", "Zipkin, event", "tracing", "zipkin,event"],
		["CACHER", "memory", "cacher", "Memory"],
		["CACHER", "rediss://cache.example:6380", "cacher", "rediss://cache.example:6380"],
		["CACHER", "", "cacher", undefined],
		["BCRYPT_COST", "10", "bcryptCost", 10],
		["BCRYPT_COST", "14", "bcryptCost", 14],
	])("%s=%j is taken", (name, value, key, expected) => {
		expect(readConfig({ [name]: value })[key]).toEqual(expected);
	});

	test("unset, each keeps its default", () => {
		expect(readConfig({})).toMatchObject({
			port: 3000, metricsPort: 3030, healthPort: undefined, heartbeatInterval: 5, heartbeatTimeout: 15, requestTimeout: 10_000, shutdownTimeout: 10_000, keepAliveTimeout: 65_000,
			serviceWaitMs: 5000, rateLimit: 600, authRateLimit: 30, jwtTtlSeconds: 900, unpaidOrderTtlMinutes: 30, notifyConcurrency: 4, notifyMaxAttempts: Infinity, notifyRetryMinutes: 1440,
			shippingFlatCents: 599, freeShippingThresholdCents: 5000, bcryptCost: 12,
		});
	});

	test.each([
		["PORT", ["abc", "99999", "65536", "-1", "3000.5", "1e3", "0x50"]],
		["METRICS_PORT", ["abc", "0", "70000", "-1"]],
		["HEALTH_PORT", ["abc", "0", "65536", "-1"]],
		["HEARTBEAT_INTERVAL", ["0", "-5", "2.5", "x"]],
		["HEARTBEAT_TIMEOUT", ["0", "-5", "x"]],
		["REQUEST_TIMEOUT", ["0", "-1", "10s", "3000000000"]], // past a Node.js timer's limit it would fire at once
		["SHUTDOWN_TIMEOUT", ["0", "-1", "ten"]],
		["KEEP_ALIVE_TIMEOUT", ["0", "999", "65s", "3000000000"]], // 0 would keep idle connections forever
		["SERVICE_WAIT_TIMEOUT", ["-1", "5s"]],
		["RATE_LIMIT", ["-1", "abc", "1.5"]],
		["AUTH_RATE_LIMIT", ["-1", "off"]],
		["JWT_TTL", ["-5", "0", "15m", "1.5"]],
		["UNPAID_ORDER_TTL_MINUTES", ["0", "-1", "half"]],
		["NOTIFY_CONCURRENCY", ["0", "-1", "four"]],
		["NOTIFY_MAX_ATTEMPTS", ["0", "2.5"]],
		["NOTIFY_RETRY_MINUTES", ["0", "-1", "1h", "1.5"]],
		["NOTIFICATION_RETENTION_DAYS", ["1", "7", "-1", "30d", "1.5"]],
		["SHIPPING_FLAT_CENTS", ["4.99", "-1", "free"]],
		["FREE_SHIPPING_THRESHOLD_CENTS", ["-1", "50.00"]],
		["SHIPPING_RATES", ["JPY:800", "XYZ:1:2", "JPY:8.5:100", "jpy:800:8000", "JPY:800:8000,JPY:1:1", "JPY:-1:5"]],
		["LOGLEVEL", ["verbose", "warning", "0"]],
		["LOG_FORMAT", ["text", "simple", "jsonext"]],
		["TRACE_EXPORTER", ["zipkn", "console,otlp"]],
		["CACHER", ["Redis", "127.0.0.1:6379", "memcached://x"]],
		["BCRYPT_COST", ["9", "4", "16", "twelve"]],
		// A typo was "not production": the checks refusing placeholder secrets went off without a word.
		["NODE_ENV", ["Production", "prod", "staging"]],
		// A path or a trailing slash never matches a browser's Origin: CORS was off for it without a word.
		["CORS_ORIGINS", ["https://shop.example.com/", "not a url", "https://a.example.com,shop.example.com", "https://shop.example.com/app"]],
	])("%s refuses %j, naming the variable and the value", (name, values) => {
		for (const value of values) {
			expect(() => readConfig({ [name]: value })).toThrow(new RegExp(`^${name} must be .*not "${value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}"$`));
		}
	});

	test("a heartbeat timeout no longer than the interval is refused: every node would pass for dead", () => {
		expect(() => readConfig({ HEARTBEAT_INTERVAL: "20" })).toThrow(/^HEARTBEAT_TIMEOUT must be more seconds than HEARTBEAT_INTERVAL, not 15 for 20/);
		expect(() => readConfig({ HEARTBEAT_INTERVAL: "5", HEARTBEAT_TIMEOUT: "5" })).toThrow(/HEARTBEAT_TIMEOUT/);
		expect(readConfig({ HEARTBEAT_INTERVAL: "1", HEARTBEAT_TIMEOUT: "4" })).toMatchObject({ heartbeatInterval: 1, heartbeatTimeout: 4 });
	});
});

describe("on/off settings", () => {
	test.each([
		["true", true], ["TRUE", true], ["1", true], ["yes", true], ["On", true], [" on ", true],
		["false", false], ["False", false], ["0", false], ["NO", false], ["off", false],
	])("%j → %s", (value, expected) => {
		expect(readConfig({ METRICS_ENABLED: value }).metricsEnabled).toBe(expected);
		expect(readConfig({ SEED_DEMO: value }).seedDemo).toBe(expected);
		expect(readConfig({ COMPRESSION: value }).compression).toBe(expected);
	});

	test("unset or empty keeps the default (metrics off only under tests)", () => {
		expect(readConfig({ METRICS_ENABLED: "" })).toMatchObject({ metricsEnabled: true, seedDemo: true, compression: true });
		expect(readConfig({ NODE_ENV: "test" }).compression).toBe(true);
		expect(readConfig({ NODE_ENV: "test" }).metricsEnabled).toBe(false);
	});

	test.each(["ture", "enabled", "2", "nope", "-"])("%j stops the start, naming the variable", (value) => {
		expect(() => readConfig({ METRICS_ENABLED: value })).toThrow(new RegExp(`^METRICS_ENABLED must be true or false .*not "${value}"`));
		expect(() => readConfig({ SEED_DEMO: value })).toThrow(/^SEED_DEMO must be true or false/);
		expect(() => readConfig({ COMPRESSION: value })).toThrow(/^COMPRESSION must be true or false/);
	});
});

describe("ADMIN_EMAIL", () => {
	test.each(["owner@shop.example", "  Owner@Shop.Example ", "admin@shop.local", "first.last+admin@mail.example.co.uk"])("%j is taken as written (the users service normalises it)", (value) => {
		expect(readConfig({ ADMIN_EMAIL: value }).adminEmail).toBe(value);
	});

	test.each(["not-an-email", "admin@", "@shop.example", "admin@localhost", "admin shop@example.com", "admin@shop.example,other@shop.example"])("%j stops the start, naming ADMIN_EMAIL", (value) => {
		expect(() => readConfig({ ADMIN_EMAIL: value })).toThrow(/^ADMIN_EMAIL must be an email address/);
	});

	test("an address that would pass for another is refused as registration refuses it", () => {
		// A Cyrillic "а" among Latin letters.
		expect(() => readConfig({ ADMIN_EMAIL: "\u0430dmin@shop.example" })).toThrow(/^ADMIN_EMAIL is refused: .*alphabets/);
	});

	test("unset or empty: none", () => {
		expect(readConfig({ ADMIN_EMAIL: "" }).adminEmail).toBeUndefined();
	});
});

describe("ADMIN_PASSWORD in production", () => {
	const production = (ADMIN_PASSWORD: string) => readConfig({ NODE_ENV: "production", ADMIN_PASSWORD });

	/** Every literal ADMIN_PASSWORD of the shop's own deployment files, and of their history. */
	const publishedPasswords = () => publishedValues("ADMIN_PASSWORD", ["local-only-admin-password", "dev-only-admin-password"]);

	test("the example files' values are found (the check below is not empty)", () => {
		expect(publishedPasswords()).toEqual(expect.arrayContaining(["REPLACE_ME", "local-only-admin-password", "dev-only-admin-password"]));
	});

	test.each(publishedPasswords().flatMap((p) => [p, p.toUpperCase(), ` ${p} `]))("%j stops the start, naming ADMIN_PASSWORD", (value) => {
		expect(() => production(value)).toThrow(/^ADMIN_PASSWORD is a placeholder/);
	});

	test("an operator's own password is taken; outside production the placeholders are too (local use)", () => {
		expect(production("violet-harbour-lantern-42").adminPassword).toBe("violet-harbour-lantern-42");
		expect(readConfig({ NODE_ENV: "development", ADMIN_PASSWORD: "local-only-admin-password" }).adminPassword).toBe("local-only-admin-password");
	});
});

describe("the settings the shop's own files and tools start it with are all taken", () => {
	test.each<[string, NodeJS.ProcessEnv]>([
		// Dockerfile + k8s base ConfigMap
		["the image on Kubernetes", {
			NODE_ENV: "production", PORT: "3000", METRICS_PORT: "3030", HEALTH_PORT: "3001", SHUTDOWN_TIMEOUT: "10000", RATE_LIMIT: "600", AUTH_RATE_LIMIT: "30",
			TRUST_PROXY: "1", SEED_DEMO: "false", TRANSPORTER: "nats://nats:4222", JWT_SECRET: "9f3c1e0b7a5d4c2e8f6a1b3d5c7e9f0a", ADMIN_EMAIL: "admin@example.com",
		}],
		// test/helpers/cluster.ts, a node without the gateway
		["a test cluster node", {
			NODE_ENV: "production", TRANSPORTER: "nats://127.0.0.1:4222", HEALTH_PORT: "40001", METRICS_PORT: "40002", PORT: "0", HEARTBEAT_INTERVAL: "1",
			HEARTBEAT_TIMEOUT: "4", REQUEST_TIMEOUT: "3000", JWT_SECRET: "cluster-test-secret-0123456789abcdef01234", SEED_DEMO: "false",
		}],
		// bench/lib/processes.ts + bench/run.ts
		["a benchmark node", {
			NODE_ENV: "production", RATE_LIMIT: "0", AUTH_RATE_LIMIT: "0", JWT_SECRET: "bench-secret-0123456789abcdef0123456789", PORT: "0", METRICS_ENABLED: "false",
			ADMIN_EMAIL: "bench-admin@example.com", ADMIN_PASSWORD: "bench admin passphrase", JWT_TTL: "7200",
		}],
	])("%s", (_what, env) => {
		expect(() => readConfig(env)).not.toThrow();
	});
});

describe("SERVICES", () => {
	test.each(["api", "users", "orders,payments,cart", " notifications , analytics,reviews ", "services/**", "dist/services/users.service.js"])("%j is taken", (SERVICES) => {
		expect(() => readConfig({ SERVICES })).not.toThrow();
	});

	test.each([["nope", "nope"], ["users,nope", "nope"], ["order,payments", "order"]])("%j stops the start naming SERVICES and %s", (SERVICES, wrong) => {
		expect(() => readConfig({ SERVICES })).toThrow(new RegExp(`^SERVICES must be a comma list of api, users, .* "${wrong}" is none of them`));
	});

	test("unset or empty: every service", () => {
		expect(readConfig({}).services).toBeUndefined();
		expect(readConfig({ SERVICES: "" }).services).toBeUndefined();
	});
});

describe("the k8s dev overlay", () => {
	const ROOT = path.join(__dirname, "../..");
	const read = (f: string) => fs.readFileSync(path.join(ROOT, f), "utf8");
	const literals = (f: string): Record<string, string> =>
		Object.fromEntries((YAML.parse(read(f)).configMapGenerator[0].literals as string[]).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
	/** What a dev overlay pod's process sees: the image's ENV, then the ConfigMap (base, overlay), then the Secret. */
	function devPodEnv(): NodeJS.ProcessEnv {
		const image = Object.fromEntries([...read("Dockerfile").matchAll(/^\s*(?:ENV\s+)?([A-Z_]+)=(\S+?)\s*\\?$/gm)].map((m) => [m[1], m[2]]));
		const secret = Object.fromEntries(Object.entries(YAML.parse(read("k8s/overlays/dev/secret.yaml")).stringData).filter(([, v]) => v !== null)) as Record<string, string>;
		return { ...image, ...literals("k8s/base/kustomization.yaml"), ...literals("k8s/overlays/dev/kustomization.yaml"), ...secret };
	}

	test("starts with its published secrets, in development mode", () => {
		const env = devPodEnv();
		expect(env).toMatchObject({ NODE_ENV: "development", TRANSPORTER: "nats://nats:4222", JWT_SECRET: "dev-only-jwt-secret-not-for-production" });
		expect(() => readConfig(env)).not.toThrow();
	});

	test("its secrets stop a production start: a copy of the overlay in production would sign with a published secret", () => {
		expect(() => readConfig({ ...devPodEnv(), NODE_ENV: "production" })).toThrow(/^JWT_SECRET is a placeholder/);
	});
});

describe("cents settings", () => {
	test.each([
		[undefined, 599, 599],
		["", 599, 599],
		["  ", 599, 599],
		["750", 599, 750],
		[" 750 ", 599, 750],
		["0", 599, 0],
	])("%p (default %i) → %i", (value, fallback, expected) => expect(wholeNumberSetting("SHIPPING_FLAT_CENTS", value, fallback, CENTS)).toBe(expected));

	// A price in units ("4.99") or a sign is a mistake the operator must hear of, not a silent 599.
	test.each(["4.99", "5.5", "-1", "abc", "1e3", "0x10", "+5", "99999999999999999999"])("%p stops the start, naming the variable", (value) => {
		expect(() => wholeNumberSetting("FREE_SHIPPING_THRESHOLD_CENTS", value, 5000, CENTS)).toThrow(/^FREE_SHIPPING_THRESHOLD_CENTS must be a whole number of cents/);
	});
});

describe("server addresses", () => {
	const URL_SETTINGS: [string, keyof ShopConfig][] = [["REDIS_URL", "redisUrl"], ["MONGO_URI", "mongoUri"], ["ELASTICSEARCH_URL", "elasticsearchUrl"], ["ZIPKIN_URL", "zipkinUrl"]];

	test.each(URL_SETTINGS)("%s: every value the deployment files and README publish is taken", (name, key) => {
		const published = publishedValues(name);
		expect(published.length).toBeGreaterThan(0);
		for (const value of published) expect(readConfig({ [name]: value })[key]).toBe(value);
	});

	test.each<[string, keyof ShopConfig, string]>([
		["REDIS_URL", "redisUrl", "rediss://:s3cret@cache.internal:6380/2"],
		["MONGO_URI", "mongoUri", "mongodb://shop:pw@db1:27017,db2:27017/shop?replicaSet=rs0"],
		["MONGO_URI", "mongoUri", "mongodb+srv://shop:pw@cluster0.example.net/shop"],
		["MONGO_URI", "mongoUri", "mongodb://shop:p%2Fw%40rd%3A1@db:27017/shop?authSource=admin"],
		["MONGO_URI", "mongoUri", "mongodb://db:27017/shop"],
		["ELASTICSEARCH_URL", "elasticsearchUrl", "https://elastic:pw@search.internal:9243"],
		["CACHER", "cacher", "REDIS://127.0.0.1:6379"],
	])("%s takes %j", (name, key, value) => {
		expect(readConfig({ [name]: ` ${value} ` })[key]).toBe(value);
	});

	test.each([
		["REDIS_URL", "junk", "a Redis URL"],
		["REDIS_URL", "localhost:6379", "a Redis URL"],
		["REDIS_URL", "http://localhost:6379", "a Redis URL"],
		["CACHER", "redis:/x", "Memory, or a Redis URL"],
		["MONGO_URI", "junk", "a MongoDB connection string"],
		["MONGO_URI", "postgres://db/shop", "a MongoDB connection string"],
		["ELASTICSEARCH_URL", "junk", "an http:// or https:// URL"],
		["ELASTICSEARCH_URL", "http://elastic search:9200", "an http:// or https:// URL"],
		["ELASTICSEARCH_URL", "localhost:9200", "an http:// or https:// URL"],
		["ZIPKIN_URL", "jaeger:9411", "an http:// or https:// URL"],
	])("%s=%j stops the start, naming the variable", (name, value, takes) => {
		expect(() => readConfig({ [name]: value })).toThrow(`${name} must be ${takes}`);
		expect(() => readConfig({ [name]: value })).toThrow(`not "${value}"`);
	});

	test.each([
		["MONGO_URI", "mongo://shop:hunter2@db/shop", "mongo://***@db/shop"],
		["REDIS_URL", "tcp://:hunter2@cache:6379", "tcp://***@cache:6379"],
		// Malformed as values are when refused: the scheme's slashes missing, no scheme, an unencoded @.
		["REDIS_URL", "redis//:hunter2@cache:6379", "***@cache:6379"],
		["REDIS_URL", ":hunter2@cache.internal:6379", "***@cache.internal:6379"],
		["MONGO_URI", "mongodb:/shop:hunter2@db:27017/shop", "***@db:27017/shop"],
		["MONGO_URI", "postgres://shop:hun@ter2@db/shop", "postgres://***@db/shop"],
		["ELASTICSEARCH_URL", "http//elastic:hunter2@es:9200", "***@es:9200"],
		// Well-formed schemes that do not parse: a # or / in an unencoded password, a port that is none.
		["REDIS_URL", "redis://:hunter2#x@cache:6379", "redis://***@cache:6379"],
		["REDIS_URL", "redis://:hunter2@cache:63a79", "redis://***@cache:63a79"],
		// MongoDB's driver wants : / ? # [ ] @ in credentials percent-encoded.
		["MONGO_URI", "mongodb://shop:hun/ter2@db:27017/shop", "mongodb://***@db:27017/shop"],
		["MONGO_URI", "mongodb://shop:hun:ter2@db1:27017,db2:27017/shop", "mongodb://***@db1:27017,db2:27017/shop"],
		["MONGO_URI", "mongodb+srv://shop:hunter2%zz@cluster0.example.net/shop", "mongodb+srv://***@cluster0.example.net/shop"],
		["CACHER", "rediss://:hunter2@cache:99999", "rediss://***@cache:99999"],
	])("%s=%j: the refusal shows %j, never the password", (name, value, shown) => {
		expect(() => readConfig({ [name]: value })).toThrow(`not "${shown}"`);
		try {
			readConfig({ [name]: value });
		} catch (err) {
			expect((err as Error).message).not.toMatch(/hunter2|ter2/);
		}
	});

	test("unset or blank: none (ZIPKIN_URL: the local collector)", () => {
		expect(readConfig({ REDIS_URL: " ", MONGO_URI: "", ELASTICSEARCH_URL: "" })).toMatchObject({ redisUrl: undefined, mongoUri: undefined, elasticsearchUrl: undefined });
		expect(readConfig({ ZIPKIN_URL: "" }).zipkinUrl).toBe("http://localhost:9411");
	});
});

describe("STRIPE_API_BASE (read when the payments service is created)", () => {
	test("an http(s) URL is where the Stripe SDK sends its calls", () => {
		expect(readPaymentsConfig({ STRIPE_API_BASE: "http://127.0.0.1:12111" }).stripeApi).toEqual({ host: "127.0.0.1", port: 12111, protocol: "http" });
		expect(readPaymentsConfig({ STRIPE_API_BASE: "https://stripe-proxy.internal" }).stripeApi).toEqual({ host: "stripe-proxy.internal", port: 443, protocol: "https" });
		expect(readPaymentsConfig({ STRIPE_API_BASE: " " }).stripeApi).toBeUndefined();
	});

	test.each(["junk", "127.0.0.1:12111", "ftp://files"])("%j stops the start, naming the variable", (value) => {
		expect(() => readPaymentsConfig({ STRIPE_API_BASE: value })).toThrow(`STRIPE_API_BASE must be an http:// or https:// URL (http://127.0.0.1:12111), not "${value}"`);
	});
});

test("CORS_ORIGINS takes whole origins of any scheme, with wildcards, ports and IPv6 hosts", () => {
	for (const value of ["*", "https://shop.example.com", "https://*.shop.example.com, http://localhost:3000", "capacitor://localhost", "http://[::1]:8080"]) {
		expect(readConfig({ CORS_ORIGINS: value }).corsOrigins).toBe(value);
	}
	for (const value of ["production", "development", "test"]) expect(readConfig({ NODE_ENV: value }).env).toBe(value);
	// Not a directory: the runner loaded nothing, and the node "started successfully" hosting nothing.
	expect(() => checkServiceDir("services")).not.toThrow();
	expect(() => checkServiceDir(undefined)).not.toThrow();
	for (const value of ["/nonexistent/services", "package.json"]) expect(() => checkServiceDir(value)).toThrow(new RegExp(`^SERVICEDIR must be a directory of service files .*not "${value}"$`));
});
