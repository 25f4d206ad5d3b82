/**
 * http_responses_total{code}: what customers got from the gateway, counted whatever failed behind it.
 * A route whose service has no node answers 503 without any call failing, which Moleculer's request
 * metrics (and the alerts on them) never saw.
 */
import { startShop, type Shop } from "../helpers/shop";

jest.setTimeout(30_000);

describe("gateway answers by status", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: ["users"], broker: { metrics: { enabled: true, reporter: [] } } });
	});
	afterAll(() => shop?.stop());

	const count = (code: string) => (shop.broker.metrics.getMetric("http_responses_total") as any)?.get({ code })?.value ?? 0;

	test("each answer is counted once under its status, an absent service's 503 too", async () => {
		const before = { ok: count("200"), unauthorized: count("401"), unavailable: count("503") };
		expect((await shop.http.get("/api/health")).status).toBe(200);
		expect((await shop.http.get("/api/health")).status).toBe(200);
		expect((await shop.http.get("/api/me")).status).toBe(401);
		// The orders service is not in this shop: a shop route without a node.
		expect((await shop.http.get("/api/orders")).status).toBe(503);
		// Counted when the connection's answer is done.
		await new Promise((r) => setTimeout(r, 50));
		expect({ ok: count("200"), unauthorized: count("401"), unavailable: count("503") }).toEqual({
			ok: before.ok + 2,
			unauthorized: before.unauthorized + 1,
			unavailable: before.unavailable + 1,
		});
		// Moleculer's request metrics: the 503 is no failed call at all.
		const errors = (shop.broker.metrics.getMetric("moleculer.request.error.total") as any)?.values ?? new Map();
		expect([...errors.values()].filter((item: any) => item.labels?.errorCode === 503)).toEqual([]);
	});
});
