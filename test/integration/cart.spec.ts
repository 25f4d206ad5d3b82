/**
 * The cart and promotion routes of API.md over HTTP, and the cart's internal actions through the
 * broker. The store is the embedded one, or Redis when REDIS_URL is set: test/infra/cart-redis.spec.ts
 * imports this file to run the same suite under `npm run test:infra` against a real redis-server.
 * The catalog is the real products service, driven by an admin over its routes.
 */
import crypto from "node:crypto";
import SwaggerParser from "@apidevtools/swagger-parser";
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { FakeUsers, fakeToken } from "../helpers/fakes";
import { waitFor } from "../helpers/wait";

// The analytics side of cart.item_added.
const itemAddedEvents: any[] = [];
const EventProbe: ServiceSchema = {
	name: "eventProbe",
	events: { "cart.item_added"(ctx: Context<any>) { itemAddedEvents.push(ctx.params); } },
};

const newUser = () => `user-${crypto.randomBytes(6).toString("hex")}`;
export const tokenFor = (userId: string, role: "customer" | "admin" = "customer") => fakeToken(userId, role);

describe(`cart over HTTP (${process.env.REDIS_URL ? "Redis" : "embedded"} store)`, () => {
	let shop: Shop;
	const admin = tokenFor("admin-1", "admin");

	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, "products", EventProbe, "cart"] });
	});
	afterAll(() => shop.stop());

	/** A fresh customer with its own token and helpers. */
	function customer() {
		const id = newUser();
		const token = tokenFor(id);
		return {
			id,
			token,
			get: () => shop.http.get("/api/cart", { token }),
			add: (variantId: unknown, quantity: unknown) => shop.http.post("/api/cart/items", { variantId, quantity }, { token }),
			set: (variantId: string, quantity: unknown) => shop.http.patch(`/api/cart/items/${variantId}`, { quantity }, { token }),
			remove: (variantId: string) => shop.http.delete(`/api/cart/items/${variantId}`, { token }),
			applyPromo: (code: string) => shop.http.post("/api/cart/promo", { code }, { token }),
		};
	}

	async function createPromotion(body: Record<string, unknown>) {
		const res = await shop.http.post("/api/promotions", { code: `P${crypto.randomBytes(4).toString("hex")}`, ...body }, { token: admin });
		expect(res.status).toBe(201);
		return res.body;
	}

	/** A code that has run out of time: created live (a new code cannot expire in the past), then expired by an admin. */
	async function expiredPromotion() {
		const p = await createPromotion({ type: "percent", value: 10, expiresAt: new Date(Date.now() + 60_000).toISOString() });
		const expired = await shop.http.patch(`/api/promotions/${p.code}`, { expiresAt: new Date(Date.now() - 1000).toISOString() }, { token: admin });
		expect(expired.status).toBe(200);
		return expired.body;
	}

	interface TestVariant {
		id: string;
		productId: string;
		sku: string;
		stock: number;
	}

	/** A product with `count` variants (all at `price`, with `stock` each), created by the admin. */
	async function addVariants(count: number, over: { price?: number; stock?: number; productName?: string; name?: string } = {}): Promise<TestVariant[]> {
		const tag = crypto.randomBytes(5).toString("hex");
		const variants = Array.from({ length: count }, (_, i) => ({ sku: `SKU-${tag}-${i}`, name: over.name ?? (count > 1 ? `Size ${i}` : "Large"), stock: over.stock ?? 50 }));
		const res = await shop.http.post("/api/products", { name: over.productName ?? "Tee", slug: `tee-${tag}`, price: over.price ?? 1999, currency: "USD", variants }, { token: admin });
		expect(res.status).toBe(201);
		return res.body.variants.map((v: any) => ({ id: v.id, productId: res.body.id, sku: v.sku, stock: v.stock }));
	}
	const addVariant = async (over: Parameters<typeof addVariants>[1] = {}) => (await addVariants(1, over))[0];

	async function setPrice(v: TestVariant, price: number) {
		expect((await shop.http.patch(`/api/products/${v.productId}/variants/${v.id}`, { price }, { token: admin })).status).toBe(200);
	}
	async function setStock(v: TestVariant, stock: number) {
		expect((await shop.http.post(`/api/inventory/${v.id}/adjust`, { delta: stock - v.stock, reason: "count" }, { token: admin })).status).toBe(200);
		v.stock = stock;
	}
	async function archive(v: TestVariant) {
		expect((await shop.http.delete(`/api/products/${v.productId}`, { token: admin })).status).toBe(200);
	}

	describe("lines", () => {
		test("add, add again, update, remove, clear", async () => {
			const c = customer();
			const tee = await addVariant({ price: 1999, stock: 20 });
			const mug = await addVariant({ price: 850, productName: "Mug", name: "White" });

			const added = await c.add(tee.id, 2);
			expect(added.status).toBe(201);
			expect(added.body).toEqual({
				items: [expect.objectContaining({ variantId: tee.id, productId: tee.productId, name: "Tee", variantName: "Large", unitPrice: 1999, quantity: 2, lineTotal: 3998, archived: false, priceChanged: false, insufficientStock: false })],
				subtotal: 3998,
				discount: 0,
				total: 3998,
				// Below the free-shipping threshold (50.00): the flat rate, as the checkout will charge.
				shipping: 599,
				checkoutTotal: 4597,
				currency: "USD",
				promoCode: null,
				promoProblem: null,
			});

			expect((await c.add(tee.id, 1)).body.items[0].quantity).toBe(3);
			const two = await c.add(mug.id, 4);
			expect(two.body.subtotal).toBe(3 * 1999 + 4 * 850);

			const updated = await c.set(tee.id, 5);
			expect(updated.status).toBe(200);
			expect(updated.body.items.find((i: any) => i.variantId === tee.id)).toMatchObject({ quantity: 5, lineTotal: 5 * 1999 });

			const zero = await c.set(mug.id, 0);
			expect(zero.status).toBe(200);
			expect(zero.body.items.map((i: any) => i.variantId)).toEqual([tee.id]);

			const removed = await c.remove(tee.id);
			expect(removed.status).toBe(200);
			expect(removed.body).toMatchObject({ items: [], subtotal: 0, total: 0, shipping: 0, checkoutTotal: 0 });

			await c.add(mug.id, 1);
			const cleared = await shop.http.delete("/api/cart", { token: c.token });
			expect(cleared.status).toBe(204);
			expect((await c.get()).body.items).toEqual([]);
		});

		test("adding a line asks the catalog for each variant once", async () => {
			const c = customer();
			const [tee, mug] = [await addVariant(), await addVariant({ productName: "Mug" })];
			await c.add(mug.id, 1);
			const call = jest.spyOn(shop.broker, "call");
			try {
				expect((await c.add(tee.id, 1)).body.items).toHaveLength(2);
				const asked = call.mock.calls.filter(([action]) => action === "products.getVariants").map(([, params]) => (params as any).ids);
				// The added variant to check it, then only the other line's to price the cart.
				expect(asked).toEqual([[tee.id], [mug.id]]);
			} finally {
				call.mockRestore();
			}
		});

		test("422 on quantity 0, 100, 1.5, \"abc\" or missing, naming the field", async () => {
			const c = customer();
			const tee = await addVariant();
			for (const quantity of [0, 100, 1.5, "abc", "2", -1, null, undefined]) {
				const res = await c.add(tee.id, quantity);
				expect(res.status).toBe(422);
				expect(res.body.data.map((d: any) => d.field)).toContain("quantity");
			}
			await c.add(tee.id, 1);
			for (const quantity of [100, 1.5, "abc", -1]) expect((await c.set(tee.id, quantity)).status).toBe(422);
			expect((await c.add(42, 1)).status).toBe(422);
			expect((await c.get()).body.items[0].quantity).toBe(1);
		});

		test("a line holds at most 99 units in total", async () => {
			const c = customer();
			const tee = await addVariant({ stock: 500 });
			expect((await c.add(tee.id, 99)).status).toBe(201);
			const over = await c.add(tee.id, 1);
			expect(over.status).toBe(422);
			expect(over.body.data[0].field).toBe("quantity");
		});

		test("404 for an unknown or archived variant, and for updating a line not in the cart", async () => {
			const c = customer();
			const res = await c.add("no-such-variant", 1);
			expect(res.status).toBe(404);
			expect(res.body.code).toBe(404);
			const archived = await addVariant();
			await archive(archived);
			expect((await c.add(archived.id, 1)).status).toBe(404);
			const tee = await addVariant();
			expect((await c.set(tee.id, 2)).status).toBe(404);
			expect((await c.get()).body.items).toEqual([]);
		});

		test("409 when the cart would hold more than the stock", async () => {
			const c = customer();
			const tee = await addVariant({ stock: 3 });
			const tooMany = await c.add(tee.id, 4);
			expect(tooMany.status).toBe(409);
			expect(tooMany.body).toMatchObject({ type: "INSUFFICIENT_STOCK", data: { variantId: tee.id, requested: 4, available: 3 } });
			expect((await c.add(tee.id, 2)).status).toBe(201);
			const past = await c.add(tee.id, 2);
			expect(past.status).toBe(409);
			expect(past.body.data).toMatchObject({ requested: 4, available: 3 });
			expect((await c.set(tee.id, 4)).status).toBe(409);
			expect((await c.set(tee.id, 3)).status).toBe(200);
			expect((await c.get()).body.items[0].quantity).toBe(3);
		});

		test("409 CART_FULL for a 101st line", async () => {
			const c = customer();
			const variants = await addVariants(101, { price: 100 });
			for (const v of variants.slice(0, 100)) expect((await c.add(v.id, 1)).status).toBe(201);
			const full = await c.add(variants[100].id, 1);
			expect(full.status).toBe(409);
			expect(full.body.type).toBe("CART_FULL");
			// Lines already in the cart can still change.
			expect((await c.add(variants[0].id, 1)).status).toBe(201);
			const cart = (await c.get()).body;
			expect(cart.items).toHaveLength(100);
			expect(cart.subtotal).toBe(101 * 100);
		});

		test("two concurrent adds of 1 give 2 (and twenty give twenty)", async () => {
			const c = customer();
			const tee = await addVariant();
			const pair = await Promise.all([c.add(tee.id, 1), c.add(tee.id, 1)]);
			expect(pair.map((r) => r.status)).toEqual([201, 201]);
			expect((await c.get()).body.items[0].quantity).toBe(2);
			const mug = await addVariant();
			await Promise.all(Array.from({ length: 20 }, () => c.add(mug.id, 1)));
			expect((await c.get()).body.items.find((i: any) => i.variantId === mug.id).quantity).toBe(20);
		});

		test("prices come from the catalog now; price changes and archived products are flagged", async () => {
			const c = customer();
			const tee = await addVariant({ price: 1000 });
			const mug = await addVariant({ price: 500 });
			const low = await addVariant({ price: 300, stock: 5 });
			await c.add(tee.id, 2);
			await c.add(mug.id, 1);
			await c.add(low.id, 5);
			await setPrice(tee, 1200);
			await archive(mug);
			await setStock(low, 2);
			const cart = (await c.get()).body;
			const byId = Object.fromEntries(cart.items.map((i: any) => [i.variantId, i]));
			expect(byId[tee.id]).toMatchObject({ unitPrice: 1200, lineTotal: 2400, priceChanged: true, previousUnitPrice: 1000 });
			expect(byId[mug.id]).toMatchObject({ archived: true });
			expect(byId[low.id]).toMatchObject({ insufficientStock: true, stock: 2 });
			// The archived line is shown but not charged.
			expect(cart.subtotal).toBe(2400 + 1500);
			expect(Number.isInteger(cart.total)).toBe(true);
		});

		test("the client cannot send prices", async () => {
			const c = customer();
			const tee = await addVariant({ price: 1999 });
			const res = await shop.http.post("/api/cart/items", { variantId: tee.id, quantity: 1, unitPrice: 1, price: 1 }, { token: c.token });
			expect(res.status).toBe(201);
			expect(res.body.items[0].unitPrice).toBe(1999);
		});

		test("cart.item_added carries ids and the quantity, and not the guest's cart id", async () => {
			const c = customer();
			const tee = await addVariant();
			await c.add(tee.id, 3);
			const guest = await shop.http.post("/api/cart/items", { variantId: tee.id, quantity: 1 });
			const cartId = guest.headers.get("x-cart-id")!;
			await new Promise((r) => setTimeout(r, 50));
			const mine = itemAddedEvents.filter((e) => e.variantId === tee.id);
			expect(mine).toEqual([
				{ userId: c.id, cartId: expect.any(String), variantId: tee.id, productId: tee.productId, quantity: 3, eventId: expect.any(String) },
				{ cartId: expect.any(String), variantId: tee.id, productId: tee.productId, quantity: 1, eventId: expect.any(String) },
			]);
			expect(mine[1].cartId).not.toBe(cartId);
			expect(mine[0].eventId).not.toBe(mine[1].eventId);
		});
	});

	describe("guests and owners", () => {
		/** 18 random bytes and the shop's MAC of them (lib/cart-id.ts). */
		const ISSUED_CART_ID = /^[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{16}$/;
		test("a guest gets an unguessable X-Cart-Id and keeps its cart with it", async () => {
			const tee = await addVariant();
			const first = await shop.http.post("/api/cart/items", { variantId: tee.id, quantity: 2 });
			expect(first.status).toBe(201);
			const cartId = first.headers.get("x-cart-id")!;
			expect(cartId).toMatch(ISSUED_CART_ID);
			const again = await shop.http.get("/api/cart", { headers: { "X-Cart-Id": cartId } });
			expect(again.body.items[0]).toMatchObject({ variantId: tee.id, quantity: 2 });
			expect(again.headers.get("x-cart-id")).toBe(cartId);
			// Without the header there is another, empty cart with another id.
			const other = await shop.http.get("/api/cart");
			expect(other.body.items).toEqual([]);
			expect(other.headers.get("x-cart-id")).not.toBe(cartId);
			// A malformed id, or one of the client's own choosing, is replaced, never used.
			for (const chosen of ["../../etc", "AAAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAA"]) {
				const planted = await shop.http.post("/api/cart/items", { variantId: tee.id, quantity: 1 }, { headers: { "X-Cart-Id": chosen } });
				expect(planted.headers.get("x-cart-id")).toMatch(ISSUED_CART_ID);
				expect(planted.headers.get("x-cart-id")).not.toBe(chosen);
				expect((await shop.http.get("/api/cart", { headers: { "X-Cart-Id": chosen } })).body.items).toEqual([]);
			}
			// Guests update and clear with the header too.
			expect((await shop.http.patch(`/api/cart/items/${tee.id}`, { quantity: 5 }, { headers: { "X-Cart-Id": cartId } })).body.items[0].quantity).toBe(5);
			expect((await shop.http.delete("/api/cart", { headers: { "X-Cart-Id": cartId } })).status).toBe(204);
			expect((await shop.http.get("/api/cart", { headers: { "X-Cart-Id": cartId } })).body.items).toEqual([]);
			// A guest without a cart has nothing to empty: no cart is made for it (each was stored for 7 days).
			for (const headers of [{}, { "X-Cart-Id": "AAAAAAAAAAAAAAAAAAAAAAAA" }] as Array<Record<string, string>>) {
				const none = await shop.http.delete("/api/cart", { headers });
				expect({ status: none.status, cartId: none.headers.get("x-cart-id") }).toEqual({ status: 204, cartId: null });
			}
		});

		test("user A's cart is never visible to user B, nor to a guest naming A's id", async () => {
			const a = customer();
			const b = customer();
			const tee = await addVariant();
			await a.add(tee.id, 4);
			expect((await b.get()).body.items).toEqual([]);
			// B's writes land in B's cart only.
			expect((await b.set(tee.id, 1)).status).toBe(404);
			await b.remove(tee.id);
			await shop.http.delete("/api/cart", { token: b.token });
			expect((await a.get()).body.items[0].quantity).toBe(4);
			// A guest header equal to A's user id (or a logged-in user's guest header) names no user cart.
			const guest = await shop.http.get("/api/cart", { headers: { "X-Cart-Id": `${a.id}-padded-to-be-valid` } });
			expect(guest.body.items).toEqual([]);
			const sneaky = await shop.http.get("/api/cart", { headers: { "X-Cart-Id": a.id.padEnd(24, "x") } });
			expect(sneaky.body.items).toEqual([]);
			const bWithHeader = await shop.http.get("/api/cart", { token: b.token, headers: { "X-Cart-Id": a.id.padEnd(24, "x") } });
			expect(bWithHeader.body.items).toEqual([]);
			expect(bWithHeader.headers.get("x-cart-id")).toBeNull();
		});

		test("merge: the guest cart joins the user's, summed and capped by stock, and is gone after; a line sold out or archived meanwhile comes along flagged", async () => {
			const user = customer();
			const tee = await addVariant({ stock: 6 });
			const mug = await addVariant({ stock: 10 });
			const gone = await addVariant();
			const soldOut = await addVariant({ stock: 3 });
			await user.add(tee.id, 3);
			await user.add(soldOut.id, 1);
			const g1 = await shop.http.post("/api/cart/items", { variantId: tee.id, quantity: 5 });
			const cartId = g1.headers.get("x-cart-id")!;
			const headers = { "X-Cart-Id": cartId };
			await shop.http.post("/api/cart/items", { variantId: mug.id, quantity: 2 }, { headers });
			await shop.http.post("/api/cart/items", { variantId: gone.id, quantity: 1 }, { headers });
			await shop.http.post("/api/cart/items", { variantId: soldOut.id, quantity: 2 }, { headers });
			await archive(gone);
			expect((await shop.http.post(`/api/inventory/${soldOut.id}/adjust`, { delta: -3, reason: "sold elsewhere" }, { token: admin })).status).toBe(200);

			const res = await shop.broker.call<{ merged: number }, any>("cart.merge", { guestCartId: cartId, userId: user.id });
			expect(res.merged).toBe(4);
			const cart = (await user.get()).body;
			expect(cart.items.map((i: any) => [i.variantId, i.quantity, i.archived, i.insufficientStock])).toEqual([
				[tee.id, 6, false, false],
				[soldOut.id, 3, false, true],
				[mug.id, 2, false, false],
				[gone.id, 1, true, false],
			]);
			expect((await shop.http.get("/api/cart", { headers })).body.items).toEqual([]);
			// Merging again (a second login) adds nothing.
			expect(await shop.broker.call("cart.merge", { guestCartId: cartId, userId: user.id })).toEqual({ merged: 0 });
			expect(await shop.broker.call("cart.merge", { guestCartId: "not a cart id", userId: user.id })).toEqual({ merged: 0 });
		});

		test("merge into a full cart keeps every guest line (past 100 lines); the cart then takes no new line", async () => {
			const user = customer();
			const variants = await addVariants(103, { price: 100 });
			for (const v of variants.slice(0, 100)) expect((await user.add(v.id, 1)).status).toBe(201);
			const g = await shop.http.post("/api/cart/items", { variantId: variants[100].id, quantity: 1 });
			const headers = { "X-Cart-Id": g.headers.get("x-cart-id")! };
			await shop.http.post("/api/cart/items", { variantId: variants[101].id, quantity: 2 }, { headers });
			await shop.http.post("/api/cart/items", { variantId: variants[0].id, quantity: 3 }, { headers });
			await shop.broker.call("cart.merge", { guestCartId: headers["X-Cart-Id"], userId: user.id });
			const cart = (await user.get()).body;
			expect(cart.items).toHaveLength(102);
			expect(cart.items.find((i: any) => i.variantId === variants[101].id)).toMatchObject({ quantity: 2 });
			expect(cart.items.find((i: any) => i.variantId === variants[0].id)).toMatchObject({ quantity: 4 });
			expect((await user.add(variants[102].id, 1)).body.type).toBe("CART_FULL");
		});

		test("merge into a cart at the merge limit (200 lines): the guest lines that do not fit stay in the guest cart, none dropped", async () => {
			const user = customer();
			// A product holds at most 200 variants: two products.
			const variants = [...(await addVariants(150, { price: 100 })), ...(await addVariants(53, { price: 100 }))];
			// 100 lines added, 100 more merged from a first guest cart.
			for (const v of variants.slice(0, 100)) expect((await user.add(v.id, 1)).status).toBe(201);
			const first = await shop.http.post("/api/cart/items", { variantId: variants[100].id, quantity: 1 });
			const firstHeaders = { "X-Cart-Id": first.headers.get("x-cart-id")! };
			for (const v of variants.slice(101, 200)) await shop.http.post("/api/cart/items", { variantId: v.id, quantity: 1 }, { headers: firstHeaders });
			await shop.broker.call("cart.merge", { guestCartId: firstHeaders["X-Cart-Id"], userId: user.id });
			expect((await user.get()).body.items).toHaveLength(200);
			// A second guest cart: one line the user has (summed), three new ones (no room).
			const g = await shop.http.post("/api/cart/items", { variantId: variants[200].id, quantity: 1 });
			const headers = { "X-Cart-Id": g.headers.get("x-cart-id")! };
			for (const v of [variants[201], variants[202]]) await shop.http.post("/api/cart/items", { variantId: v.id, quantity: 2 }, { headers });
			await shop.http.post("/api/cart/items", { variantId: variants[0].id, quantity: 4 }, { headers });
			expect(await shop.broker.call("cart.merge", { guestCartId: headers["X-Cart-Id"], userId: user.id })).toEqual({ merged: 1, keptInGuestCart: 3 });
			const cart = (await user.get()).body;
			expect(cart.items).toHaveLength(200);
			expect(cart.items.find((i: any) => i.variantId === variants[0].id)).toMatchObject({ quantity: 5 });
			const guest = (await shop.http.get("/api/cart", { headers })).body;
			expect(guest.items.map((i: any) => [i.variantId, i.quantity]).sort()).toEqual([[variants[200].id, 1], [variants[201].id, 2], [variants[202].id, 2]].sort());
		}, 30_000);

		test("two concurrent merges of one guest cart add it once", async () => {
			const user = customer();
			const tee = await addVariant();
			const g = await shop.http.post("/api/cart/items", { variantId: tee.id, quantity: 2 });
			const guestCartId = g.headers.get("x-cart-id")!;
			await Promise.all([shop.broker.call("cart.merge", { guestCartId, userId: user.id }), shop.broker.call("cart.merge", { guestCartId, userId: user.id })]);
			expect((await user.get()).body.items[0].quantity).toBe(2);
		});
	});

	describe("promotions", () => {
		test("only admins create promotions; codes are unique, case-insensitive, and validated", async () => {
			const c = customer();
			const body = { code: `sale${crypto.randomBytes(3).toString("hex")}`, type: "percent", value: 10 };
			expect((await shop.http.post("/api/promotions", body)).status).toBe(401);
			expect((await shop.http.post("/api/promotions", body, { token: c.token })).status).toBe(403);
			const created = await shop.http.post("/api/promotions", { ...body, expiresAt: "2099-01-01T00:00:00Z", maxUses: 3 }, { token: admin });
			expect(created.status).toBe(201);
			expect(created.body).toMatchObject({ id: expect.any(String), code: body.code.toUpperCase(), type: "percent", value: 10, minSubtotal: 0, maxUses: 3, usedCount: 0, active: true, expiresAt: "2099-01-01T00:00:00.000Z" });
			expect((await shop.http.post("/api/promotions", { ...body, code: body.code.toUpperCase() }, { token: admin })).status).toBe(409);
			for (const bad of [
				{ ...body, value: 150 },
				{ ...body, type: "bogo" },
				{ ...body, value: 1.5 },
				{ ...body, code: "x" },
				{ ...body, expiresAt: "not a date" },
				{ ...body, expiresAt: 12345 },
				{ ...body, expiresAt: 4102444800000 }, // 2100 as epoch milliseconds: not the ISO 8601 the contract names
				{ ...body, expiresAt: "2099-02-30T00:00:00Z" }, // was stored as March 2nd
				{ ...body, expiresAt: new Date(Date.now() - 1000).toISOString() },
				{ ...body, maxUses: 0 },
			]) {
				const res = await shop.http.post("/api/promotions", { ...bad, code: bad.code === "x" ? "x" : `B${crypto.randomBytes(4).toString("hex")}` }, { token: admin });
				expect({ bad, status: res.status }).toEqual({ bad, status: 422 });
			}
		});

		test("percent and fixed discounts; the discount never exceeds the subtotal", async () => {
			const c = customer();
			const tee = await addVariant({ price: 1005 });
			await c.add(tee.id, 2);
			const percent = await createPromotion({ type: "percent", value: 15 });
			const applied = await c.applyPromo(percent.code.toLowerCase());
			expect(applied.status).toBe(200);
			expect(applied.body).toMatchObject({ subtotal: 2010, discount: 302, total: 1708, promoCode: percent.code });

			const fixed = await createPromotion({ type: "fixed", value: 500 });
			expect((await c.applyPromo(fixed.code)).body).toMatchObject({ subtotal: 2010, discount: 500, total: 1510, promoCode: fixed.code });

			const huge = await createPromotion({ type: "fixed", value: 1_000_000 });
			// Goods a code made free still travel.
			expect((await c.applyPromo(huge.code)).body).toMatchObject({ discount: 2010, total: 0, shipping: 599, checkoutTotal: 599 });

			const removed = await shop.http.delete("/api/cart/promo", { token: c.token });
			expect(removed.body).toMatchObject({ discount: 0, total: 2010, promoCode: null });
		});

		test("422 with the reason: unknown, expired, exhausted, inactive, below the minimum", async () => {
			const c = customer();
			const tee = await addVariant({ price: 1000 });
			await c.add(tee.id, 2);
			const reasonOf = async (code: string) => {
				const res = await c.applyPromo(code);
				expect(res.status).toBe(422);
				expect(res.body.data[0].field).toBe("code");
				return res.body.data[0].type;
			};
			expect(await reasonOf("NOSUCHCODE")).toBe("unknown");
			expect(await reasonOf((await expiredPromotion()).code)).toBe("expired");
			expect(await reasonOf((await createPromotion({ type: "percent", value: 10, active: false })).code)).toBe("inactive");
			const min = await createPromotion({ type: "fixed", value: 500, minSubtotal: 5000 });
			expect(await reasonOf(min.code)).toBe("below_minimum");
			const once = await createPromotion({ type: "percent", value: 10, maxUses: 1 });
			await shop.broker.call("cart.consumePromo", { code: once.code, orderId: "order-elsewhere" });
			expect(await reasonOf(once.code)).toBe("exhausted");
			expect((await c.get()).body.promoCode).toBeNull();

			// Reaching the minimum makes it apply; dropping below it again keeps the code without a discount.
			await c.set(tee.id, 5);
			expect((await c.applyPromo(min.code)).body).toMatchObject({ subtotal: 5000, discount: 500 });
			const below = await c.set(tee.id, 4);
			expect(below.body).toMatchObject({ subtotal: 4000, discount: 0, total: 4000, promoCode: min.code, promoProblem: { reason: "below_minimum" } });
		});

		test("guests cannot apply codes (401)", async () => {
			const p = await createPromotion({ type: "percent", value: 10 });
			expect((await shop.http.post("/api/cart/promo", { code: p.code })).status).toBe(401);
			expect((await shop.http.delete("/api/cart/promo")).status).toBe(401);
		});

		test("20 concurrent paid orders on a code with maxUses 5: exactly 5 get it", async () => {
			const p = await createPromotion({ type: "percent", value: 20, maxUses: 5 });
			const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => shop.broker.call("cart.consumePromo", { code: p.code, orderId: `order-${p.code}-${i}` })));
			expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(5);
			const rejected = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
			expect(rejected).toHaveLength(15);
			for (const r of rejected) expect(r.reason).toMatchObject({ code: 422, data: [{ field: "code", type: "exhausted" }] });
			const view = await shop.http.get(`/api/promotions/${p.code}`, { token: admin });
			expect(view.body.usedCount).toBe(5);
		});

		test("consuming is idempotent per order, even concurrently; releasing gives the use back once", async () => {
			const usedCount = async (code: string) => (await shop.http.get(`/api/promotions/${code}`, { token: admin })).body.usedCount;
			// The last use, claimed by ten concurrent calls of one order: all succeed, it counts once.
			const last = await createPromotion({ type: "fixed", value: 100, maxUses: 1 });
			const same = await Promise.all(Array.from({ length: 10 }, () => shop.broker.call("cart.consumePromo", { code: last.code, orderId: "order-1" })));
			expect(same).toEqual(Array(10).fill({ consumed: true, code: last.code }));
			expect(await usedCount(last.code)).toBe(1);

			// Duplicates of one order racing other orders for 3 uses: 3 orders win, each counted once,
			// and the duplicates of order-1 all share one outcome.
			const p = await createPromotion({ type: "fixed", value: 100, maxUses: 3 });
			const calls = [...Array(8).fill("order-1"), ...Array.from({ length: 8 }, (_, i) => `order-x${i}`)].map((orderId) =>
				shop.broker.call("cart.consumePromo", { code: p.code, orderId }).then(() => orderId, () => null),
			);
			const winners = (await Promise.all(calls)).filter((o): o is string => o !== null);
			expect([0, 8]).toContain(winners.filter((o) => o === "order-1").length);
			expect(new Set(winners).size).toBe(3);
			expect(await usedCount(p.code)).toBe(3);

			const releases = await Promise.all([1, 2, 3].map(() => shop.broker.call("cart.releasePromo", { code: p.code.toLowerCase(), orderId: winners[0] })));
			expect(releases.filter((r: any) => r.released)).toHaveLength(1);
			expect(await usedCount(p.code)).toBe(2);
			// The use given back is available again.
			expect(await shop.broker.call("cart.consumePromo", { code: p.code, orderId: "order-2" })).toEqual({ consumed: true, code: p.code });
			expect(await usedCount(p.code)).toBe(3);
			expect(await shop.broker.call("cart.releasePromo", { code: "NOSUCHCODE", orderId: "order-1" })).toEqual({ released: false });
		});

		test("admins list promotions, newest first, with their use counts; active= filters; others get 403", async () => {
			const older = await createPromotion({ type: "fixed", value: 100, maxUses: 5 });
			await new Promise((r) => setTimeout(r, 5));
			const newer = await createPromotion({ type: "percent", value: 10, active: false });
			await shop.broker.call("cart.consumePromo", { code: older.code, orderId: "listed-order" });
			const page = (await shop.http.get("/api/promotions?pageSize=100", { token: admin })).body;
			expect(page).toMatchObject({ page: 1, pageSize: 100, total: expect.any(Number) });
			const codes = page.rows.map((p: any) => p.code);
			expect(codes.indexOf(newer.code)).toBeLessThan(codes.indexOf(older.code));
			expect(page.rows.find((p: any) => p.code === older.code)).toMatchObject({ usedCount: 1, maxUses: 5, active: true });
			const inactive = (await shop.http.get("/api/promotions?active=false&pageSize=100", { token: admin })).body.rows;
			expect(inactive.map((p: any) => p.code)).toContain(newer.code);
			expect(inactive.every((p: any) => p.active === false)).toBe(true);
			expect((await shop.http.get("/api/promotions", { token: customer().token })).status).toBe(403);
			const bad = await shop.http.get("/api/promotions?pageSize=0", { token: admin });
			expect(bad.status).toBe(422);
			expect(bad.body.data[0].field).toBe("pageSize");
		});

		describe("use slots: one write to take a use, one to give it back", () => {
			const cartDb = () => (shop.broker.getLocalService("cart") as any).db;
			const usedCount = async (code: string) => (await shop.http.get(`/api/promotions/${code}`, { token: admin })).body.usedCount;
			const counter = async (id: string) => (await cartDb().promotions.findOne({ id })).usedCount;

			test("a release that comes before its consume (the consume's answer was lost) refuses that consume later", async () => {
				const p = await createPromotion({ type: "fixed", value: 100, maxUses: 1 });
				expect(await shop.broker.call("cart.releasePromo", { code: p.code, orderId: "late-order" })).toEqual({ released: false });
				await expect(shop.broker.call("cart.consumePromo", { code: p.code, orderId: "late-order" })).rejects.toMatchObject({ code: 409, type: "PROMO_RELEASED" });
				// The one use is still there for another order, and a second release changes nothing.
				expect(await shop.broker.call("cart.releasePromo", { code: p.code, orderId: "late-order" })).toEqual({ released: false });
				expect(await shop.broker.call("cart.consumePromo", { code: p.code, orderId: "other-order" })).toEqual({ consumed: true, code: p.code });
				expect(await usedCount(p.code)).toBe(1);
			});

			test("an order whose use was given back cannot take one again", async () => {
				const p = await createPromotion({ type: "fixed", value: 100, maxUses: 2 });
				await shop.broker.call("cart.consumePromo", { code: p.code, orderId: "o-1" });
				expect(await shop.broker.call("cart.releasePromo", { code: p.code, orderId: "o-1" })).toEqual({ released: true });
				await expect(shop.broker.call("cart.consumePromo", { code: p.code, orderId: "o-1" })).rejects.toMatchObject({ code: 409, type: "PROMO_RELEASED" });
				expect(await usedCount(p.code)).toBe(0);
				// Its slot is free for other orders.
				for (const orderId of ["o-2", "o-3"]) expect(await shop.broker.call("cart.consumePromo", { code: p.code, orderId })).toEqual({ consumed: true, code: p.code });
			});

			test("a counter left low by a crash (use recorded, counter not moved) does not let a code be used past its limit", async () => {
				const p = await createPromotion({ type: "fixed", value: 100, maxUses: 2 });
				for (const orderId of ["o-1", "o-2"]) await shop.broker.call("cart.consumePromo", { code: p.code, orderId });
				await cartDb().promotions.updateOne({ id: p.id }, { $set: { usedCount: 0 } });
				await expect(shop.broker.call("cart.consumePromo", { code: p.code, orderId: "o-3" })).rejects.toMatchObject({ code: 422, data: [{ field: "code", type: "exhausted" }] });
				expect(await usedCount(p.code)).toBe(2);
				// The admin's look, which counts the slots, put the counter right.
				expect(await counter(p.id)).toBe(2);
				// A use given back is found again though the counter points past it.
				await shop.broker.call("cart.releasePromo", { code: p.code, orderId: "o-1" });
				expect(await shop.broker.call("cart.consumePromo", { code: p.code, orderId: "o-3" })).toEqual({ consumed: true, code: p.code });
				expect((await cartDb().promotion_slots.find({ promotionId: p.id, released: { $exists: false } })).map((u: any) => u.slot).sort()).toEqual([0, 1]);
			});

			test("a counter left high by a crash (use removed, counter not moved) is counted again and put right when it would refuse a free use", async () => {
				const p = await createPromotion({ type: "percent", value: 10, maxUses: 2 });
				await shop.broker.call("cart.consumePromo", { code: p.code, orderId: "o-1" });
				await cartDb().promotions.updateOne({ id: p.id }, { $set: { usedCount: 2 } });
				const c = customer();
				const tee = await addVariant({ price: 1000 });
				await c.add(tee.id, 1);
				const applied = await c.applyPromo(p.code);
				expect(applied.status).toBe(200);
				expect(applied.body).toMatchObject({ promoCode: p.code, discount: 100 });
				expect(await counter(p.id)).toBe(1);
				expect(await shop.broker.call("cart.consumePromo", { code: p.code, orderId: "o-2" })).toEqual({ consumed: true, code: p.code });
				expect(await usedCount(p.code)).toBe(2);
			});

			test("a single process puts counters left off by a crash right once its services have started", async () => {
				const low = await createPromotion({ type: "fixed", value: 100, maxUses: 3 });
				const high = await createPromotion({ type: "fixed", value: 100 });
				const right = await createPromotion({ type: "fixed", value: 100, maxUses: 2 });
				for (const p of [low, high, right]) await shop.broker.call("cart.consumePromo", { code: p.code, orderId: "o-1" });
				await cartDb().promotions.updateOne({ id: low.id }, { $set: { usedCount: 0 } });
				await cartDb().promotions.updateOne({ id: high.id }, { $set: { usedCount: 2 } });
				const updates = jest.spyOn(cartDb().promotions, "updateOne");
				try {
					// What the broker of a restarted single process announces once its services have started.
					shop.broker.broadcastLocal("$broker.started");
					await waitFor(() => counter(low.id), (n) => n === 1);
					await waitFor(() => counter(high.id), (n) => n === 1);
					// Of these three, only the two that were off are written.
					const ours = [low.id, high.id, right.id];
					expect(updates.mock.calls.filter(([query]) => ours.includes((query as { id: string }).id)).map(([query]) => (query as { id: string }).id).sort()).toEqual([low.id, high.id].sort());
				} finally {
					updates.mockRestore();
				}
				expect(await counter(right.id)).toBe(1);
			});

			test("carts holding a used-up code count its slots once per counter value, not on every view", async () => {
				const p = await createPromotion({ type: "percent", value: 10, maxUses: 1 });
				const c = customer();
				await c.add((await addVariant({ price: 1000 })).id, 1);
				expect((await c.applyPromo(p.code)).status).toBe(200);
				await shop.broker.call("cart.consumePromo", { code: p.code, orderId: "o-1" });
				const count = jest.spyOn(cartDb().promotion_slots, "count");
				try {
					for (let i = 0; i < 3; i++) expect((await c.get()).body.promoProblem).toMatchObject({ reason: "exhausted" });
					expect(count).toHaveBeenCalledTimes(1);
					// The use given back moves the counter: the code applies again at once.
					await shop.broker.call("cart.releasePromo", { code: p.code, orderId: "o-1" });
					expect((await c.get()).body).toMatchObject({ discount: 100, promoProblem: null });
				} finally {
					count.mockRestore();
				}
			});

			test("the once-per-counter-value count holds when the limit was lowered below the uses and the counter lags", async () => {
				const p = await createPromotion({ type: "percent", value: 10, maxUses: 3 });
				const c = customer();
				await c.add((await addVariant({ price: 1000 })).id, 1);
				expect((await c.applyPromo(p.code)).status).toBe(200);
				for (const orderId of ["o-1", "o-2"]) await shop.broker.call("cart.consumePromo", { code: p.code, orderId });
				// Below the held uses: the admin route refuses it, a limit lowered while checkouts ran can leave it.
				await cartDb().promotions.updateOne({ id: p.id }, { $set: { maxUses: 1, usedCount: 1 } });
				const count = jest.spyOn(cartDb().promotion_slots, "count");
				try {
					for (let i = 0; i < 3; i++) expect((await c.get()).body.promoProblem).toMatchObject({ reason: "exhausted" });
					expect(count).toHaveBeenCalledTimes(1);
				} finally {
					count.mockRestore();
				}
			});

			test("a lowered limit counts the uses held in slots past it: no more uses than the new limit", async () => {
				const p = await createPromotion({ type: "fixed", value: 100, maxUses: 5 });
				for (let i = 0; i < 5; i++) await shop.broker.call("cart.consumePromo", { code: p.code, orderId: `o-${i}` });
				// Slots 0-2 given back; 3 and 4 still held.
				for (let i = 0; i < 3; i++) await shop.broker.call("cart.releasePromo", { code: p.code, orderId: `o-${i}` });
				const lowered = await shop.http.patch(`/api/promotions/${p.code}`, { maxUses: 3 }, { token: admin });
				expect(lowered.status).toBe(200);
				expect(lowered.body).toMatchObject({ maxUses: 3, usedCount: 2 });
				expect(await shop.broker.call("cart.consumePromo", { code: p.code, orderId: "new-1" })).toEqual({ consumed: true, code: p.code });
				await expect(shop.broker.call("cart.consumePromo", { code: p.code, orderId: "new-2" })).rejects.toMatchObject({ code: 422, data: [{ field: "code", type: "exhausted" }] });
				expect(await usedCount(p.code)).toBe(3);
				expect((await cartDb().promotion_slots.find({ promotionId: p.id, released: { $exists: false } })).map((u: any) => u.slot).sort()).toEqual([0, 1, 2]);
			});

			test("a limit given to an unlimited code counts its uses so far, and cannot go below them", async () => {
				const p = await createPromotion({ type: "fixed", value: 100 });
				for (let i = 0; i < 3; i++) await shop.broker.call("cart.consumePromo", { code: p.code, orderId: `o-${i}` });
				const below = await shop.http.patch(`/api/promotions/${p.code}`, { maxUses: 2 }, { token: admin });
				expect(below.status).toBe(409);
				expect(below.body).toMatchObject({ type: "PROMO_LIMIT_BELOW_USES", data: { maxUses: 2, held: 3 } });
				expect((await shop.http.get(`/api/promotions/${p.code}`, { token: admin })).body).toMatchObject({ maxUses: null });
				expect((await shop.http.patch(`/api/promotions/${p.code}`, { maxUses: 4 }, { token: admin })).status).toBe(200);
				expect(await shop.broker.call("cart.consumePromo", { code: p.code, orderId: "o-3" })).toEqual({ consumed: true, code: p.code });
				await expect(shop.broker.call("cart.consumePromo", { code: p.code, orderId: "o-4" })).rejects.toMatchObject({ code: 422, data: [{ field: "code", type: "exhausted" }] });
				expect(await usedCount(p.code)).toBe(4);
			});

			test("uses taken by checkouts that read the old limit while it was lowered: past the new limit, the old one stands and the admin gets the 409", async () => {
				const p = await createPromotion({ type: "fixed", value: 100, maxUses: 5 });
				for (let i = 0; i < 5; i++) await shop.broker.call("cart.consumePromo", { code: p.code, orderId: `o-${i}` });
				for (let i = 0; i < 3; i++) await shop.broker.call("cart.releasePromo", { code: p.code, orderId: `o-${i}` });
				const cart = shop.broker.getLocalService("cart") as any;
				const packSlots = cart.packSlots;
				// Two checkouts that read the limit of 5 take slots 0 and 1 (valid under both) as the new limit is written.
				cart.packSlots = async (...args: unknown[]) => {
					for (const [slot, orderId] of [[0, "late-a"], [1, "late-b"]] as const) await cartDb().promotion_slots.insert({ promotionId: p.id, orderId, code: p.code, slot, createdAt: new Date() });
					return packSlots.apply(cart, args);
				};
				try {
					const lowered = await shop.http.patch(`/api/promotions/${p.code}`, { maxUses: 3 }, { token: admin });
					expect(lowered.status).toBe(409);
					expect(lowered.body).toMatchObject({ type: "PROMO_LIMIT_BELOW_USES", data: { maxUses: 3, held: 4 } });
				} finally {
					cart.packSlots = packSlots;
				}
				expect((await shop.http.get(`/api/promotions/${p.code}`, { token: admin })).body).toMatchObject({ maxUses: 5 });
			});

			test("a use taken under a limit lowered meanwhile is taken back when it does not fit the new one", async () => {
				const p = await createPromotion({ type: "fixed", value: 100, maxUses: 5 });
				for (const orderId of ["o-1", "o-2"]) await shop.broker.call("cart.consumePromo", { code: p.code, orderId });
				const cart = shop.broker.getLocalService("cart") as any;
				const freeSlot = cart.freeSlot;
				let lowered = false;
				// The admin lowers the limit to the uses held while this consume has picked its slot under the old one.
				cart.freeSlot = async (...args: unknown[]) => {
					const slot = await freeSlot.apply(cart, args);
					if (!lowered) {
						lowered = true;
						expect((await shop.http.patch(`/api/promotions/${p.code}`, { maxUses: 2 }, { token: admin })).status).toBe(200);
					}
					return slot;
				};
				try {
					await expect(shop.broker.call("cart.consumePromo", { code: p.code, orderId: "o-3" })).rejects.toMatchObject({ code: 422, data: [{ field: "code", type: "exhausted" }] });
				} finally {
					cart.freeSlot = freeSlot;
				}
				expect(lowered).toBe(true);
				expect(await usedCount(p.code)).toBe(2);
			});

			test("an unlimited code takes one use per order, and gives it back once", async () => {
				const p = await createPromotion({ type: "fixed", value: 100 });
				const orders = Array.from({ length: 6 }, (_, i) => `u-${i}`);
				await Promise.all([...orders, ...orders].map((orderId) => shop.broker.call("cart.consumePromo", { code: p.code, orderId })));
				expect(await usedCount(p.code)).toBe(6);
				const releases = await Promise.all([0, 1].map(() => shop.broker.call("cart.releasePromo", { code: p.code, orderId: "u-0" })));
				expect(releases.filter((r: any) => r.released)).toHaveLength(1);
				expect(await usedCount(p.code)).toBe(5);
			});

			test("uses recorded before slots move to slots at start, and still count against the limit", async () => {
				const p = await createPromotion({ type: "fixed", value: 100, maxUses: 3 });
				const db = cartDb();
				for (const [i, orderId, state] of [[2, "old-2", "pending"], [1, "old-1", "consumed"]] as const) {
					await db.promotion_uses.insert({ promotionId: p.id, code: p.code, orderId, state, createdAt: new Date(Date.UTC(2026, 0, i)) });
				}
				await db.promotions.updateOne({ id: p.id }, { $set: { usedCount: 2 } });
				const service = shop.broker.getLocalService("cart") as any;
				await service.moveLegacyUses();
				await service.moveLegacyUses();
				expect(await db.promotion_uses.count({ promotionId: p.id })).toBe(0);
				expect((await db.promotion_slots.find({ promotionId: p.id })).map((u: any) => [u.orderId, u.slot]).sort()).toEqual([["old-1", 0], ["old-2", 1]]);
				expect(await shop.broker.call("cart.consumePromo", { code: p.code, orderId: "old-1" })).toEqual({ consumed: true, code: p.code });
				expect(await shop.broker.call("cart.consumePromo", { code: p.code, orderId: "new-1" })).toEqual({ consumed: true, code: p.code });
				await expect(shop.broker.call("cart.consumePromo", { code: p.code, orderId: "new-2" })).rejects.toMatchObject({ code: 422, data: [{ type: "exhausted" }] });
				expect(await shop.broker.call("cart.releasePromo", { code: p.code, orderId: "old-2" })).toEqual({ released: true });
				expect(await usedCount(p.code)).toBe(2);
			});
		});

		test("consumePromo refuses expired or inactive codes", async () => {
			const expired = await expiredPromotion();
			await expect(shop.broker.call("cart.consumePromo", { code: expired.code, orderId: "o" })).rejects.toMatchObject({ code: 422, data: [{ type: "expired" }] });
			const live = await createPromotion({ type: "percent", value: 10 });
			await shop.http.patch(`/api/promotions/${live.code}`, { active: false }, { token: admin });
			await expect(shop.broker.call("cart.consumePromo", { code: live.code, orderId: "o" })).rejects.toMatchObject({ code: 422, data: [{ type: "inactive" }] });
		});

		test("quotePromo prices a code for a subtotal", async () => {
			const p = await createPromotion({ type: "percent", value: 25, minSubtotal: 1000 });
			expect(await shop.broker.call("cart.quotePromo", { code: p.code, subtotal: 4001 })).toEqual({ code: p.code, discount: 1000 });
			await expect(shop.broker.call("cart.quotePromo", { code: p.code, subtotal: 999 })).rejects.toMatchObject({ code: 422, data: [{ type: "below_minimum" }] });
		});
	});

	describe("checkout actions", () => {
		test("snapshot prices the purchasable lines with a version; clear honours the version", async () => {
			const c = customer();
			const tee = await addVariant({ price: 2000 });
			const old = await addVariant({ price: 100 });
			await c.add(tee.id, 2);
			await c.add(old.id, 1);
			await archive(old);
			const p = await createPromotion({ type: "percent", value: 10 });
			await c.applyPromo(p.code);

			const snap = await shop.broker.call<any, any>("cart.snapshot", { userId: c.id });
			expect(snap).toEqual({
				version: expect.any(Number),
				items: [{ variantId: tee.id, productId: tee.productId, sku: tee.sku, name: "Tee", variantName: "Large", unitPrice: 2000, quantity: 2, lineTotal: 4000 }],
				subtotal: 4000,
				discount: 400,
				total: 3600,
				currency: "USD",
				promoCode: p.code,
				problems: [{ type: "archived", variantId: old.id }],
			});

			await c.add(tee.id, 1);
			expect(await shop.broker.call("cart.clear", { userId: c.id, version: snap.version })).toEqual({ cleared: false });
			expect((await c.get()).body.items).toHaveLength(2);
			const now = await shop.broker.call<any, any>("cart.snapshot", { userId: c.id });
			expect(now.version).toBeGreaterThan(snap.version);
			expect(await shop.broker.call("cart.clear", { userId: c.id, version: now.version })).toEqual({ cleared: true });
			expect((await c.get()).body).toMatchObject({ items: [], promoCode: null });
		});

		test("the OpenAPI document describes the cart and promotion routes", async () => {
			const doc = (await shop.http.get("/api/openapi.json")).body;
			await SwaggerParser.validate(structuredClone(doc));
			const paths = Object.keys(doc.paths);
			for (const p of ["/api/cart", "/api/cart/items", "/api/cart/promo", "/api/promotions"]) expect(paths).toContain(p);
			expect(paths.some((p) => p.startsWith("/api/cart/items/"))).toBe(true);
			expect(paths.some((p) => /snapshot|consume|merge/i.test(p))).toBe(false);
			// A client generated from it keeps a guest's cart: X-Cart-Id sent on every cart route a guest may use, and read from the answer.
			const guestRoutes = [["get", "/api/cart"], ["post", "/api/cart/items"], ["patch", "/api/cart/items/{variantId}"], ["delete", "/api/cart/items/{variantId}"], ["delete", "/api/cart"]];
			for (const [method, path] of guestRoutes) {
				const op = doc.paths[path][method];
				expect({ path, method, header: op.parameters.find((p: any) => p.in === "header" && p.name === "X-Cart-Id") }).toEqual({ path, method, header: expect.objectContaining({ required: false }) });
			}
			expect(doc.paths["/api/cart/items"].post.responses["201"].headers["X-Cart-Id"]).toEqual({ description: expect.stringContaining("next cart call"), schema: { type: "string" } });
			expect(doc.paths["/api/cart"].get.responses["200"].headers).toHaveProperty("X-Cart-Id");
		});

		test("internal actions are not reachable over HTTP", async () => {
			const c = customer();
			for (const path of ["/api/cart/snapshot", "/api/cart.snapshot", "/api/cart/consumePromo"]) {
				expect((await shop.http.post(path, { userId: c.id }, { token: admin })).status).toBe(404);
			}
		});
	});
});

