/**
 * One behavioural suite for every cart store: the embedded one always, Redis when REDIS_URL is set
 * (`npm run test:infra` provides it).
 */
import crypto from "node:crypto";
import Redis from "ioredis";
import { MemoryCartStore, RedisCartStore, CART_TTL_SECONDS, type CartStore } from "../../adapters/cart-store";
import { Collection } from "../../mixins/collection";
import { readSeenPrice } from "../../adapters/cart-store/redis-cart-store";

const LIMITS = { maxQuantity: 99, available: 1000, maxLines: 100 };
const LEASE_MS = 60_000;
const owner = () => `u:${crypto.randomBytes(6).toString("hex")}`;
const item = (variantId: string, quantity: number, unitPrice = 1000) => ({ variantId, quantity, unitPrice, currency: "USD" });

function behavesLikeACartStore(makeStore: () => Promise<CartStore>) {
	let store: CartStore;
	beforeAll(async () => {
		store = await makeStore();
	});
	afterAll(() => store.close());

	test("an unknown cart is empty at version 0", async () => {
		expect(await store.get(owner())).toEqual({ lines: [], promoCode: null, version: 0 });
	});

	test("adding creates a line, adding again sums it; each write moves the version", async () => {
		const o = owner();
		const first = await store.addItem(o, item("v1", 2, 1500), LIMITS);
		expect(first).toEqual({ ok: true, quantity: 2, version: 1 });
		expect(await store.addItem(o, item("v1", 3, 1600), LIMITS)).toEqual({ ok: true, quantity: 5, version: 2 });
		await store.addItem(o, item("v2", 1), LIMITS);
		const cart = await store.get(o);
		expect(cart.lines).toEqual([
			{ variantId: "v1", quantity: 5, unitPrice: 1600, currency: "USD" },
			{ variantId: "v2", quantity: 1, unitPrice: 1000, currency: "USD" },
		]);
		expect(cart.version).toBe(3);
	});

	test("adding refuses past the per-line maximum, past the stock, and a new line past maxLines", async () => {
		const o = owner();
		await store.addItem(o, item("v1", 98), LIMITS);
		expect(await store.addItem(o, item("v1", 2), LIMITS)).toEqual({ ok: false, reason: "quantity", quantity: 98 });
		expect(await store.addItem(o, item("v2", 4), { ...LIMITS, available: 3 })).toEqual({ ok: false, reason: "stock", quantity: 0 });
		expect(await store.addItem(o, item("v2", 3), { ...LIMITS, available: 3 })).toMatchObject({ ok: true, quantity: 3 });
		expect(await store.addItem(o, item("v3", 1), { ...LIMITS, maxLines: 2 })).toEqual({ ok: false, reason: "lines", quantity: 0 });
		// An existing line may still grow in a full cart.
		expect(await store.addItem(o, item("v2", 1), { ...LIMITS, available: 4, maxLines: 2 })).toMatchObject({ ok: true, quantity: 4 });
		expect((await store.get(o)).lines.map((l) => [l.variantId, l.quantity])).toEqual([["v1", 98], ["v2", 4]]);
	});

	test("concurrent adds never lose an increment", async () => {
		const o = owner();
		await Promise.all(Array.from({ length: 40 }, () => store.addItem(o, item("v1", 1), LIMITS)));
		expect((await store.get(o)).lines).toEqual([{ variantId: "v1", quantity: 40, unitPrice: 1000, currency: "USD" }]);
	});

	test("concurrent adds never pass the stock", async () => {
		const o = owner();
		const results = await Promise.all(Array.from({ length: 20 }, () => store.addItem(o, item("v1", 1), { ...LIMITS, available: 5 })));
		expect(results.filter((r) => r.ok)).toHaveLength(5);
		expect(results.filter((r) => !r.ok && r.reason === "stock")).toHaveLength(15);
		expect((await store.get(o)).lines[0].quantity).toBe(5);
	});

	test("concurrent new lines never pass maxLines", async () => {
		const o = owner();
		const results = await Promise.all(Array.from({ length: 10 }, (_, i) => store.addItem(o, item(`v${i}`, 1), { ...LIMITS, maxLines: 4 })));
		expect(results.filter((r) => r.ok)).toHaveLength(4);
		expect((await store.get(o)).lines).toHaveLength(4);
	});

	test("setting a quantity needs the line, and checks the same limits", async () => {
		const o = owner();
		expect(await store.setQuantity(o, item("v1", 2), LIMITS)).toEqual({ ok: false, reason: "missing", quantity: 0 });
		await store.addItem(o, item("v1", 5, 900), LIMITS);
		expect(await store.setQuantity(o, item("v1", 2, 950), LIMITS)).toMatchObject({ ok: true, quantity: 2 });
		expect(await store.setQuantity(o, item("v1", 100), LIMITS)).toEqual({ ok: false, reason: "quantity", quantity: 2 });
		expect(await store.setQuantity(o, item("v1", 8), { ...LIMITS, available: 7 })).toEqual({ ok: false, reason: "stock", quantity: 2 });
		expect((await store.get(o)).lines).toEqual([{ variantId: "v1", quantity: 2, unitPrice: 950, currency: "USD" }]);
	});

	test("removing a line says whether it was there", async () => {
		const o = owner();
		await store.addItem(o, item("v1", 1), LIMITS);
		await store.addItem(o, item("v2", 1), LIMITS);
		expect(await store.removeItem(o, "v1")).toBe(true);
		expect(await store.removeItem(o, "v1")).toBe(false);
		expect((await store.get(o)).lines.map((l) => l.variantId)).toEqual(["v2"]);
	});

	test("a promo code is kept beside the lines and can be removed", async () => {
		const o = owner();
		const v = await store.setPromo(o, "SAVE10");
		expect(v).toBe(1);
		expect((await store.get(o)).promoCode).toBe("SAVE10");
		await store.setPromo(o, null);
		expect(await store.get(o)).toMatchObject({ promoCode: null, version: 2 });
	});

	test("clearing empties lines and code; with a version, only if the cart is still at it", async () => {
		const o = owner();
		await store.addItem(o, item("v1", 1), LIMITS);
		await store.setPromo(o, "SAVE10");
		const { version } = await store.get(o);
		await store.addItem(o, item("v2", 1), LIMITS);
		expect(await store.clear(o, version)).toBe(false);
		expect((await store.get(o)).lines).toHaveLength(2);
		expect(await store.clear(o, version + 1)).toBe(true);
		const after = await store.get(o);
		expect(after).toMatchObject({ lines: [], promoCode: null });
		// The version never goes back, so an old snapshot cannot clear a cart refilled since.
		expect(after.version).toBeGreaterThan(version + 1);
		expect(await store.clear(o)).toBe(true);
	});

	test("take reads and deletes at once: two concurrent takes get the lines once", async () => {
		const o = owner();
		await store.addItem(o, item("v1", 2, 700), LIMITS);
		const [a, b] = await Promise.all([store.take(o), store.take(o)]);
		expect([a.lines.length, b.lines.length].sort()).toEqual([0, 1]);
		expect([...a.lines, ...b.lines]).toEqual([{ variantId: "v1", quantity: 2, unitPrice: 700, currency: "USD" }]);
		expect(await store.get(o)).toEqual({ lines: [], promoCode: null, version: 0 });
	});

	test("merging sums lines up to their cap, never lowers a line, and respects maxLines", async () => {
		const o = owner();
		await store.addItem(o, item("v1", 2, 100), LIMITS);
		await store.addItem(o, item("v2", 9, 200), LIMITS);
		const changed = await store.mergeLines(
			o,
			[
				{ variantId: "v1", quantity: 3, unitPrice: 111, currency: "USD", cap: 99 },
				{ variantId: "v2", quantity: 5, unitPrice: 222, currency: "USD", cap: 4 },
				{ variantId: "v3", quantity: 7, unitPrice: 300, currency: "USD", cap: 5 },
				{ variantId: "v4", quantity: 1, unitPrice: 400, currency: "USD", cap: 99 },
			],
			3,
		);
		expect(changed).toBe(2);
		expect((await store.get(o)).lines).toEqual([
			{ variantId: "v1", quantity: 5, unitPrice: 100, currency: "USD" },
			{ variantId: "v2", quantity: 9, unitPrice: 200, currency: "USD" },
			{ variantId: "v3", quantity: 5, unitPrice: 300, currency: "USD" },
		]);
		expect(await store.mergeLines(o, [], 100)).toBe(0);
	});

	describe("checkout claims", () => {
		test("a claim reads the cart without changing its version; the same order claims again", async () => {
			const o = owner();
			await store.addItem(o, item("v1", 2, 700), LIMITS);
			const claim = await store.claimCheckout(o, "order-1", LEASE_MS);
			expect(claim).toEqual({ claimed: true, cart: { lines: [{ variantId: "v1", quantity: 2, unitPrice: 700, currency: "USD" }], promoCode: null, version: 1 } });
			expect(await store.claimCheckout(o, "order-1", LEASE_MS)).toMatchObject({ claimed: true, cart: { version: 1 } });
			expect((await store.get(o)).version).toBe(1);
		});

		test("another order's claim is refused while one is held, and naming the holder", async () => {
			const o = owner();
			await store.addItem(o, item("v1", 1), LIMITS);
			await store.claimCheckout(o, "order-1", LEASE_MS);
			expect(await store.claimCheckout(o, "order-2", LEASE_MS)).toEqual({ claimed: false, heldBy: "order-1" });
		});

		test("of many concurrent claims by different orders, exactly one holds the cart", async () => {
			const o = owner();
			await store.addItem(o, item("v1", 1), LIMITS);
			const claims = await Promise.all(Array.from({ length: 12 }, (_, i) => store.claimCheckout(o, `order-${i}`, LEASE_MS)));
			const won = claims.flatMap((c, i) => (c.claimed ? [`order-${i}`] : []));
			expect(won).toHaveLength(1);
			expect(claims.filter((c) => !c.claimed).map((c) => !c.claimed && c.heldBy)).toEqual(Array(11).fill(won[0]));
		});

		test("a claim ends by itself after its lease", async () => {
			const o = owner();
			await store.addItem(o, item("v1", 1), LIMITS);
			await store.claimCheckout(o, "order-1", 40);
			expect(await store.claimCheckout(o, "order-2", LEASE_MS)).toMatchObject({ claimed: false });
			await new Promise((r) => setTimeout(r, 80));
			expect(await store.claimCheckout(o, "order-2", LEASE_MS)).toMatchObject({ claimed: true });
			expect(await store.claimCheckout(o, "order-1", LEASE_MS)).toEqual({ claimed: false, heldBy: "order-2" });
		});

		test("only the holding order releases its claim; releasing again changes nothing", async () => {
			const o = owner();
			await store.addItem(o, item("v1", 1), LIMITS);
			await store.claimCheckout(o, "order-1", LEASE_MS);
			expect(await store.releaseCheckout(o, "order-2")).toBe(false);
			expect(await store.claimCheckout(o, "order-2", LEASE_MS)).toMatchObject({ claimed: false });
			expect(await store.releaseCheckout(o, "order-1")).toBe(true);
			expect(await store.releaseCheckout(o, "order-1")).toBe(false);
			expect(await store.releaseCheckout(owner(), "order-1")).toBe(false);
			expect(await store.claimCheckout(o, "order-2", LEASE_MS)).toMatchObject({ claimed: true });
			expect((await store.get(o)).version).toBe(1);
		});

		test("the customer still changes a claimed cart; clearing for the order then keeps the cart but drops the claim", async () => {
			const o = owner();
			await store.addItem(o, item("v1", 1), LIMITS);
			const claim = await store.claimCheckout(o, "order-1", LEASE_MS);
			expect(await store.addItem(o, item("v2", 1), LIMITS)).toMatchObject({ ok: true, version: 2 });
			expect(await store.clear(o, claim.claimed ? claim.cart.version : -1, "order-1")).toBe(false);
			expect((await store.get(o)).lines.map((l) => l.variantId)).toEqual(["v1", "v2"]);
			expect(await store.claimCheckout(o, "order-2", LEASE_MS)).toMatchObject({ claimed: true, cart: { version: 2 } });
		});

		test("a cart changed while it was bought loses what was bought, not what was added; the code goes only if it is the one bought with", async () => {
			const o = owner();
			await store.addItem(o, item("v1", 2), LIMITS);
			await store.addItem(o, item("v2", 1), LIMITS);
			await store.setPromo(o, "SAVE10");
			const claim = await store.claimCheckout(o, "order-1", LEASE_MS);
			const version = claim.claimed ? claim.cart.version : -1;
			// Another tab meanwhile: one more v1, a new v3.
			await store.addItem(o, item("v1", 1), LIMITS);
			await store.addItem(o, item("v3", 4), LIMITS);
			const bought = { lines: [{ variantId: "v1", quantity: 2 }, { variantId: "v2", quantity: 1 }], promoCode: "SAVE10" };
			expect(await store.clear(o, version, "order-1", bought)).toBe(true);
			const left = await store.get(o);
			expect(left.lines.map((l) => [l.variantId, l.quantity])).toEqual([["v1", 1], ["v3", 4]]);
			expect(left.promoCode).toBeNull();
			expect(left.version).toBeGreaterThan(version);
			// The claim went in the same write.
			expect(await store.claimCheckout(o, "order-2", LEASE_MS)).toMatchObject({ claimed: true });

			// A code changed meanwhile stays; a cart at its version is emptied whole, as without `bought`.
			const p = owner();
			await store.addItem(p, item("v1", 1), LIMITS);
			await store.setPromo(p, "OLD");
			const held = await store.claimCheckout(p, "order-3", LEASE_MS);
			await store.setPromo(p, "NEW");
			expect(await store.clear(p, held.claimed ? held.cart.version : -1, "order-3", { lines: [{ variantId: "v1", quantity: 1 }], promoCode: "OLD" })).toBe(true);
			expect(await store.get(p)).toMatchObject({ lines: [], promoCode: "NEW" });
			const q = owner();
			await store.addItem(q, item("v1", 1), LIMITS);
			const atVersion = await store.claimCheckout(q, "order-4", LEASE_MS);
			expect(await store.clear(q, atVersion.claimed ? atVersion.cart.version : -1, "order-4", { lines: [], promoCode: null })).toBe(true);
			expect((await store.get(q)).lines).toEqual([]);
			// Another order's claim: nothing comes off.
			const r = owner();
			await store.addItem(r, item("v1", 1), LIMITS);
			await store.claimCheckout(r, "order-6", LEASE_MS);
			await store.addItem(r, item("v2", 1), LIMITS);
			expect(await store.clear(r, 1, "order-5", { lines: [{ variantId: "v1", quantity: 1 }], promoCode: null })).toBe(false);
			expect((await store.get(r)).lines.map((l) => l.variantId)).toEqual(["v1", "v2"]);
		});

		test("clearing for the order empties the cart and drops its claim in one step; another order's claim stays", async () => {
			const o = owner();
			await store.addItem(o, item("v1", 1), LIMITS);
			await store.claimCheckout(o, "order-1", LEASE_MS);
			expect(await store.clear(o, 1, "order-1")).toBe(true);
			expect((await store.get(o)).lines).toEqual([]);
			expect(await store.claimCheckout(o, "order-2", LEASE_MS)).toMatchObject({ claimed: true });
			// Neither an old order's clear nor the customer emptying the cart lets another checkout in.
			await store.clear(o, undefined, "order-1");
			await store.clear(o);
			expect(await store.claimCheckout(o, "order-3", LEASE_MS)).toEqual({ claimed: false, heldBy: "order-2" });
		});

		test("an order that outlived its claim does not empty the cart another order's checkout holds now", async () => {
			const o = owner();
			await store.addItem(o, item("v1", 1), LIMITS);
			await store.claimCheckout(o, "order-2", LEASE_MS);
			expect(await store.clear(o, 1, "order-1")).toBe(false);
			expect((await store.get(o)).lines.map((l) => l.variantId)).toEqual(["v1"]);
			expect(await store.clear(o, 1, "order-2")).toBe(true);
			expect((await store.get(o)).lines).toEqual([]);
		});
	});

	test("carts of different owners are separate", async () => {
		const a = owner();
		const b = owner();
		await store.addItem(a, item("v1", 1), LIMITS);
		expect((await store.get(b)).lines).toEqual([]);
	});
}

