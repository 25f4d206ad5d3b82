/**
 * A Redis that cannot be reached (nothing listens on 127.0.0.1:1): the stores that use it answer a
 * 503 ServiceUnavailableError quickly, log the outage once, and the node's readiness says so; a
 * taken HEALTH_PORT or METRICS_PORT stops the node with a message naming the variable.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { ServiceBroker } from "moleculer";
import { isRedisUnavailable, redisOutages } from "../../adapters/redis-connection";
import { RedisRateLimitStore } from "../../adapters/rate-limit-store";
import { RedisCartStore } from "../../adapters/cart-store/redis-cart-store";
import { cacherLoginThrottleStore } from "../../adapters/login-throttle-store";
import { HealthProbeMiddleware, portProblem } from "../../mixins/health-probe.middleware";
import { ServiceUnavailableError } from "../../lib/errors";

const DEAD = "redis://127.0.0.1:1";

function recordingLogger() {
	const lines: string[] = [];
	return { lines, warn: (...a: unknown[]) => lines.push(`warn ${a.join(" ")}`), info: (...a: unknown[]) => lines.push(`info ${a.join(" ")}`) };
}

/** The error a promise rejects with, and how long that took. */
async function failure(p: Promise<unknown>): Promise<{ err: any; ms: number }> {
	const start = Date.now();
	try {
		await p;
	} catch (err) {
		return { err, ms: Date.now() - start };
	}
	throw new Error("expected a rejection");
}

function listeningServer(): Promise<http.Server> {
	return new Promise((resolve) => {
		const s = http.createServer();
		s.listen(0, "127.0.0.1", () => resolve(s));
	});
}

describe("isRedisUnavailable", () => {
	const named = (name: string, message = "x") => Object.assign(new Error(message), { name });
	test.each([
		["connection refused", Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }), true],
		["connection reset", Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }), true],
		["closed connection", new Error("Connection is closed."), true],
		["offline queue off", new Error("Stream isn't writeable and enableOfflineQueue options is false"), true],
		["command timeout", new Error("Command timed out"), true],
		["max retries", named("MaxRetriesPerRequestError", "Reached the max retries per request limit (which is 20)."), true],
		["loading", named("ReplyError", "LOADING Redis is loading the dataset in memory"), true],
		["busy script", named("ReplyError", "BUSY Redis is busy running a script."), true],
		["a script's bug", named("ReplyError", "ERR Error running script: attempt to compare nil with number"), false],
		["wrong type", named("ReplyError", "WRONGTYPE Operation against a key holding the wrong kind of value"), false],
		["a shop error", new ServiceUnavailableError(), false],
		["nothing", undefined, false],
	])("%s", (_what, err, expected) => {
		expect(isRedisUnavailable(err)).toBe(expected);
	});
});

describe("stores on a Redis that is down", () => {
	test("rate limits: a 503 within a second, at once after that, logged once, and reported until closed", async () => {
		const log = recordingLogger();
		const store = new RedisRateLimitStore(DEAD, "t:rl:", log);
		try {
			const first = await failure(store.hit("general:1.2.3.4", 60_000));
			expect(first.err).toBeInstanceOf(ServiceUnavailableError);
			expect(first.err.code).toBe(503);
			expect(first.ms).toBeLessThan(1500);
			for (let i = 0; i < 20; i++) {
				const next = await failure(store.hit("general:1.2.3.4", 60_000));
				expect(next.err.code).toBe(503);
				expect(next.ms).toBeLessThan(100);
			}
			expect(log.lines.filter((l) => l.startsWith("warn"))).toHaveLength(1);
			expect(log.lines[0]).toMatch(/Redis unavailable for rate limits/);
			expect(redisOutages()).toContain("rate limits");
		} finally {
			await store.close();
		}
		expect(redisOutages()).not.toContain("rate limits");
	});

	test("carts: reads and writes are a 503 within a second, not an ioredis error", async () => {
		const store = new RedisCartStore(DEAD, { logger: recordingLogger() });
		try {
			for (const op of [() => store.get("u:1"), () => store.addItem("u:1", { variantId: "v", quantity: 1, unitPrice: 100, currency: "USD" }, { maxQuantity: 99, available: 5, maxLines: 50 }), () => store.take("g:1")]) {
				const { err, ms } = await failure(op());
				expect(err).toBeInstanceOf(ServiceUnavailableError);
				expect(ms).toBeLessThan(1500);
			}
			expect(redisOutages()).toContain("carts");
		} finally {
			await store.close();
		}
	});

	test("the login throttle in the broker's Redis cacher fails closed with a 503 within a second (the cacher's client alone took ~10 s)", async () => {
		const broker = new ServiceBroker({ logger: false, cacher: { type: "Redis", options: { redis: DEAD as any } } });
		await broker.start();
		try {
			const store = cacherLoginThrottleStore(broker.cacher!);
			for (let i = 0; i < 3; i++) {
				const { err, ms } = await failure(store.countFailure("login-fail:a@b.c|1.2.3.4", Date.now()));
				expect(err).toBeInstanceOf(ServiceUnavailableError);
				expect(ms).toBeLessThan(1500);
			}
			const { err } = await failure(store.del("login-fail:a@b.c|1.2.3.4"));
			expect(err).toBeInstanceOf(ServiceUnavailableError);
		} finally {
			await broker.stop();
		}
	});
});

