/**
 * The gateway and the cart with their Redis down (nothing listens on 127.0.0.1:1): 503s, quickly,
 * where every request used to be a 500 after seconds; the general rate limit counts on the gateway
 * alone meanwhile, the auth routes' limit fails closed.
 */
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { FakeUsers } from "../helpers/fakes";

const DEAD = "redis://127.0.0.1:1";

// The users service as far as the auth bucket needs it: a route under /auth.
const LoginRoute: ServiceSchema = {
	...FakeUsers,
	actions: { ...FakeUsers.actions, login: { rest: "POST /auth/login", params: { email: "string" }, handler: (ctx: Context<{ email: string }>) => ({ email: ctx.params.email }) } },
	settings: { rest: "/" },
};

async function timed<T>(p: Promise<T>): Promise<T & { ms: number }> {
	const start = Date.now();
	const res = await p;
	return Object.assign(res as object, { ms: Date.now() - start }) as T & { ms: number };
}

describe("rate limits with their Redis down", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: [LoginRoute], apiSettings: { shopRateLimit: { windowMs: 60_000, general: 3, auth: 5, redisUrl: DEAD } } });
	});
	afterAll(() => shop?.stop());

	test("the general limit still answers, counted on this gateway: 200s, then 429 past the limit", async () => {
		const statuses: number[] = [];
		for (let i = 0; i < 4; i++) {
			const res = await timed(shop.http.get("/api/health"));
			expect(res.ms).toBeLessThan(1500);
			statuses.push(res.status);
		}
		expect(statuses).toEqual([200, 200, 200, 429]);
	});

	test("an auth route is a 503 SERVICE_UNAVAILABLE within a second, never a 500", async () => {
		const res = await timed(shop.http.post("/api/auth/login", { email: "a@b.c" }));
		expect(res.status).toBe(503);
		expect(res.body).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE" });
		expect(res.text).not.toMatch(/at .*\.js|ioredis/);
		expect(res.ms).toBeLessThan(1500);
	});
});

describe("the cart with its Redis down", () => {
	let shop: Shop;
	const saved = process.env.REDIS_URL;
	beforeAll(async () => {
		process.env.REDIS_URL = DEAD;
		// The broker's cacher stays in memory: this is about the cart store.
		shop = await startShop({ services: [FakeUsers, "cart"], broker: { cacher: "Memory" }, apiSettings: { shopRateLimit: { windowMs: 60_000, general: 0, auth: 0 } } });
	});
	afterAll(async () => {
		await shop?.stop();
		if (saved === undefined) delete process.env.REDIS_URL;
		else process.env.REDIS_URL = saved;
	});

	test("GET /api/cart answers 503 within a second, every time", async () => {
		for (let i = 0; i < 3; i++) {
			const res = await timed(shop.http.get("/api/cart", { headers: { "x-cart-id": "c".repeat(32) } }));
			expect(res.status).toBe(503);
			expect(res.body).toMatchObject({ type: "SERVICE_UNAVAILABLE", message: "Redis unavailable (carts), try again" });
			expect(res.ms).toBeLessThan(1500);
		}
	});
});
