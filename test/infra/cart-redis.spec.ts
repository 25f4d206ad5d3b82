/**
 * The cart on a real redis-server (`npm run test:infra` sets REDIS_URL): the whole HTTP suite of
 * test/integration/cart.spec.ts again, then what only Redis gives: carts shared by several cart
 * service instances, under the documented keys with a 7-day TTL, and one checkout of a cart at a time
 * across instances (the claim under cart:{owner}:checkout).
 */
import crypto from "node:crypto";
import Redis from "ioredis";
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { redisUrl } from "../helpers/cluster";
import { HealthMixin } from "../../mixins/health.mixin";
import { CART_TTL_SECONDS } from "../../adapters/cart-store";
import type { CatalogVariant } from "../../lib/cart-pricing";
import { tokenFor } from "../integration/cart.spec";
import { FakeUsers } from "../helpers/fakes";

// Two brokers without a transporter cannot share a products service, so both get this one catalog
// (products.getVariants per docs/services.md); the point here is the shared cart store.
const catalog = new Map<string, CatalogVariant>();
const SharedProducts: ServiceSchema = {
	name: "products",
	mixins: [HealthMixin],
	actions: {
		getVariants: {
			params: { ids: { type: "array", items: "string" } },
			handler: (ctx: Context<{ ids: string[] }>) => ctx.params.ids.flatMap((id) => (catalog.has(id) ? [catalog.get(id)!] : [])),
		},
	},
};

function addVariant(over: Partial<CatalogVariant> = {}): CatalogVariant {
	const id = `var-${crypto.randomBytes(6).toString("hex")}`;
	const v: CatalogVariant = { id, productId: `prod-${id}`, sku: `SKU-${id}`, name: "Large", productName: "Tee", price: 1999, currency: "USD", stock: 50, isActive: true, image: null, ...over };
	catalog.set(id, v);
	return v;
}

jest.setTimeout(60_000);
// Fails loudly instead of silently testing the embedded store.
const url = redisUrl();