describe("the probe and metrics ports", () => {
	test("a Redis of the node down is reported as degraded; neither readiness nor liveness fails (every node shares it: all gateways out of the Service would close the shop)", async () => {
		const taken = await listeningServer();
		const port = (taken.address() as AddressInfo).port;
		await new Promise((r) => taken.close(r));
		const broker = new ServiceBroker({ logger: false, middlewares: [HealthProbeMiddleware(port, "127.0.0.1")] });
		await broker.start();
		expect((await fetch(`http://127.0.0.1:${port}/ready`)).status).toBe(200);
		expect((await fetch(`http://127.0.0.1:${port}/ready?probe=1`)).status).toBe(200);
		// Another path is no probe: a 404 that says so, not an "unavailable" that is ready.
		const other = await fetch(`http://127.0.0.1:${port}/healthz`);
		expect({ status: other.status, body: await other.json() }).toEqual({ status: 404, body: { status: "not_found", paths: ["/live", "/ready"] } });
		const store = new RedisRateLimitStore(DEAD, "t:rl:", recordingLogger());
		try {
			await failure(store.hit("k", 1000));
			const degraded = await fetch(`http://127.0.0.1:${port}/ready`);
			expect(degraded.status).toBe(200);
			expect(await degraded.json()).toMatchObject({ status: "ok", ready: true, reasons: [], degraded: ["redis: rate limits"] });
			expect((await fetch(`http://127.0.0.1:${port}/live`)).status).toBe(200);
		} finally {
			await store.close();
			await broker.stop();
		}
	});

	test("a taken HEALTH_PORT stops the start before any service starts, naming the variable and port", async () => {
		const taken = await listeningServer();
		const port = (taken.address() as AddressInfo).port;
		const started = jest.fn();
		const broker = new ServiceBroker({ logger: false, middlewares: [HealthProbeMiddleware(port, "127.0.0.1")] });
		broker.createService({ name: "seeder", started });
		try {
			await expect(broker.start()).rejects.toThrow(`HEALTH_PORT ${port} on 127.0.0.1 is already in use`);
			expect(started).not.toHaveBeenCalled();
		} finally {
			await broker.stop();
			await new Promise((r) => taken.close(r));
		}
	});

	test("a taken METRICS_PORT is a fatal error naming the variable and port, not an unhandled 'error' event", async () => {
		const taken = await listeningServer();
		const port = (taken.address() as AddressInfo).port;
		const exit = jest.spyOn(process, "exit").mockImplementation((() => undefined) as any);
		const fatal = jest.spyOn(ServiceBroker.prototype, "fatal");
		let broker: ServiceBroker | undefined;
		try {
			broker = new ServiceBroker({
				logger: false,
				metrics: { enabled: true, reporter: [{ type: "Prometheus", options: { port, host: "127.0.0.1" } }] },
				middlewares: [HealthProbeMiddleware(undefined)],
			});
			await new Promise((r) => setTimeout(r, 100));
			expect(fatal).toHaveBeenCalledWith(`METRICS_PORT ${port} on 127.0.0.1 is already in use: set METRICS_PORT to a free port, or stop the process that listens there.`, expect.anything(), true);
			expect(exit).toHaveBeenCalledWith(1);
		} finally {
			await broker?.stop();
			exit.mockRestore();
			fatal.mockRestore();
			await new Promise((r) => taken.close(r));
		}
	});

	test.each([
		["EADDRINUSE", /is already in use/],
		["EACCES", /above 1023/],
		["EOTHER", /cannot be opened/],
	])("portProblem %s", (code, message) => {
		expect(portProblem("HEALTH_PORT", 80, "0.0.0.0", Object.assign(new Error("boom"), { code }))).toMatch(message);
	});
});