describe("MemoryCartStore", () => {
	behavesLikeACartStore(async () => new MemoryCartStore());

	test("a cart expires a TTL after its last write", async () => {
		let now = 1_000_000;
		const store = new MemoryCartStore({ ttlSeconds: 60, now: () => now });
		await store.addItem("u:1", item("v1", 1), LIMITS);
		now += 59_000;
		await store.addItem("u:1", item("v1", 1), LIMITS);
		now += 59_000;
		expect((await store.get("u:1")).lines).toEqual([{ variantId: "v1", quantity: 2, unitPrice: 1000, currency: "USD" }]);
		now += 2_000;
		expect(await store.get("u:1")).toEqual({ lines: [], promoCode: null, version: 0 });
		await store.close();
	});
});

describe("MemoryCartStore persisted to a collection", () => {
	const spec = { fields: {}, indexes: [{ fields: { expiresAt: 1 as const }, expireAfterSeconds: 0 }] };
	const carts = new Collection("carts", spec, {});
	beforeAll(() => carts.connect());

	behavesLikeACartStore(async () => new MemoryCartStore({ persist: carts }));

	test("carts survive a restart; taken carts do not come back", async () => {
		const first = new MemoryCartStore({ persist: carts });
		await first.addItem("u:keep", item("v1", 3, 450), LIMITS);
		await first.setPromo("u:keep", "SAVE10");
		await first.addItem("g:gone", item("v1", 1), LIMITS);
		await first.take("g:gone");
		await first.close();

		const second = new MemoryCartStore({ persist: carts });
		await second.load();
		expect(await second.get("u:keep")).toEqual({ lines: [{ variantId: "v1", quantity: 3, unitPrice: 450, currency: "USD" }], promoCode: "SAVE10", version: 2 });
		expect((await second.get("g:gone")).lines).toEqual([]);
		await second.close();
	});

	test("a checkout claim survives a restart, with its lease", async () => {
		let now = Date.now();
		const first = new MemoryCartStore({ persist: carts, now: () => now });
		await first.addItem("u:claimed", item("v1", 1), LIMITS);
		await first.claimCheckout("u:claimed", "order-1", 60_000);
		await first.close();

		const second = new MemoryCartStore({ persist: carts, now: () => now });
		await second.load();
		expect(await second.claimCheckout("u:claimed", "order-2", 60_000)).toEqual({ claimed: false, heldBy: "order-1" });
		now += 60_001;
		expect(await second.claimCheckout("u:claimed", "order-2", 60_000)).toMatchObject({ claimed: true, cart: { version: 1 } });
		await second.close();
	});
});