describe("cart service instances sharing Redis", () => {
	let one: Shop;
	let two: Shop;
	let redis: Redis;
	beforeAll(async () => {
		[one, two] = await Promise.all([startShop({ services: [FakeUsers, SharedProducts, "cart"] }), startShop({ services: [FakeUsers, SharedProducts, "cart"] })]);
		redis = new Redis(url);
	});
	afterAll(async () => {
		await Promise.all([one?.stop(), two?.stop(), redis?.quit()]);
	});

	test("a cart written through one instance is read through the other, under cart:{owner} with a 7-day TTL", async () => {
		const userId = `user-${crypto.randomBytes(6).toString("hex")}`;
		const token = tokenFor(userId);
		const tee = addVariant({ price: 1250 });
		expect((await one.http.post("/api/cart/items", { variantId: tee.id, quantity: 2 }, { token })).status).toBe(201);
		const seen = await two.http.get("/api/cart", { token });
		expect(seen.body).toMatchObject({ items: [{ variantId: tee.id, quantity: 2, lineTotal: 2500 }], subtotal: 2500 });

		const key = `cart:{u:${userId}}`;
		expect(await redis.hgetall(key)).toEqual({ [tee.id]: "2" });
		const ttl = await redis.ttl(key);
		expect(ttl).toBeGreaterThan(CART_TTL_SECONDS - 60);
		expect(ttl).toBeLessThanOrEqual(CART_TTL_SECONDS);
	});

	test("concurrent adds through both instances all count, and the stock limit holds across them", async () => {
		const token = tokenFor(`user-${crypto.randomBytes(6).toString("hex")}`);
		const tee = addVariant({ stock: 15 });
		const adds = Array.from({ length: 30 }, (_, i) => (i % 2 ? one : two).http.post("/api/cart/items", { variantId: tee.id, quantity: 1 }, { token }));
		const statuses = (await Promise.all(adds)).map((r) => r.status);
		expect(statuses.filter((s) => s === 201)).toHaveLength(15);
		expect(statuses.filter((s) => s === 409)).toHaveLength(15);
		expect((await one.http.get("/api/cart", { token })).body.items[0].quantity).toBe(15);
	});

	test("a guest cart is merged once even when two instances merge it at the same time", async () => {
		const userId = `user-${crypto.randomBytes(6).toString("hex")}`;
		const tee = addVariant();
		const guest = await one.http.post("/api/cart/items", { variantId: tee.id, quantity: 3 });
		const guestCartId = guest.headers.get("x-cart-id")!;
		await Promise.all([one.broker.call("cart.merge", { guestCartId, userId }), two.broker.call("cart.merge", { guestCartId, userId })]);
		expect((await two.http.get("/api/cart", { token: tokenFor(userId) })).body.items[0].quantity).toBe(3);
		expect(await redis.exists(`cart:{g:${guestCartId}}`)).toBe(0);
	});

	describe("checkout claims across instances", () => {
		/** A user with one line in the cart. */
		async function userWithCart() {
			const userId = `user-${crypto.randomBytes(6).toString("hex")}`;
			expect((await one.http.post("/api/cart/items", { variantId: addVariant().id, quantity: 1 }, { token: tokenFor(userId) })).status).toBe(201);
			return userId;
		}
		const claim = (shop: Shop, userId: string, orderId: string) => shop.broker.call<any, any>("cart.snapshot", { userId, claimFor: orderId });

		test("a claim through one instance refuses another order's through the other; the same order claims again", async () => {
			const userId = await userWithCart();
			const snap = await claim(one, userId, "order-1");
			expect(snap).toMatchObject({ version: 1, items: [{ quantity: 1 }] });
			await expect(claim(two, userId, "order-2")).rejects.toMatchObject({ code: 409, type: "CHECKOUT_IN_PROGRESS", message: "Another checkout of this cart is in progress" });
			expect(await claim(two, userId, "order-1")).toMatchObject({ version: 1 });
			expect(await redis.get(`cart:{u:${userId}}:checkout`)).toBe("order-1");
			const pttl = await redis.pttl(`cart:{u:${userId}}:checkout`);
			expect(pttl).toBeGreaterThan(0);
			expect(pttl).toBeLessThanOrEqual((one.broker.getLocalService("cart") as any).settings.checkoutLeaseMs);
		});

		test("concurrent claims through both instances: exactly one order holds the cart", async () => {
			const userId = await userWithCart();
			const claims = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => claim(i % 2 ? one : two, userId, `order-${i}`)));
			expect(claims.filter((c) => c.status === "fulfilled")).toHaveLength(1);
			expect(claims.filter((c) => c.status === "rejected" && (c.reason as any).type === "CHECKOUT_IN_PROGRESS")).toHaveLength(9);
		});

		test("only the holding order releases; clearing for it drops the claim with the cart, or alone when the cart changed", async () => {
			const userId = await userWithCart();
			const snap = await claim(one, userId, "order-1");
			expect(await two.broker.call("cart.releaseCheckout", { userId, orderId: "order-2" })).toEqual({ released: false });
			await expect(claim(two, userId, "order-2")).rejects.toMatchObject({ type: "CHECKOUT_IN_PROGRESS" });
			// The customer changed the cart meanwhile: it is kept, the claim goes all the same.
			expect((await two.http.post("/api/cart/items", { variantId: addVariant().id, quantity: 1 }, { token: tokenFor(userId) })).status).toBe(201);
			expect(await two.broker.call("cart.clear", { userId, version: snap.version, orderId: "order-1" })).toEqual({ cleared: false });
			expect(await redis.exists(`cart:{u:${userId}}:checkout`)).toBe(0);
			const next = await claim(one, userId, "order-2");
			expect(next.items).toHaveLength(2);
			expect(await one.broker.call("cart.clear", { userId, version: next.version, orderId: "order-2" })).toEqual({ cleared: true });
			expect(await redis.exists(`cart:{u:${userId}}:checkout`)).toBe(0);
			expect(await two.broker.call("cart.releaseCheckout", { userId, orderId: "order-2" })).toEqual({ released: false });
		});

		test("a claim ends by itself after its lease", async () => {
			const userId = await userWithCart();
			const cart = one.broker.getLocalService("cart") as any;
			const lease = cart.settings.checkoutLeaseMs;
			cart.settings.checkoutLeaseMs = 150;
			try {
				await claim(one, userId, "order-of-a-dead-node");
			} finally {
				cart.settings.checkoutLeaseMs = lease;
			}
			await expect(claim(two, userId, "order-2")).rejects.toMatchObject({ type: "CHECKOUT_IN_PROGRESS" });
			await new Promise((r) => setTimeout(r, 200));
			expect(await claim(two, userId, "order-2")).toMatchObject({ version: 1 });
		});
	});
});

// The full HTTP suite, now on Redis (registering its tests is what importing it does).
import "../integration/cart.spec";
