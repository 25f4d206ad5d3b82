/**
 * moleculer-runner overwrites options named like a set environment variable with its raw value; the
 * shop's config must survive that (METRICS_ENABLED=off stays off, CACHER=Memory stays bounded).
 */
import path from "node:path";
import { withEnv } from "../helpers/env";
import { ShopRedisCacher } from "../../adapters/redis-cacher";

// Not among the package's exports: loaded by its path.
const MoleculerRunner = require(path.resolve(__dirname, "../../node_modules/moleculer/src/runner.js"));

/** The config as moleculer-runner ends up with it: the module loaded, then the runner's env overwrite. */
function asTheRunnerSeesIt(env: Record<string, string | undefined>) {
	return withEnv({ NODE_ENV: "production", JWT_SECRET: "runner-env-spec-9f2c4e7a1b3d5f60718293a4b5c6d7e8", ...env }, () => {
		let config: any;
		jest.isolateModules(() => {
			config = require("../../moleculer.config").default;
		});
		return new MoleculerRunner().overwriteFromEnv(config);
	});
}

describe("the config under moleculer-runner's environment overwrite", () => {
	test.each(["off", "no", "false", "0"])("METRICS_ENABLED=%s keeps metrics off", (value) => {
		expect(asTheRunnerSeesIt({ METRICS_ENABLED: value }).metrics.enabled).toBe(false);
	});

	test("METRICS_ENABLED=on keeps metrics on", () => {
		expect(asTheRunnerSeesIt({ METRICS_ENABLED: "on" }).metrics.enabled).toBe(true);
	});

	test("CACHER=Memory keeps the bounded, expiring cache", () => {
		expect(asTheRunnerSeesIt({ CACHER: "Memory", REDIS_URL: "redis://127.0.0.1:1" }).cacher).toEqual({ type: "MemoryLRU", options: { max: 10_000, ttl: 300 } });
	});

	test("CACHER=redis://... keeps its prefix, TTL and fail-fast client options", () => {
		const { cacher } = asTheRunnerSeesIt({ CACHER: "redis://127.0.0.1:6390", NAMESPACE: "eu" });
		// Loaded in its own module registry: the class is told by name.
		expect(cacher.constructor.name).toBe(ShopRedisCacher.name);
		expect(cacher.opts).toMatchObject({ prefix: "eu-cache", ttl: 300, redis: { host: "127.0.0.1", enableOfflineQueue: false, commandTimeout: 1000 } });
		expect(Number(cacher.opts.redis.port)).toBe(6390);
	});

	test("CACHER=rediss://... (TLS, as managed Redis serves it) is the Redis cacher over TLS, not the memory one", () => {
		const { cacher } = asTheRunnerSeesIt({ CACHER: "rediss://127.0.0.1:6390" });
		expect(cacher.constructor.name).toBe(ShopRedisCacher.name);
		expect(cacher.opts.redis).toMatchObject({ host: "127.0.0.1", tls: {} });
		// The scheme in capitals too: a TLS URL never connects in clear text.
		expect(asTheRunnerSeesIt({ CACHER: "REDISS://127.0.0.1:6390" }).cacher.opts.redis).toMatchObject({ host: "127.0.0.1", tls: {} });
	});

	test("LOGLEVEL in any case is the level, in the logger and as the runner hands it on", () => {
		const config = asTheRunnerSeesIt({ LOGLEVEL: "WARN" });
		expect(config.logLevel).toBe("warn");
		expect(config.logger.options.level).toBe("warn");
	});

	test("TRANSPORTER and NAMESPACE are the same raw either way", () => {
		expect(asTheRunnerSeesIt({ TRANSPORTER: "nats://127.0.0.1:4222", NAMESPACE: "eu" })).toMatchObject({ transporter: "nats://127.0.0.1:4222", namespace: "eu" });
	});
});