describe("guest cart merged at register and login (real users service)", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: ["users", "products", "cart"] });
	});
	afterAll(() => shop.stop());

	test("register, then login, with X-Cart-Id: the guest carts join the user's cart", async () => {
		const product: any = await shop.broker.call(
			"products.create",
			{ name: "Tee", slug: `tee-${crypto.randomBytes(4).toString("hex")}`, price: 1500, currency: "USD", variants: [{ sku: `M-${crypto.randomBytes(4).toString("hex")}`, name: "L", stock: 4 }] },
			{ meta: { user: { id: "admin", role: "admin", sid: "s" } } },
		);
		const variantId = product.variants[0].id;
		const guestCart = async (quantity: number) => (await shop.http.post("/api/cart/items", { variantId, quantity })).headers.get("x-cart-id")!;

		const email = `merge-${crypto.randomBytes(4).toString("hex")}@example.com`;
		const first = await guestCart(2);
		const reg = await shop.http.post("/api/auth/register", { email, password: "correct horse battery" }, { headers: { "X-Cart-Id": first } });
		expect(reg.status).toBe(201);
		expect((await shop.http.get("/api/cart", { token: reg.body.accessToken })).body.items).toEqual([expect.objectContaining({ variantId, quantity: 2 })]);
		expect((await shop.http.get("/api/cart", { headers: { "X-Cart-Id": first } })).body.items).toEqual([]);

		// 2 in the user's cart + 3 from the guest cart, capped by the stock of 4.
		const second = await guestCart(3);
		const login = await shop.http.post("/api/auth/login", { email, password: "correct horse battery" }, { headers: { "X-Cart-Id": second } });
		expect(login.status).toBe(200);
		expect((await shop.http.get("/api/cart", { token: login.body.accessToken })).body.items).toEqual([expect.objectContaining({ variantId, quantity: 4 })]);
	});
});
