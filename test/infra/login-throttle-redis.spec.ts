/**
 * The login throttle on a real redis-server (`npm run test:infra` sets REDIS_URL): failures are
 * counted by one script, so parallel wrong guesses are all counted, on one node or several. With a
 * read and then a write, 8 guesses at once were all answered 401 and the right password then got in.
 */
import crypto from "node:crypto";
import Redis from "ioredis";
import { ServiceBroker } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { redisUrl } from "../helpers/cluster";
import { ShopRedisCacher } from "../../adapters/redis-cacher";
import { redisClientOptions } from "../../adapters/redis-connection";
import { cacherLoginThrottleStore } from "../../adapters/login-throttle-store";
import { LOGIN_THROTTLE, attemptWaitSeconds, throttleKey } from "../../lib/login-throttle";

jest.setTimeout(60_000);
// Fails loudly instead of silently testing the embedded store.
const url = redisUrl();

const PASSWORD = "velvet-otter-42";
const newEmail = () => `throttle-${crypto.randomBytes(6).toString("hex")}@example.com`;
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/** A broker of its own with the shop's Redis cacher, as another node would have. */
async function redisNode(): Promise<ServiceBroker> {
	const broker = new ServiceBroker({ logger: false, cacher: new ShopRedisCacher({ prefix: "shop-cache", ttl: 300, redis: redisClientOptions(url) as any }) });
	await broker.start();
	// Commands are not queued while the client connects (adapters/redis-connection.ts): wait for it.
	const client = (broker.cacher as any).client;
	if (client.status !== "ready") await new Promise((resolve) => client.once("ready", resolve));
	return broker;
}

describe("login throttle counted in Redis", () => {
	let shop: Shop;
	let redis: Redis;
	beforeAll(async () => {
		shop = await startShop({ services: ["users"] });
		redis = new Redis(url);
	});
	afterAll(async () => {
		await Promise.all([shop?.stop(), redis?.quit()]);
	});

	test("8 wrong guesses at once: 5 are checked (401), 3 refused (429), and the right password is refused too", async () => {
		expect(shop.broker.cacher).toBeInstanceOf(ShopRedisCacher);
		const email = newEmail();
		expect((await shop.http.post("/api/auth/register", { email, password: PASSWORD })).status).toBe(201);
		const guesses = await Promise.all(range(8).map((i) => shop.http.post("/api/auth/login", { email, password: `wrong-guess-${i}` })));
		const statuses = guesses.map((r) => r.status).sort();
		expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429, 429]);
		const locked = await shop.http.post("/api/auth/login", { email, password: PASSWORD });
		expect(locked.status).toBe(429);
		expect(Number(locked.headers.get("retry-after"))).toBeGreaterThan(14 * 60);

		// One counter, under the cacher's prefix, that Redis drops when the window ends.
		const keys = await redis.keys(`${(shop.broker.cacher as any).prefix}${throttleKey(email, "*")}`);
		expect(keys).toEqual([expect.stringMatching(/:count$/)]);
		const key = keys[0];
		expect(await redis.get(key)).toBe("9");
		const ttl = await redis.pttl(key);
		expect(ttl).toBeGreaterThan(14 * 60_000);
		expect(ttl).toBeLessThanOrEqual(LOGIN_THROTTLE.windowMs);
	});

	test("two nodes counting one key at once lose no count", async () => {
		const [a, b] = await Promise.all([redisNode(), redisNode()]);
		try {
			const key = throttleKey(newEmail(), "198.51.100.7");
			const stores = [cacherLoginThrottleStore(a.cacher!), cacherLoginThrottleStore(b.cacher!)];
			const now = Date.now();
			const counted = await Promise.all(range(30).map((i) => stores[i % 2].countFailure(key, now)));
			expect(counted.map((s) => s.count).sort((x, y) => x - y)).toEqual(range(30));
			expect(counted.filter((s) => attemptWaitSeconds(s, now) === 0)).toHaveLength(LOGIN_THROTTLE.maxFailures);
			// A success forgets the count for every node.
			await stores[0].del(key);
			expect((await stores[1].countFailure(key, Date.now())).count).toBe(1);
		} finally {
			await Promise.all([a.stop(), b.stop()]);
		}
	});

	test("an attempt taken back (refused as busy) leaves one count less, never below none, in the same window", async () => {
		const node = await redisNode();
		try {
			const store = cacherLoginThrottleStore(node.cacher!);
			const key = throttleKey(newEmail(), "198.51.100.9");
			const now = Date.now();
			for (const n of [1, 2, 3]) expect((await store.countFailure(key, now)).count).toBe(n);
			await store.uncountFailure(key, now);
			const next = await store.countFailure(key, now);
			expect(next.count).toBe(3);
			expect(now - next.since).toBeLessThan(5000);
			// A key with no count is not made one (nor a negative count).
			const other = throttleKey(newEmail(), "198.51.100.9");
			await store.uncountFailure(other, now);
			expect(await redis.exists(`shop-cache-${other}:count`)).toBe(0);
			expect((await store.countFailure(other, now)).count).toBe(1);
		} finally {
			await node.stop();
		}
	});

	test("when the window ends Redis drops the count, and the next failure opens a new window", async () => {
		const node = await redisNode();
		try {
			const policy = { maxFailures: 2, windowMs: 300 };
			const store = cacherLoginThrottleStore(node.cacher!, 1000, policy);
			const key = throttleKey(newEmail(), "198.51.100.8");
			const now = Date.now();
			for (const n of [1, 2, 3]) expect((await store.countFailure(key, now)).count).toBe(n);
			expect(attemptWaitSeconds(await store.countFailure(key, now), now, policy)).toBe(1);
			await new Promise((r) => setTimeout(r, 400));
			const later = Date.now();
			const fresh = await store.countFailure(key, later);
			expect(fresh.count).toBe(1);
			expect(attemptWaitSeconds(fresh, later, policy)).toBe(0);
		} finally {
			await node.stop();
		}
	});
});
