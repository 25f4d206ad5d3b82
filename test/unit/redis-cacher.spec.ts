/** The Redis cacher through an outage: a failed write is no crash, and the cache is cleaned when Redis is back. */
import { EventEmitter } from "node:events";
import { Cachers } from "moleculer";
import { ShopRedisCacher } from "../../adapters/redis-cacher";

function cacherWith(client: any) {
	const cacher = new ShopRedisCacher({ prefix: "t-cache", ttl: 60, redis: {} as any }) as any;
	const logs: string[] = [];
	cacher.client = client;
	cacher.prefix = "t-cache-";
	cacher.serializer = { serialize: (x: unknown) => JSON.stringify(x) };
	cacher.metrics = { increment() {}, timer: () => () => {} };
	cacher.logger = { debug() {}, error() {}, info: (m: string) => logs.push(`info ${m}`), warn: (m: string) => logs.push(`warn ${m}`) };
	return { cacher, logs };
}

describe("ShopRedisCacher", () => {
	test("a write Redis refuses resolves (never an unhandled rejection), logged once per outage", async () => {
		const { cacher, logs } = cacherWith({ set: () => Promise.reject(new Error("Connection is closed.")) });
		await expect(cacher.set("k", { a: 1 }, 10)).resolves.toBeUndefined();
		await expect(cacher.set("k2", { a: 2 })).resolves.toBeUndefined();
		expect(logs.filter((l) => l.startsWith("warn"))).toHaveLength(1);
		expect(logs[0]).toMatch(/not cached while Redis is unavailable \(Connection is closed\.\)/);
	});

	test("a write that works is passed through", async () => {
		const { cacher } = cacherWith({ set: (...args: unknown[]) => Promise.resolve(args) });
		expect(await cacher.set("k", 1, 10)).toEqual(["t-cache-k", "1", "EX", 10]);
	});

	test("a clean or delete while not connected (down, or not yet connected at start) is no error, and leaves a full clean for when Redis is back", async () => {
		const client = Object.assign(new EventEmitter(), { status: "connecting" });
		const { cacher } = cacherWith(client);
		cacher.connected = false;
		await expect(cacher.clean("products.**")).resolves.toBeUndefined();
		await expect(cacher.del("users.checkSession:s1")).resolves.toBeUndefined();
		expect(cacher.hadOutage).toBe(true);
		// Connected, a failure is the caller's (a 503), as the stale entry could be read.
		Object.assign(client, { status: "ready", del: () => Promise.reject(new Error("Command timed out")) });
		cacher.connected = true;
		await expect(cacher.del("users.checkSession:s1")).rejects.toThrow("Command timed out");
	});

	test("a clean that fails while connected is the caller's error, and is tried again in the background until it works", async () => {
		jest.useFakeTimers();
		try {
			let fails = 2;
			const ran: string[] = [];
			const client = Object.assign(new EventEmitter(), { status: "ready" });
			const { cacher, logs } = cacherWith(client);
			cacher.connected = true;
			const clean = jest.spyOn(Cachers.Redis.prototype, "clean").mockImplementation((match: any) => {
				ran.push(String(match));
				return fails-- > 0 ? Promise.reject(new Error("Command timed out")) : Promise.resolve();
			});
			await expect(cacher.clean("products.**")).rejects.toThrow("Command timed out");
			expect(ran).toEqual(["products.**"]);
			await jest.advanceTimersByTimeAsync(1000);
			expect(ran).toHaveLength(2);
			await jest.advanceTimersByTimeAsync(2000);
			expect(ran).toEqual(["products.**", "products.**", "products.**"]);
			expect(logs).toContain("info Redis cacher: the cache clean or delete that had failed is done.");
			await jest.advanceTimersByTimeAsync(60_000);
			expect(ran).toHaveLength(3);
			clean.mockRestore();
		} finally {
			jest.useRealTimers();
		}
	});

	test("back after an outage, the whole cache is cleaned, once", async () => {
		const client = new EventEmitter();
		const { cacher } = cacherWith(client);
		const cleaned: unknown[] = [];
		cacher.clean = (...args: unknown[]) => (cleaned.push(args), Promise.resolve());
		// Moleculer's own init would make a client: ours is given.
		const init = jest.spyOn(Cachers.Redis.prototype, "init").mockImplementation(function (this: any, broker: any) {
			this.broker = broker;
		});
		cacher.init({ broadcastLocal() {} });
		init.mockRestore();
		client.emit("ready");
		expect(cleaned).toHaveLength(0);
		client.emit("error", new Error("ECONNREFUSED"));
		client.emit("ready");
		client.emit("ready");
		expect(cleaned).toHaveLength(1);
	});

	test("an outage is logged once when it begins, however many reconnect attempts fail, in place of Moleculer's error per attempt", () => {
		const client = new EventEmitter();
		const { cacher, logs } = cacherWith(client);
		const moleculerLogged: unknown[] = [];
		const announced: unknown[] = [];
		// What Moleculer's init does: its own listener, which logged each error with its stack.
		const init = jest.spyOn(Cachers.Redis.prototype, "init").mockImplementation(function (this: any, broker: any) {
			this.broker = broker;
			client.on("error", (err) => moleculerLogged.push(err));
		});
		cacher.init({ broadcastLocal: (name: string) => announced.push(name) });
		init.mockRestore();
		for (let i = 0; i < 5; i++) client.emit("error", new Error("connect ECONNREFUSED"));
		expect(moleculerLogged).toEqual([]);
		expect(logs.filter((l) => l.startsWith("warn"))).toEqual(["warn Redis cacher unavailable (connect ECONNREFUSED): requests go uncached until it is back."]);
		expect(cacher.connected).toBe(false);
		expect(announced).toEqual(Array(5).fill("$cacher.error"));
		// Back, then down again: a new outage, said again.
		cacher.clean = () => Promise.resolve();
		client.emit("ready");
		client.emit("error", new Error("connect ECONNREFUSED"));
		expect(logs.filter((l) => l.startsWith("warn Redis cacher unavailable"))).toHaveLength(2);
	});

	test("stopping while Redis is down disconnects rather than quitting (which failed, logged as an error)", async () => {
		const client = Object.assign(new EventEmitter(), { status: "reconnecting", quit: jest.fn(() => Promise.reject(new Error("Stream isn't writeable"))), disconnect: jest.fn() });
		const { cacher } = cacherWith(client);
		await expect(cacher.close()).resolves.toBeUndefined();
		expect(client.disconnect).toHaveBeenCalled();
		expect(client.quit).not.toHaveBeenCalled();
	});
});
