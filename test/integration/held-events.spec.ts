/**
 * Product views and cart additions (counted only, no outbox) emitted while no analytics node runs
 * are held in memory and counted once analytics is back, in the hour they happened.
 */
import type { ServiceSchema } from "moleculer";
import { startShopWithAdmin, loadService, type Shop } from "../helpers/shop";
import { createProduct } from "../helpers/flows";
import { waitFor } from "../helpers/wait";
import { HeldEventsMixin, MAX_HELD_EVENTS } from "../../mixins/held-events.mixin";

const ADMIN = { email: "admin@held.test", password: "admin-password-held-1" };

describe("counted-only events while no analytics node runs", () => {
	let shop: Shop;
	let admin: string;
	beforeAll(async () => {
		({ adminToken: admin, ...shop } = await startShopWithAdmin(ADMIN, { services: ["users", "products", "cart"] }));
	});
	afterAll(() => shop?.stop());

	const held = (name: string) => (shop.broker.getLocalService(name) as any).heldEvents.length;

	test("are held, then counted once analytics starts", async () => {
		const { product, variantId } = await createProduct(shop.http, admin, { price: 1200, stock: 10 });
		for (let i = 0; i < 3; i++) expect((await shop.http.get(`/api/products/${product.slug}`)).status).toBe(200);
		const guest = await shop.http.post("/api/cart/items", { variantId, quantity: 1 });
		expect(guest.status).toBe(201);
		expect((await shop.http.post("/api/cart/items", { variantId, quantity: 1 }, { headers: { "X-Cart-Id": guest.headers.get("x-cart-id")! } })).status).toBe(201);
		expect(held("products")).toBe(3);
		expect(held("cart")).toBe(2);

		shop.broker.createService(loadService("analytics"));
		await shop.broker.waitForServices("analytics", 10_000);
		await waitFor(async () => held("products") + held("cart"), (n) => n === 0);
		await shop.broker.call("analytics.flush");
		const from = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000).toISOString();
		const funnel = (await shop.http.get(`/api/analytics/funnel?from=${from}`, { token: admin })).body;
		expect(funnel).toMatchObject({ views: 3, addedToCart: 2 });

		// With a listener, the next ones go at once.
		expect((await shop.http.get(`/api/products/${product.slug}`)).status).toBe(200);
		expect(held("products")).toBe(0);
	});

	test(`at most ${MAX_HELD_EVENTS} are held: the oldest go first`, async () => {
		const svc: any = shop.broker.createService({ name: "held-probe", mixins: [HeldEventsMixin as Partial<ServiceSchema>] });
		await shop.broker.waitForServices("held-probe");
		try {
			for (let i = 0; i <= MAX_HELD_EVENTS; i++) await svc.emitCounted(null, "nobody.listens", { n: i });
			expect(svc.heldEvents).toHaveLength(MAX_HELD_EVENTS);
			expect(svc.heldEvents[0].payload).toMatchObject({ n: 1, occurredAt: expect.any(String) });
		} finally {
			await shop.broker.destroyService(svc);
		}
	});
});
