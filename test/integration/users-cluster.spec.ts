/**
 * Two users nodes, each with its own memory cacher: a session revoked on one node disappears from
 * the other node's session cache too (the revocation is broadcast to the users group).
 */
import type { BrokerOptions } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { verifyAccessToken } from "../../lib/jwt";

const cacheKey = (shop: Shop, sid: string) =>
	shop.broker.cacher!.getCacheKey({ name: "users.checkSession" } as any, { keys: ["sid"] }, { params: { sid }, meta: {} } as any);

async function eventually(check: () => Promise<boolean>, timeoutMs = 3000) {
	const end = Date.now() + timeoutMs;
	while (Date.now() < end) {
		if (await check()) return true;
		await new Promise((r) => setTimeout(r, 25));
	}
	return check();
}

jest.setTimeout(20_000);

describe("session cache across users nodes", () => {
	let a: Shop;
	let b: Shop;
	beforeAll(async () => {
		const broker = { transporter: "Fake", namespace: `users-cluster-${process.pid}` } as Partial<BrokerOptions>;
		a = await startShop({ services: ["users"], broker });
		b = await startShop({ services: ["users"], broker, noGateway: true });
		// Node A must know node B's users service before it broadcasts to it.
		const seen = (shop: Shop, other: Shop) => () =>
			Promise.resolve((shop.broker.registry.getServiceList({ onlyAvailable: true }) as any[]).some((s) => s.name === "users" && s.nodeID === other.broker.nodeID));
		expect(await eventually(seen(a, b), 10_000)).toBe(true);
		expect(await eventually(seen(b, a), 10_000)).toBe(true);
	}, 30_000);
	afterAll(async () => {
		await b?.stop();
		await a?.stop();
	});

	test("logout on node A drops the cached session on node B", async () => {
		expect(b.broker.cacher?.constructor.name).toMatch(/Memory/);
		const reg = await a.http.post("/api/auth/register", { email: `cluster-${Date.now()}@example.com`, password: "velvet-otter-42" });
		expect(reg.status).toBe(201);
		const { sid } = verifyAccessToken(reg.body.accessToken);
		// As if node B had answered (and cached) this session's check a moment ago.
		await b.broker.cacher!.set(cacheKey(b, sid), { active: true }, 60);
		await b.broker.cacher!.set(cacheKey(b, "someone-else"), { active: true }, 60);
		expect(await b.broker.cacher!.get(cacheKey(b, sid))).toEqual({ active: true });

		expect((await a.http.post("/api/auth/logout", {}, { token: reg.body.accessToken })).status).toBe(204);
		expect(await eventually(async () => (await b.broker.cacher!.get(cacheKey(b, sid))) == null)).toBe(true);
		// Only that session is forgotten.
		expect(await b.broker.cacher!.get(cacheKey(b, "someone-else"))).toEqual({ active: true });
	});

	test("the cache key is the one the cacher middleware uses for checkSession", async () => {
		const sid = "probe-session";
		await b.broker.call("users.checkSession", { sid }, { nodeID: b.broker.nodeID });
		expect(await b.broker.cacher!.get(cacheKey(b, sid))).toEqual({ active: false });
	});
});