const describeRedis = process.env.REDIS_URL ? describe : describe.skip;

describeRedis("RedisCartStore", () => {
	const prefix = `test:${crypto.randomBytes(4).toString("hex")}:cart:`;
	behavesLikeACartStore(async () => new RedisCartStore(process.env.REDIS_URL!, { prefix }));

	test("the cart keys carry a 7-day TTL, refreshed on every write", async () => {
		const redis = new Redis(process.env.REDIS_URL!);
		const store = new RedisCartStore(process.env.REDIS_URL!, { prefix });
		try {
			const o = owner();
			const keys = store.keys(o);
			expect(keys[0]).toBe(`${prefix}{${o}}`);
			await store.addItem(o, item("v1", 1), LIMITS);
			for (const k of keys) await redis.expire(k, 10);
			await store.addItem(o, item("v1", 1), LIMITS);
			for (const k of keys) {
				const ttl = await redis.ttl(k);
				expect(ttl).toBeGreaterThan(CART_TTL_SECONDS - 10);
				expect(ttl).toBeLessThanOrEqual(CART_TTL_SECONDS);
			}
			expect(await redis.hget(keys[0], "v1")).toBe("2");
		} finally {
			await store.close();
			await redis.quit();
		}
	});
});

describe("the Redis store's seen prices", () => {
	test("are kept with their currency, and read back from a bare number stored before the currency was kept", () => {
		expect(readSeenPrice("1999 USD")).toEqual({ unitPrice: 1999, currency: "USD" });
		expect(readSeenPrice("1999")).toEqual({ unitPrice: 1999, currency: null });
		expect(readSeenPrice(undefined)).toEqual({ unitPrice: null, currency: null });
	});
});
