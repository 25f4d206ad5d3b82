/**
 * Checkout end to end with the real users, products, cart, orders and payments services behind the
 * gateway: the saga's happy path, a decline, oversell under concurrency, idempotent double submits,
 * failures injected at each step (and their compensations, run once), prices the client cannot set,
 * and checkouts interrupted by a dying node, finished by recovery without announcing twice.
 */
import crypto from "node:crypto";
import { requestFingerprint } from "../../lib/idempotency";
import { startShop, type Shop } from "../helpers/shop";
import { rebuildOrderState } from "../../lib/order-state";
import { ServiceUnavailableError } from "../../lib/errors";
import { eventRecorder } from "../helpers/fakes";

const ADMIN = { email: "checkout-admin@example.com", password: "Admin-Passw0rd-42!" };

// Each test drives several real services through HTTP on a shared, small machine.
jest.setTimeout(30_000);

describe("checkout", () => {
	let shop: Shop;
	let adminToken: string;
	const recorder = eventRecorder("checkout-event-recorder", ["order.*", "payment.*", "checkout.*"]);
	const saved = { admin: process.env.ADMIN_EMAIL, password: process.env.ADMIN_PASSWORD, stripe: process.env.STRIPE_SECRET_KEY, shippingRates: process.env.SHIPPING_RATES };
	let n = 0;

	const orders = () => shop.broker.getLocalService("orders") as any;
	const key = () => crypto.randomUUID();

	/** A registered customer with a shipping address. */
	async function customer() {
		const reg = await shop.http.post("/api/auth/register", { email: `buyer-${process.pid}-${++n}@example.com`, password: "Corr3ct-Horse-Battery" });
		expect(reg.status).toBe(201);
		const token: string = reg.body.accessToken;
		const addr = await shop.http.post("/api/me/addresses", { type: "shipping", line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, { token });
		expect(addr.status).toBe(201);
		return { token, userId: reg.body.user.id as string, addressId: addr.body.id as string };
	}

	/** A product with one variant; returns the variant id. */
	async function variant(price: number, stock: number, currency = "USD") {
		const res = await shop.http.post(
			"/api/products",
			{ name: `Thing ${++n}`, price, currency, variants: [{ sku: `SKU-${process.pid}-${n}`, name: "One size", stock }] },
			{ token: adminToken },
		);
		expect(res.status).toBe(201);
		return { productId: res.body.id as string, variantId: res.body.variants[0].id as string };
	}

	async function stockOf(variantId: string): Promise<number> {
		const [v] = await shop.broker.call<any[], any>("products.getVariants", { ids: [variantId] });
		return v.stock;
	}

	async function addToCart(token: string, variantId: string, quantity = 1) {
		const res = await shop.http.post("/api/cart/items", { variantId, quantity }, { token });
		expect(res.status).toBe(201);
	}

	/** A customer with `quantity` of a new variant in the cart. */
	async function buyerWithCart(price: number, stock: number, quantity = 1) {
		const c = await customer();
		const v = await variant(price, stock);
		await addToCart(c.token, v.variantId, quantity);
		return { c, v };
	}

	const checkout = (c: { token: string; addressId: string }, opts: { key?: string; token?: string; body?: Record<string, unknown> } = {}) =>
		shop.http.post("/api/orders", opts.body ?? { shippingAddressId: c.addressId, paymentMethod: { type: "card", token: opts.token ?? "pm_card_visa" } }, {
			token: c.token,
			headers: opts.key === "" ? {} : { "Idempotency-Key": opts.key ?? key() },
		});

	async function waitUntil(probe: () => Promise<boolean>, withinMs = 3000) {
		const deadline = Date.now() + withinMs;
		while (!(await probe())) {
			if (Date.now() > deadline) throw new Error("condition not reached in time");
			await new Promise((r) => setTimeout(r, 20));
		}
	}

	const payment = (orderId: string) => shop.broker.call<any, any>("payments.getByOrder", { orderId });
	const eventTypes = async (orderId: string) => (await shop.broker.call<{ rows: any[] }, any>("orders.eventLog", { id: orderId, pageSize: 100 }, { meta: { user: { id: "x", role: "admin", sid: "s" } } })).rows.map((e) => e.type);

	async function promotion(code: string, maxUses: number) {
		const res = await shop.http.post("/api/promotions", { code, type: "fixed", value: 500, maxUses }, { token: adminToken });
		expect(res.status).toBe(201);
	}
	/** Whether the code still has a use left (the cart service's own quote says so). */
	const promoAvailable = (code: string) => shop.broker.call<any, any>("cart.quotePromo", { code, subtotal: 100_000 }).then(() => true, () => false);

	beforeAll(async () => {
		process.env.ADMIN_EMAIL = ADMIN.email;
		process.env.ADMIN_PASSWORD = ADMIN.password;
		delete process.env.STRIPE_SECRET_KEY;
		// Yen carts ship at their own rate; others at the shop's.
		process.env.SHIPPING_RATES = "JPY:800:8000";
		shop = await startShop({ services: ["users", "products", "cart", "orders", "payments", recorder.schema] });
		const login = await shop.http.post("/api/auth/login", ADMIN);
		expect(login.status).toBe(200);
		adminToken = login.body.accessToken;
	}, 30_000);
	afterAll(async () => {
		await shop?.stop();
		for (const [k, v] of [["ADMIN_EMAIL", saved.admin], ["ADMIN_PASSWORD", saved.password], ["STRIPE_SECRET_KEY", saved.stripe], ["SHIPPING_RATES", saved.shippingRates]] as const) {
			if (v === undefined) delete process.env[k];
			else process.env[k] = v;
		}
	});
	afterEach(() => orders().injectCheckoutFailure(null));

	test("happy path: 201 confirmed and paid, stock sold, cart empty, events out, listed", async () => {
		const { c, v } = await buyerWithCart(2999, 10, 2);

		const res = await checkout(c);
		expect(res.status).toBe(201);
		const order = res.body;
		// 59.98 of goods: above the free-shipping threshold (50.00).
		expect(order).toMatchObject({ status: "confirmed", paymentStatus: "succeeded", subtotal: 5998, discount: 0, shipping: 0, total: 5998, currency: "USD" });
		expect(order.number).toMatch(/^SH-\d{6}-[0-9A-Z]{4,}$/);
		expect(order.items).toEqual([expect.objectContaining({ variantId: v.variantId, productId: v.productId, quantity: 2, unitPrice: 2999, lineTotal: 5998 })]);
		expect(order.shippingAddress).toMatchObject({ line1: "1 Main St", city: "Springfield", addressId: c.addressId });

		expect(await stockOf(v.variantId)).toBe(8);
		expect((await payment(order.id)).status).toBe("succeeded");
		expect((await payment(order.id)).amount).toBe(5998);
		const cart = await shop.http.get("/api/cart", { token: c.token });
		expect(cart.body.items).toEqual([]);

		const names = recorder.events.filter((e) => e.payload.orderId === order.id).map((e) => e.name);
		expect(names).toEqual(expect.arrayContaining(["payment.succeeded", "order.created", "order.confirmed"]));
		const confirmed = recorder.events.find((e) => e.name === "order.confirmed" && e.payload.orderId === order.id)!.payload;
		expect(confirmed).toMatchObject({ orderId: order.id, number: order.number, userId: c.userId, status: "confirmed", total: 5998, currency: "USD", eventId: expect.any(String) });
		expect(confirmed.items).toEqual([{ productId: v.productId, variantId: v.variantId, name: expect.any(String), variantName: "One size", quantity: 2, unitPrice: 2999, lineTotal: 5998 }]);

		expect(await eventTypes(order.id)).toEqual(["created", "stock_reserved", "payment_succeeded", "confirmed", "stock_committed"]);
		const list = await shop.http.get("/api/orders", { token: c.token });
		expect(list.body.rows.map((o: any) => o.id)).toEqual([order.id]);
	});

	test("a cart changed in another tab while it is bought keeps what was added and loses what was bought (it kept all, and a next checkout bought it again)", async () => {
		const { c, v } = await buyerWithCart(2999, 10, 2);
		const other = await variant(1500, 10);
		const payments = shop.broker.getLocalService("payments") as any;
		const chargeOnce = payments.chargeOnce;
		// While the card is charged, the customer's other tab adds an item and one more of the one bought.
		payments.chargeOnce = async (...args: unknown[]) => {
			await addToCart(c.token, other.variantId, 1);
			await addToCart(c.token, v.variantId, 1);
			return chargeOnce.apply(payments, args);
		};
		let res;
		try {
			res = await checkout(c);
		} finally {
			payments.chargeOnce = chargeOnce;
		}
		expect(res.status).toBe(201);
		expect(res.body.items).toEqual([expect.objectContaining({ variantId: v.variantId, quantity: 2 })]);
		const cart = (await shop.http.get("/api/cart", { token: c.token })).body;
		expect(cart.items.map((i: any) => [i.variantId, i.quantity]).sort()).toEqual([[other.variantId, 1], [v.variantId, 1]].sort());
		// The cart's claim went with it: the next checkout buys what is left, once.
		const next = await checkout(c);
		expect(next.status).toBe(201);
		expect(next.body.total).toBe(2999 + 1500 + 599);
	});

	test("expectedTotal: a price raised since the customer saw the cart is a 409 TOTAL_CHANGED naming it, nothing taken, the cart kept; the shown total goes through", async () => {
		const { c, v } = await buyerWithCart(6000, 5);
		const body = (expectedTotal: number) => ({ shippingAddressId: c.addressId, paymentMethod: { type: "card", token: "pm_card_visa" }, expectedTotal });
		expect((await shop.http.get("/api/cart", { token: c.token })).body.total).toBe(6000);
		expect((await shop.http.patch(`/api/products/${v.productId}`, { price: 9000 }, { token: adminToken })).status).toBe(200);

		const refused = await checkout(c, { body: body(6000) });
		expect(refused.status).toBe(409);
		expect(refused.body).toMatchObject({ type: "TOTAL_CHANGED", data: { expectedTotal: 6000, subtotal: 9000, total: 9000, currency: "USD", priceChanges: [expect.objectContaining({ variantId: v.variantId, previousUnitPrice: 6000, unitPrice: 9000 })] } });
		expect(await stockOf(v.variantId)).toBe(5);
		expect((await shop.http.get("/api/orders", { token: c.token })).body.total).toBe(0);
		expect((await shop.http.get("/api/cart", { token: c.token })).body.items).toEqual([expect.objectContaining({ variantId: v.variantId, quantity: 1 })]);
		expect((await checkout(c, { body: { ...body(6000), expectedTotal: 6000.5 } })).body).toMatchObject({ code: 422, data: [expect.objectContaining({ field: "expectedTotal" })] });

		// Seen and agreed to: the cart is not held by the refused checkout.
		const paid = await checkout(c, { body: body(9000) });
		expect(paid.status).toBe(201);
		expect(paid.body).toMatchObject({ status: "confirmed", total: 9000 });
	});

	test("expectedTotal: a product moved to another currency since the customer saw it is a 409 TOTAL_CHANGED, though the number is the same; the new currency sent goes through", async () => {
		const { c, v } = await buyerWithCart(6000, 5);
		const shown = (await shop.http.get("/api/cart", { token: c.token })).body;
		expect(shown).toMatchObject({ currency: "USD", checkoutTotal: 6000 });
		expect((await shop.http.patch(`/api/products/${v.productId}`, { currency: "EUR" }, { token: adminToken })).status).toBe(200);
		const cart = (await shop.http.get("/api/cart", { token: c.token })).body;
		expect(cart).toMatchObject({ currency: "EUR", checkoutTotal: 6000, items: [expect.objectContaining({ priceChanged: true, previousUnitPrice: 6000 })] });

		const body = { shippingAddressId: c.addressId, paymentMethod: { type: "card", token: "pm_card_visa" }, expectedTotal: shown.checkoutTotal };
		const refused = await checkout(c, { body });
		expect(refused.status).toBe(409);
		expect(refused.body).toMatchObject({ type: "TOTAL_CHANGED", data: { expectedTotal: 6000, total: 6000, currency: "EUR", priceChanges: [expect.objectContaining({ previousCurrency: "USD" })] } });
		expect((await checkout(c, { body: { ...body, expectedCurrency: "USD" } })).status).toBe(409);
		expect(await stockOf(v.variantId)).toBe(5);

		const paid = await checkout(c, { body: { ...body, expectedCurrency: "eur" } });
		expect(paid.status).toBe(201);
		expect(paid.body).toMatchObject({ status: "confirmed", total: 6000, currency: "EUR" });
	});

	test("a currency with its own rate (SHIPPING_RATES) ships at it, in the cart and the order: not 599 yen", async () => {
		const c = await customer();
		const cheap = await variant(5000, 5, "JPY");
		await addToCart(c.token, cheap.variantId);
		expect((await shop.http.get("/api/cart", { token: c.token })).body).toMatchObject({ currency: "JPY", total: 5000, shipping: 800, checkoutTotal: 5800 });
		const res = await checkout(c);
		expect(res.status).toBe(201);
		expect(res.body).toMatchObject({ currency: "JPY", subtotal: 5000, shipping: 800, total: 5800 });
		// At its own threshold it ships free.
		const d = await customer();
		await addToCart(d.token, (await variant(8000, 5, "JPY")).variantId);
		expect((await checkout(d)).body).toMatchObject({ subtotal: 8000, shipping: 0, total: 8000 });
	});

	test("flat shipping below the free-shipping threshold; the cart shows it, and its checkoutTotal is the expectedTotal that goes through", async () => {
		const { c } = await buyerWithCart(1000, 5);
		const cart = (await shop.http.get("/api/cart", { token: c.token })).body;
		expect(cart).toMatchObject({ total: 1000, shipping: 599, checkoutTotal: 1599 });
		const res = await checkout(c, { body: { shippingAddressId: c.addressId, paymentMethod: { type: "card", token: "pm_card_visa" }, expectedTotal: cart.checkoutTotal } });
		expect(res.status).toBe(201);
		expect(res.body).toMatchObject({ subtotal: 1000, shipping: 599, total: 1599 });
		expect((await payment(res.body.id)).amount).toBe(1599);
	});

	test("a declined card: 402, stock back, order cancelled with the reason, cart kept, promo use returned", async () => {
		const c = await customer();
		const v = await variant(3000, 4);
		const code = `DECL${n}`;
		await promotion(code, 1);
		await addToCart(c.token, v.variantId, 2);
		expect((await shop.http.post("/api/cart/promo", { code }, { token: c.token })).status).toBe(200);

		const res = await checkout(c, { token: "pm_card_chargeDeclined" });
		expect(res.status).toBe(402);
		expect(res.body).toMatchObject({ code: 402, type: "PAYMENT_DECLINED" });
		expect(await stockOf(v.variantId)).toBe(4);

		const list = await shop.http.get("/api/orders", { token: c.token });
		const [order] = list.body.rows;
		expect(order).toMatchObject({ status: "cancelled", paymentStatus: "failed", cancelReason: "payment_declined", discount: 500 });
		expect(await eventTypes(order.id)).toEqual(["created", "stock_reserved", "promo_consumed", "payment_failed", "promo_released", "stock_released", "cancelled"]);

		const cart = await shop.http.get("/api/cart", { token: c.token });
		expect(cart.body.items).toEqual([expect.objectContaining({ variantId: v.variantId, quantity: 2 })]);
		// The single use of the code is available again: a second customer can still use it.
		expect(await promoAvailable(code)).toBe(true);
		expect(recorder.events.some((e) => e.name === "order.created" && e.payload.orderId === order.id)).toBe(false);
		// For the funnel: a checkout that started and failed, and why.
		const failed = recorder.events.filter((e) => e.name === "checkout.failed" && e.payload.orderId === order.id);
		expect(failed.map((e) => e.payload)).toEqual([expect.objectContaining({ reason: "payment_declined", status: "cancelled", userId: c.userId, total: order.total, currency: "USD" })]);
	});

	test("a code used up after it was applied: 409 naming it, no order, no charge; without the code the checkout goes through", async () => {
		const code = `GONE${++n}`;
		await promotion(code, 1);
		const [first, second] = [await customer(), await customer()];
		const v = await variant(3000, 4);
		for (const c of [first, second]) {
			await addToCart(c.token, v.variantId, 1);
			expect((await shop.http.post("/api/cart/promo", { code }, { token: c.token })).status).toBe(200);
		}
		expect((await checkout(first)).body).toMatchObject({ discount: 500 });

		// The second customer saw the discount in the cart: charging the full price instead needs their say.
		const refused = await checkout(second);
		expect(refused.status).toBe(409);
		expect(refused.body).toMatchObject({ type: "CART_HAS_PROBLEMS", data: { problems: [expect.objectContaining({ type: "promo", code })] } });
		expect((await shop.http.get("/api/orders", { token: second.token })).body.total).toBe(0);
		expect(await stockOf(v.variantId)).toBe(3);

		expect((await shop.http.delete("/api/cart/promo", { token: second.token })).status).toBeLessThan(300);
		expect((await checkout(second)).body).toMatchObject({ discount: 0, subtotal: 3000 });
	});

	test("a code that covers the goods still pays shipping; with free shipping the order costs nothing, is charged nothing and has nothing to refund", async () => {
		const fullCode = async () => {
			const code = `FREE${++n}`;
			expect((await shop.http.post("/api/promotions", { code, type: "percent", value: 100 }, { token: adminToken })).status).toBe(201);
			return code;
		};
		const { c } = await buyerWithCart(1500, 5);
		expect((await shop.http.post("/api/cart/promo", { code: await fullCode() }, { token: c.token })).status).toBe(200);
		const paidShipping = await checkout(c);
		expect(paidShipping.body).toMatchObject({ subtotal: 1500, discount: 1500, shipping: 599, total: 599, paymentStatus: "succeeded" });
		expect((await payment(paidShipping.body.id)).amount).toBe(599);

		const saved = orders().shippingRates;
		orders().shippingRates = { flatCents: 0, freeThresholdCents: 0 };
		try {
			const { c: d } = await buyerWithCart(1500, 5);
			expect((await shop.http.post("/api/cart/promo", { code: await fullCode() }, { token: d.token })).status).toBe(200);
			const free = await checkout(d);
			expect(free.body).toMatchObject({ total: 0, status: "confirmed", paymentStatus: "succeeded" });
			expect(await payment(free.body.id)).toBeNull();
			const refund = await shop.http.post(`/api/orders/${free.body.id}/refund`, { reason: "goodwill" }, { token: adminToken });
			expect(refund.status).toBe(409);
			expect(refund.body.type).toBe("NOT_REFUNDABLE");
		} finally {
			orders().shippingRates = saved;
		}
	});

	test("oversell: stock 5, 30 concurrent checkouts of 1 → 5 orders, 25 × 409, stock 0, 5 payments", async () => {
		const v = await variant(2500, 5);
		const buyers = await Promise.all(Array.from({ length: 30 }, () => customer()));
		for (const b of buyers) await addToCart(b.token, v.variantId, 1);

		const calls = jest.spyOn(orders(), "callFrom");
		let releases: number;
		let results: Awaited<ReturnType<typeof checkout>>[];
		try {
			results = await Promise.all(buyers.map((b) => checkout(b)));
			releases = calls.mock.calls.filter(([, action]) => action === "products.release").length;
		} finally {
			calls.mockRestore();
		}
		const statuses = results.map((r) => r.status).sort();
		expect(statuses.filter((s) => s === 201)).toHaveLength(5);
		expect(statuses.filter((s) => s === 409)).toHaveLength(25);
		expect(await stockOf(v.variantId)).toBe(0);
		// A refusal says the reserve did nothing: nothing to release, no marker left per refused buyer.
		expect(releases).toBe(0);

		const confirmed = results.filter((r) => r.status === 201).map((r) => r.body);
		for (const o of confirmed) expect((await payment(o.id)).status).toBe("succeeded");
		// The 25 refused orders were cancelled before any charge.
		const losers = await Promise.all(buyers.map((b) => shop.http.get("/api/orders", { token: b.token })));
		const cancelled = losers.flatMap((l) => l.body.rows).filter((o: any) => o.status === "cancelled");
		expect(cancelled).toHaveLength(25);
		for (const o of cancelled) {
			expect(o).toMatchObject({ cancelReason: "insufficient_stock", paymentStatus: "cancelled" });
			expect(await payment(o.id)).toBeNull();
		}
	}, 60_000);

	test("double submit: 10 concurrent checkouts with one key → one order, one payment, identical bodies", async () => {
		const { c, v } = await buyerWithCart(1500, 10);
		const k = key();

		const results = await Promise.all(Array.from({ length: 10 }, () => checkout(c, { key: k })));
		expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 201]);
		const bodies = new Set(results.map((r) => JSON.stringify(r.body)));
		expect(bodies.size).toBe(1);

		const list = await shop.http.get("/api/orders", { token: c.token });
		expect(list.body.total).toBe(1);
		expect(await stockOf(v.variantId)).toBe(9);
		const pay = await payment(results[0].body.id);
		expect(pay).toMatchObject({ status: "succeeded", amount: 1500 + 599 });
		expect(recorder.events.filter((e) => e.name === "payment.succeeded" && e.payload.orderId === pay.orderId)).toHaveLength(1);

		// Later, the same key and body still answer with the same order.
		const again = await checkout(c, { key: k });
		expect(again.status).toBe(200);
		expect(again.body).toEqual(results[0].body);
	});

	describe("a key its request left running (the node died before answering)", () => {
		const keys = () => orders().db.idempotency_keys;
		const body = (c: { addressId: string }) => ({ shippingAddressId: c.addressId, paymentMethod: { type: "card", token: "pm_card_visa" } });
		/** A retry of `k` waits (briefly here) for the request still holding the key, and is told it is in progress. */
		async function expectInProgress(c: Awaited<ReturnType<typeof buyerWithCart>>["c"], k: string) {
			orders().settings.idempotencyWaitMs = 200;
			try {
				expect((await checkout(c, { key: k })).body.type).toBe("IDEMPOTENCY_KEY_IN_PROGRESS");
			} finally {
				orders().settings.idempotencyWaitMs = 8000;
			}
		}

		test("its checkout finished: a retry answers with the order at once, and makes no second one", async () => {
			const { c } = await buyerWithCart(1800, 5);
			const k = key();
			const first = await checkout(c, { key: k });
			expect(first.status).toBe(201);
			// As if the node died between the end of the checkout and storing its answer.
			await keys().updateOne({ userId: c.userId, key: k }, { $set: { status: "running" }, $unset: { response: true } });
			const started = Date.now();
			const retry = await checkout(c, { key: k });
			expect(retry.status).toBe(200);
			expect(retry.body.id).toBe(first.body.id);
			expect(Date.now() - started).toBeLessThan(4000);
			expect((await shop.http.get("/api/orders", { token: c.token })).body.total).toBe(1);
			expect(await keys().findOne({ userId: c.userId, key: k })).toMatchObject({ status: "completed" });
		});

		test("it died before making its order: freed once older than the limit, and the retry that finds it so checks out", async () => {
			const { c } = await buyerWithCart(1800, 5);
			const k = key();
			const claimed = async (ageMs: number) =>
				keys().insert({ userId: c.userId, key: k, fingerprint: requestFingerprint(body(c)), orderId: `never-${k}`, status: "running", createdAt: new Date(Date.now() - ageMs) });
			const young = await claimed(1000);
			await expectInProgress(c, k);
			await keys().removeOne({ id: young.id });
			await claimed(3 * 60_000);
			const retried = await checkout(c, { key: k });
			expect(retried.status).toBe(201);
			expect((await checkout(c, { key: k })).body.id).toBe(retried.body.id);
			expect((await shop.http.get("/api/orders", { token: c.token })).body.total).toBe(1);
		});

		test("its holder's node came back as a new run (a crash in a cluster): a young key is freed at once, and the retry checks out", async () => {
			const { c } = await buyerWithCart(1800, 5);
			const k = key();
			const me = { nodeID: shop.broker.nodeID, instanceID: shop.broker.instanceID };
			const claimed = (holder: typeof me) => keys().insert({ userId: c.userId, key: k, fingerprint: requestFingerprint(body(c)), orderId: `never-${k}`, status: "running", createdAt: new Date(), holder });
			// Held by this very run: its request may still be on its way.
			const mine = await claimed(me);
			await expectInProgress(c, k);
			await keys().removeOne({ id: mine.id });
			// Held by this node's previous run: over.
			await claimed({ ...me, instanceID: "a-run-that-died" });
			const started = Date.now();
			const retried = await checkout(c, { key: k });
			expect(retried.status).toBe(201);
			expect(Date.now() - started).toBeLessThan(4000);
			expect((await shop.http.get("/api/orders", { token: c.token })).body.total).toBe(1);
			expect(await keys().findOne({ userId: c.userId, key: k })).toMatchObject({ status: "completed", holder: me });
		});

		test("a repeat waiting for a first request that then fails and frees the key checks out itself", async () => {
			// As when the gateway re-sends a call that timed out because a node died under the first.
			const { c } = await buyerWithCart(1800, 5);
			const k = key();
			const first = await keys().insert({ userId: c.userId, key: k, fingerprint: requestFingerprint(body(c)), orderId: `undone-${k}`, status: "running", createdAt: new Date() });
			setTimeout(() => void keys().removeOne({ id: first.id }), 300);
			const repeat = await checkout(c, { key: k });
			expect(repeat.status).toBe(201);
			expect(repeat.body.status).toBe("confirmed");
			expect((await shop.http.get("/api/orders", { token: c.token })).body.total).toBe(1);
		});

		test("a single process restarted (no transporter) settles every such key once its services have started", async () => {
			const { c } = await buyerWithCart(1800, 5);
			const k = key();
			await keys().insert({ userId: c.userId, key: k, fingerprint: requestFingerprint(body(c)), orderId: `never-${k}`, status: "running", createdAt: new Date() });
			shop.broker.broadcastLocal("$broker.started");
			await waitUntil(async () => (await keys().findOne({ userId: c.userId, key: k })) === null);
			expect((await checkout(c, { key: k })).status).toBe(201);
		});
	});

	test("idempotency: key required (400), another body with the same key 409, a decline replays as 402", async () => {
		const { c, v } = await buyerWithCart(1200, 10);

		const missing = await checkout(c, { key: "" });
		expect(missing.status).toBe(400);
		expect(missing.body.message).toMatch(/Idempotency-Key/);

		const k = key();
		expect((await checkout(c, { key: k, token: "pm_card_chargeDeclinedInsufficientFunds" })).status).toBe(402);
		const replay = await checkout(c, { key: k, token: "pm_card_chargeDeclinedInsufficientFunds" });
		expect(replay.status).toBe(402);
		// The replay ran nothing again, and announced nothing again.
		expect(recorder.events.filter((e) => e.name === "checkout.failed" && e.payload.userId === c.userId)).toHaveLength(1);
		expect(replay.body.type).toBe("PAYMENT_DECLINED");
		const other = await checkout(c, { key: k, token: "pm_card_visa" });
		expect(other.status).toBe(409);
		expect(other.body.type).toBe("IDEMPOTENCY_KEY_REUSED");
		// Only the one declined order exists.
		expect((await shop.http.get("/api/orders", { token: c.token })).body.total).toBe(1);
		expect(await stockOf(v.variantId)).toBe(10);
	});

	test("empty cart → 409; unknown address → 422 naming the field", async () => {
		const c = await customer();
		const empty = await checkout(c);
		expect(empty.status).toBe(409);
		expect(empty.body.type).toBe("CART_EMPTY");

		const v = await variant(1000, 3);
		await addToCart(c.token, v.variantId, 1);
		const bad = await checkout(c, { body: { shippingAddressId: "nope", paymentMethod: { type: "card", token: "pm_card_visa" } } });
		expect(bad.status).toBe(422);
		expect(bad.body.data).toEqual([expect.objectContaining({ field: "shippingAddressId" })]);
		const badMethod = await checkout(c, { body: { shippingAddressId: c.addressId, paymentMethod: { type: "cash" } } });
		expect(badMethod.status).toBe(422);
	});

	test("a billing address as shippingAddressId → 422 naming the field; nothing is reserved or charged, and the cart stays", async () => {
		const { c, v } = await buyerWithCart(2500, 4, 2);
		const billing = await shop.http.post("/api/me/addresses", { type: "billing", line1: "1 Ledger Row", city: "Leeds", postalCode: "LS1 1AA", country: "GB" }, { token: c.token });
		expect(billing.status).toBe(201);
		const res = await checkout(c, { body: { shippingAddressId: billing.body.id, paymentMethod: { type: "card", token: "pm_card_visa" } } });
		expect(res.status).toBe(422);
		expect(res.body.data).toEqual([expect.objectContaining({ field: "shippingAddressId", type: "notShipping", message: expect.stringContaining("billing address") })]);
		expect((await shop.http.get("/api/orders", { token: c.token })).body.total).toBe(0);
		expect(await stockOf(v.variantId)).toBe(4);
		expect((await shop.http.get("/api/cart", { token: c.token })).body.items).toHaveLength(1);
		// The shipping address still checks out, with a fresh key.
		expect((await checkout(c)).status).toBe(201);
	});

	test("client-sent prices and totals are ignored: the charge is the server's total", async () => {
		const { c, v } = await buyerWithCart(4200, 3);
		const res = await checkout(c, {
			body: {
				shippingAddressId: c.addressId,
				paymentMethod: { type: "card", token: "pm_card_visa", amount: 1 },
				total: 1,
				subtotal: 1,
				shipping: 0,
				discount: 4199,
				items: [{ variantId: v.variantId, quantity: 1, unitPrice: 1 }],
			},
		});
		expect(res.status).toBe(201);
		expect(res.body).toMatchObject({ subtotal: 4200, discount: 0, shipping: 599, total: 4799 });
		expect(res.body.items[0].unitPrice).toBe(4200);
		expect((await payment(res.body.id)).amount).toBe(4799);
	});

	describe("failures injected at each step are compensated", () => {
		async function failingCheckout(step: string, withPromo = false) {
			const { c, v } = await buyerWithCart(3000, 6, 2);
			let code: string | undefined;
			if (withPromo) {
				code = `FAIL${n}`;
				await promotion(code, 1);
				expect((await shop.http.post("/api/cart/promo", { code }, { token: c.token })).status).toBe(200);
			}
			orders().injectCheckoutFailure(step);
			const sent = key();
			const res = await checkout(c, { key: sent });
			orders().injectCheckoutFailure(null);
			const [order] = (await shop.http.get("/api/orders", { token: c.token })).body.rows;
			return { c, v, res, order, code, key: sent };
		}

		// Before the charge, the order's payment ends "cancelled" (nothing charged, nothing will be), not "pending" for ever.
		test.each([
			["reserveStock", "cancelled", ["created", "cancelled", "payment_cancelled"]],
			["consumePromo", "cancelled", ["created", "stock_reserved", "stock_released", "cancelled", "payment_cancelled"]],
			["checkAccount", "cancelled", ["created", "stock_reserved", "promo_consumed", "promo_released", "stock_released", "cancelled", "payment_cancelled"]],
			["charge", "cancelled", ["created", "stock_reserved", "promo_consumed", "promo_released", "stock_released", "cancelled", "payment_cancelled"]],
			["commitStock", "refunded", ["created", "stock_reserved", "promo_consumed", "payment_succeeded", "confirmed", "refunded", "promo_released", "stock_released", "cancelled"]],
		])("failure at %s: payment %s", async (step, paymentStatus, expectedLog) => {
			const { c, v, res, order, code } = await failingCheckout(step, true);
			expect(res.status).toBe(500);
			expect(res.text).not.toMatch(/Injected/);
			expect(order).toMatchObject({ status: "cancelled", cancelReason: "checkout_failed", paymentStatus });
			expect(await eventTypes(order.id)).toEqual(expectedLog);
			// The stored order is what its event log says.
			const events = (await shop.http.get(`/api/orders/${order.id}/events`, { token: adminToken })).body.rows;
			expect(rebuildOrderState(events)).toMatchObject({ status: "cancelled", paymentStatus });
			expect(await stockOf(v.variantId)).toBe(6);
			expect(await promoAvailable(code!)).toBe(true);
			const cart = await shop.http.get("/api/cart", { token: c.token });
			expect(cart.body.items).toHaveLength(1);
			// A server error frees the key: nothing else was stored for it.
		});

		test("a checkout waiting for 3-D Secure that fails afterwards stops that payment: nothing can be charged later, and the order says so", async () => {
			const { c, v } = await buyerWithCart(3000, 6, 2);
			orders().injectCheckoutFailure("publishOrder");
			const res = await checkout(c, { token: "pm_card_authenticationRequired" });
			orders().injectCheckoutFailure(null);
			expect(res.status).toBe(500);
			const [order] = (await shop.http.get("/api/orders", { token: c.token })).body.rows;
			// Before: paymentStatus "pending" for good, and the payment left waiting at the provider.
			expect(order).toMatchObject({ status: "cancelled", cancelReason: "checkout_failed", paymentStatus: "cancelled" });
			const pay = await payment(order.id);
			expect(pay).toMatchObject({ status: "failed", voided: true });
			const provider = (shop.broker.getLocalService("payments") as any).provider;
			expect(provider.charges.get(pay.providerPaymentId).status).toBe("canceled");
			expect(await stockOf(v.variantId)).toBe(6);
		});

		test("failure after the charge (confirming fails): exactly one refund, stock released; compensating again changes nothing", async () => {
			const { v, res, order } = await failingCheckout("confirmOrder");
			expect(res.status).toBe(500);
			expect(order).toMatchObject({ status: "cancelled", paymentStatus: "refunded", refundedAmount: 6000 });
			const pay = await payment(order.id);
			expect(pay).toMatchObject({ status: "refunded", amount: 6000 });
			expect(pay.refunds).toHaveLength(1);
			expect(pay.refunds[0]).toMatchObject({ amount: 6000, status: "succeeded" });
			expect(await stockOf(v.variantId)).toBe(6);
			const log = await eventTypes(order.id);
			expect(log).toEqual(["created", "stock_reserved", "payment_succeeded", "refunded", "stock_released", "cancelled"]);

			const failures = await orders().compensateCheckout(order.id, new Error("operator retry"));
			expect(failures).toEqual([]);
			expect((await payment(order.id)).refunds).toHaveLength(1);
			expect(await stockOf(v.variantId)).toBe(6);
			expect(await eventTypes(order.id)).toEqual(log);
			expect(recorder.events.filter((e) => e.name === "payment.refunded" && e.payload.orderId === order.id)).toEqual([expect.objectContaining({ payload: expect.objectContaining({ number: order.number }) })]);

			// The stored order is what its event log says.
			const stored = (await shop.http.get(`/api/orders/${order.id}`, { token: adminToken })).body;
			const events = (await shop.http.get(`/api/orders/${order.id}/events`, { token: adminToken })).body.rows;
			const rebuilt = rebuildOrderState(events);
			expect(rebuilt).toMatchObject({ status: stored.status, paymentStatus: stored.paymentStatus, refundedAmount: stored.refundedAmount, total: stored.total, number: stored.number });
		});

		test("a compensation that fails (refunds down) stays pending and recovery finishes it, refunding once; the key waits for it", async () => {
			const payments = shop.broker.getLocalService("payments") as any;
			const down = jest.spyOn(payments, "refundOnce").mockRejectedValue(new ServiceUnavailableError("provider down"));
			const { c, v, res, order, key: sent } = await failingCheckout("confirmOrder");
			down.mockRestore();
			// Money is held until the refund is made: the customer is told to retry, not that nothing happened.
			expect(res.status).toBe(503);
			expect(res.body).toMatchObject({ type: "CHECKOUT_BEING_UNDONE" });
			// Everything else was undone; only the refund is owed.
			expect(order).toMatchObject({ status: "cancelled", paymentStatus: "succeeded", refundedAmount: 0 });
			expect(await stockOf(v.variantId)).toBe(6);
			expect((await payment(order.id)).refunds).toEqual([]);
			// The key is still held: a retry waits for the undoing instead of charging a second time meanwhile.
			expect(await orders().db.idempotency_keys.findOne({ userId: c.userId, key: sent })).toMatchObject({ status: "running", orderId: order.id });

			await orders().recoverInterrupted(0);
			await orders().recoverInterrupted(0);
			const after = (await shop.http.get(`/api/orders/${order.id}`, { token: adminToken })).body;
			expect(after).toMatchObject({ status: "cancelled", paymentStatus: "refunded", refundedAmount: 6000 });
			expect((await payment(order.id)).refunds).toHaveLength(1);
			expect(await stockOf(v.variantId)).toBe(6);
			// Undone: the key is free, and the retry places the order.
			const retried = await checkout(c, { key: sent });
			expect(retried.status).toBe(201);
			expect(retried.body.id).not.toBe(order.id);
		});

		test("a failed checkout whose end could not be recorded (a full disk) is undone by the next scans, not after the stale window", async () => {
			const svc = orders();
			const payments = shop.broker.getLocalService("payments") as any;
			const down = jest.spyOn(payments, "refundOnce").mockRejectedValue(new ServiceUnavailableError("provider down"));
			const update = svc.db.orders.updateOne;
			// The store refuses the saga's end (compensation_failed) as a full disk would.
			const full = jest.spyOn(svc.db.orders, "updateOne").mockImplementation(function (this: unknown, query: any, change: any) {
				if (change?.$set?.["saga.state"]) return Promise.reject(new ServiceUnavailableError("The orders store cannot take writes right now"));
				return update.call(svc.db.orders, query, change);
			});
			const { c, res, order, key: sent } = await failingCheckout("confirmOrder");
			full.mockRestore();
			down.mockRestore();
			expect(res.status).toBe(503);
			expect(await svc.db.orders.findById(order.id)).toMatchObject({ saga: { state: "running", runner: { nodeID: svc.broker.nodeID, instanceID: svc.broker.instanceID } } });
			expect(await svc.db.idempotency_keys.findOne({ userId: c.userId, key: sent })).toMatchObject({ status: "running" });

			// Not driven here any more: the scan takes it once it has been still for compensationRetryMs, not 15 minutes.
			await svc.recoverInterruptedCheckouts();
			expect(await svc.db.orders.findById(order.id)).toMatchObject({ saga: { state: "running" } });
			await svc.db.orders.updateOne({ id: order.id }, { $set: { updatedAt: new Date(Date.now() - svc.settings.compensationRetryMs) } });
			await svc.recoverInterruptedCheckouts();
			await waitUntil(async () => (await payment(order.id)).status === "refunded");
			expect(await svc.db.orders.findById(order.id)).toMatchObject({ status: "cancelled", saga: { state: "compensated" } });
			expect((await checkout(c, { key: sent })).status).toBe(201);
		});

		test("the saga's journal costs no write of its own: each step's mark rides on that step's update", async () => {
			const svc = orders();
			const { c } = await buyerWithCart(2000, 5);
			const inserts = jest.spyOn(svc.db.orders, "insertMany");
			const updates = jest.spyOn(svc.db.orders, "updateOne");
			try {
				const res = await checkout(c);
				expect(res.status).toBe(201);
				const stored = await svc.db.orders.findById(res.body.id);
				expect(stored.saga).toEqual({ state: "completed", completed: svc.checkoutSaga.steps.map((s: { name: string }) => s.name), compensated: [], runner: { nodeID: svc.broker.nodeID, instanceID: svc.broker.instanceID } });
				// The order is created, then reserve, charge, confirm and the saga's end: one write each. The stock
				// commit writes nothing of its own: its mark and log entry ride on the saga's end.
				// (Conditional updates that matched nothing, e.g. from the payment event arriving, wrote nothing.)
				expect(inserts).toHaveBeenCalledTimes(1);
				const written = (await Promise.all(updates.mock.results.map((r) => r.value))).filter((doc) => doc?.id === res.body.id);
				expect(written).toHaveLength(4);
				expect(written[3].events.map((e: { type: string }) => e.type)).toEqual(["created", "stock_reserved", "payment_succeeded", "confirmed", "stock_committed"]);
			} finally {
				inserts.mockRestore();
				updates.mockRestore();
			}
		});

		test("the payment event of a checkout running here is left to its saga: no order reads or writes for it", async () => {
			const svc = orders();
			const { c } = await buyerWithCart(1800, 5);
			const handled = jest.spyOn(svc, "recordPaymentSucceeded");
			try {
				const res = await checkout(c);
				expect(res.status).toBe(201);
				expect(recorder.events.filter((e) => e.name === "payment.succeeded" && e.payload.orderId === res.body.id)).toHaveLength(1);
				expect(handled).not.toHaveBeenCalled();
				expect(svc.checkoutsHere.size).toBe(0);
				// Delivered again once the checkout is over (a catch-up, a replay), it changes nothing.
				const payload = recorder.events.find((e) => e.name === "payment.succeeded" && e.payload.orderId === res.body.id)!.payload;
				await svc.onPaymentEvent("payment.succeeded", payload, null);
				expect(handled).toHaveBeenCalledTimes(1);
				expect(await eventTypes(res.body.id)).toEqual(["created", "stock_reserved", "payment_succeeded", "confirmed", "stock_committed"]);
			} finally {
				handled.mockRestore();
			}
		});

		/** A checkout whose node "dies" at `step` after the charge: nothing is undone, and the order is left running. */
		async function diedAfterCharge(step: string) {
			const svc = orders();
			const dead = jest.spyOn(svc.checkoutSaga, "compensate").mockResolvedValue([]);
			const failed = await failingCheckout(step);
			dead.mockRestore();
			await svc.db.orders.updateOne({ id: failed.order.id }, { $set: { "saga.state": "running" } });
			return failed;
		}

		test("a checkout interrupted after the charge (the node died) rolls forward on recovery, and clears the cart it bought", async () => {
			const svc = orders();
			const { c, v, order } = await diedAfterCharge("confirmOrder");
			expect(order).toMatchObject({ status: "pending", paymentStatus: "succeeded" });
			expect((await shop.http.get("/api/cart", { token: c.token })).body.items).toHaveLength(1);

			await svc.recoverInterrupted(0);
			const after = (await shop.http.get(`/api/orders/${order.id}`, { token: adminToken })).body;
			expect(after).toMatchObject({ status: "confirmed", paymentStatus: "succeeded", refundedAmount: 0 });
			expect((await shop.http.get("/api/cart", { token: c.token })).body.items).toEqual([]);
			expect(await stockOf(v.variantId)).toBe(4);
			expect((await payment(order.id)).refunds).toEqual([]);
			expect(recorder.events.filter((e) => e.name === "order.confirmed" && e.payload.orderId === order.id)).toHaveLength(1);
			expect(await eventTypes(order.id)).toEqual(["created", "stock_reserved", "payment_succeeded", "confirmed", "stock_committed"]);
		});

		test("rolled forward by recovery, a checkout leaves the cart alone if the customer changed it since", async () => {
			const { c, order } = await diedAfterCharge("commitStock");
			const more = await variant(1200, 5);
			await addToCart(c.token, more.variantId, 1);
			await orders().recoverInterrupted(0);
			expect((await shop.http.get(`/api/orders/${order.id}`, { token: adminToken })).body.status).toBe("confirmed");
			expect((await shop.http.get("/api/cart", { token: c.token })).body.items).toHaveLength(2);
		});

		test("a node that died after the stock commit, before the saga's end was stored: recovery commits again (no change) and logs the commit once", async () => {
			const svc = orders();
			const { c, v } = await buyerWithCart(1500, 5);
			const res = await checkout(c);
			expect(res.status).toBe(201);
			expect(await stockOf(v.variantId)).toBe(4);
			// What the kill leaves: the commit made at the products service, the order's last write the confirmation.
			const steps: string[] = svc.checkoutSaga.steps.map((s: { name: string }) => s.name);
			const stored = await svc.db.orders.findById(res.body.id);
			await svc.db.orders.updateOne(
				{ id: res.body.id },
				{ $set: { "saga.state": "running", "saga.completed": steps.slice(0, steps.indexOf("commitStock")), events: stored.events.filter((e: { type: string }) => e.type !== "stock_committed") } },
			);
			await svc.recoverInterrupted(0);
			expect(await svc.db.orders.findById(res.body.id)).toMatchObject({ status: "confirmed", saga: { state: "completed" } });
			expect(await eventTypes(res.body.id)).toEqual(["created", "stock_reserved", "payment_succeeded", "confirmed", "stock_committed"]);
			expect(await stockOf(v.variantId)).toBe(4);
			expect(recorder.events.filter((e) => e.name === "order.confirmed" && e.payload.orderId === res.body.id)).toHaveLength(1);
		});

		/** The step's call to another service takes effect, but its answer is lost on the way back. */
		function loseAnswerOf(action: string) {
			const svc = orders();
			const call = svc.callFrom;
			return jest.spyOn(svc, "callFrom").mockImplementation(async function (this: unknown, ch: any, name: any, params: any) {
				const res = await call.call(svc, ch, name, params);
				if (name === action) throw new ServiceUnavailableError("the answer was lost");
				return res;
			});
		}

		/**
		 * A checkout whose node dies right after `step`'s call to another service answered, before the
		 * order recorded it: nothing is undone and the order is left running, as recovery finds it.
		 */
		async function checkoutDyingAfterCallOf(step: string, c: Awaited<ReturnType<typeof customer>>) {
			const svc = orders();
			const change = svc.changeOrder;
			const died = jest.spyOn(svc, "changeOrder").mockImplementation(async function (this: unknown, orderId: any, ch: any, journal: any) {
				if (journal?.step === step) throw new Error("node died");
				return change.call(svc, orderId, ch, journal);
			});
			const dead = jest.spyOn(svc.checkoutSaga, "compensate").mockResolvedValue([]);
			// Nor announced: a dead node announces nothing.
			const mute = jest.spyOn(svc, "announceFailedCheckout").mockResolvedValue(undefined);
			try {
				// Left running, not undone: the key stays held for recovery to settle (503, retry later).
				expect((await checkout(c)).body).toMatchObject({ code: 503, type: "CHECKOUT_BEING_UNDONE" });
			} finally {
				died.mockRestore();
				dead.mockRestore();
				mute.mockRestore();
			}
			const [placed] = (await shop.http.get("/api/orders", { token: c.token })).body.rows;
			await svc.db.orders.updateOne({ id: placed.id }, { $set: { "saga.state": "running" } });
			expect(await svc.db.orders.findById(placed.id)).toMatchObject({ status: "pending", saga: { state: "running" } });
			return placed;
		}

		test("a node that died after the provider charged, before the order recorded it: recovery undoes the checkout and refunds the charge once", async () => {
			const svc = orders();
			const { c, v } = await buyerWithCart(2500, 5);
			const placed = await checkoutDyingAfterCallOf("charge", c);
			expect(placed.paymentStatus).toBe("pending");
			expect(await payment(placed.id)).toMatchObject({ status: "succeeded", amount: placed.total });

			await svc.recoverInterrupted(0);
			await waitUntil(async () => (await payment(placed.id)).status === "refunded");
			await svc.recoverInterrupted(0);
			const after = (await shop.http.get(`/api/orders/${placed.id}`, { token: adminToken })).body;
			expect(after).toMatchObject({ status: "cancelled", paymentStatus: "refunded", refundedAmount: placed.total });
			expect((await payment(placed.id)).refunds).toHaveLength(1);
			expect(await stockOf(v.variantId)).toBe(5);
			// Announced as a failed checkout, once over both rounds: analytics counts it as started, and cancelled.
			const failed = recorder.events.filter((e) => e.name === "checkout.failed" && e.payload.orderId === placed.id);
			expect(failed).toEqual([expect.objectContaining({ payload: expect.objectContaining({ status: "cancelled", reason: "checkout_failed", number: placed.number }) })]);
		});

		test("a single process restarted (no transporter): the checkout its predecessor left running is finished once every service has started, not after the stale window", async () => {
			const { c, v } = await buyerWithCart(2000, 5);
			const placed = await checkoutDyingAfterCallOf("reserveStock", c);
			expect(await stockOf(v.variantId)).toBe(4);
			// What the broker of the restarted process announces once all its local services have started.
			shop.broker.broadcastLocal("$broker.started");
			await waitUntil(async () => (await shop.http.get(`/api/orders/${placed.id}`, { token: adminToken })).body.status === "cancelled");
			expect(await stockOf(v.variantId)).toBe(5);
		});

		test("a charge whose answer was lost (it went through, the call timed out): the checkout is undone and the charge refunded once", async () => {
			const svc = orders();
			const { c, v } = await buyerWithCart(1500, 5);
			const lost = loseAnswerOf("payments.charge");
			try {
				expect((await checkout(c)).status).toBe(503);
			} finally {
				lost.mockRestore();
			}
			const [placed] = (await shop.http.get("/api/orders", { token: c.token })).body.rows;
			expect(placed).toMatchObject({ status: "cancelled", paymentStatus: "refunded", refundedAmount: placed.total });
			expect(await payment(placed.id)).toMatchObject({ status: "refunded" });
			expect((await payment(placed.id)).refunds).toHaveLength(1);
			expect(await stockOf(v.variantId)).toBe(5);
			await svc.recoverInterrupted(0);
			expect((await payment(placed.id)).refunds).toHaveLength(1);
		});

		test("a reserve or a promo use whose answer was lost is undone with the rest: stock back, the use available again", async () => {
			for (const action of ["products.reserve", "cart.consumePromo"]) {
				const { c, v } = await buyerWithCart(2000, 4, 2);
				const code = `LOST${++n}`;
				await promotion(code, 1);
				expect((await shop.http.post("/api/cart/promo", { code }, { token: c.token })).status).toBe(200);
				const lost = loseAnswerOf(action);
				try {
					expect((await checkout(c)).status).toBe(503);
				} finally {
					lost.mockRestore();
				}
				const [placed] = (await shop.http.get("/api/orders", { token: c.token })).body.rows;
				// The charge was never asked for: nothing was charged, and the order says so.
				expect(placed).toMatchObject({ status: "cancelled", paymentStatus: "cancelled" });
				expect(await stockOf(v.variantId)).toBe(4);
				expect(await promoAvailable(code)).toBe(true);
				// The log says what was given back, and only that.
				const log = await eventTypes(placed.id);
				if (action === "products.reserve") expect(log).toEqual(["created", "stock_released", "cancelled", "payment_cancelled"]);
				else expect(log).toEqual(["created", "stock_reserved", "promo_released", "stock_released", "cancelled", "payment_cancelled"]);
			}
		});

		test("a reserve its products node rolled back as interrupted (it died mid-way and undid it when back): 503 and the key freed, so a retry with it places the order", async () => {
			const svc = orders();
			const { c, v } = await buyerWithCart(1900, 4);
			const call = svc.callFrom;
			// What the restarted node's sweep leaves: the order's reservation released before its reserve answers.
			const rolledBack = jest.spyOn(svc, "callFrom").mockImplementation(async function (this: unknown, ch: any, name: any, params: any) {
				if (name === "products.reserve") await call.call(svc, ch, "products.release", { orderId: params.orderId, reason: "expired" });
				return call.call(svc, ch, name, params);
			});
			const k = key();
			try {
				const first = await checkout(c, { key: k });
				expect([first.status, first.body.type]).toEqual([503, "SERVICE_UNAVAILABLE"]);
			} finally {
				rolledBack.mockRestore();
			}
			const again = await checkout(c, { key: k });
			expect(again.status).toBe(201);
			const rows = (await shop.http.get("/api/orders", { token: c.token })).body.rows;
			expect(rows.map((o: { status: string }) => o.status)).toEqual(["confirmed", "cancelled"]);
			expect(await stockOf(v.variantId)).toBe(3);
		});

		test("a node that died after reserving, before the order recorded it: recovery gives the stock back, and records the payment never charged, so the dead run's charge arriving late is refused", async () => {
			const svc = orders();
			const { c, v } = await buyerWithCart(1200, 3, 2);
			const placed = await checkoutDyingAfterCallOf("reserveStock", c);
			expect(await stockOf(v.variantId)).toBe(1);
			await svc.recoverInterrupted(0);
			const order = () => shop.http.get(`/api/orders/${placed.id}`, { token: adminToken }).then((r) => r.body);
			// Before: paymentStatus "pending" for good, and a charge request still on its way would have charged (then refunded).
			expect(await order()).toMatchObject({ status: "cancelled", paymentStatus: "cancelled" });
			expect(await stockOf(v.variantId)).toBe(3);
			expect(await eventTypes(placed.id)).toEqual(["created", "stock_released", "cancelled", "payment_cancelled"]);
			expect(await payment(placed.id)).toMatchObject({ status: "failed", voided: true, amount: placed.total, providerPaymentId: null });

			const provider = jest.spyOn((shop.broker.getLocalService("payments") as any).provider, "createPayment");
			try {
				const late = shop.broker.call("payments.charge", { orderId: placed.id, userId: c.userId, amount: placed.total, currency: placed.currency, paymentMethod: { type: "card", token: "pm_card_visa" } });
				await expect(late).rejects.toMatchObject({ code: 402 });
				expect(provider).not.toHaveBeenCalled();
			} finally {
				provider.mockRestore();
			}
			expect(await svc.db.orders.findById(placed.id)).toMatchObject({ status: "cancelled", paymentStatus: "cancelled", paidAmount: 0, pendingActions: [] });
		});

		/** The next recovery scan undoes the checkout: order cancelled, saga compensated, stock back to `stock`. */
		async function expectUndoneByNextScan(orderId: string, variantId: string, stock: number) {
			await orders().recoverInterruptedCheckouts();
			expect(await orders().db.orders.findById(orderId)).toMatchObject({ status: "cancelled", saga: { state: "compensated" } });
			expect(await stockOf(variantId)).toBe(stock);
		}

		test("a checkout run by an earlier run of this node (it restarted) is finished by the next scan, not after the stale window", async () => {
			const svc = orders();
			const { c, v } = await buyerWithCart(1200, 3, 2);
			const placed = await checkoutDyingAfterCallOf("reserveStock", c);
			// Run by this run, as far as anyone knows it is still running: left alone.
			await svc.recoverInterruptedCheckouts();
			expect(await svc.db.orders.findById(placed.id)).toMatchObject({ status: "pending", saga: { state: "running" } });
			expect(await stockOf(v.variantId)).toBe(1);

			await svc.db.orders.updateOne({ id: placed.id }, { $set: { "saga.runner.instanceID": "an-earlier-run" } });
			await expectUndoneByNextScan(placed.id, v.variantId, 3);
		});

		test("a runner that comes back after its checkout was taken over stops without undoing anything; the new run finishes it and answers the key", async () => {
			const svc = orders();
			const { c, v } = await buyerWithCart(1500, 4);
			const k = key();
			const change = svc.changeOrder;
			// Paused past the point where another node took the checkout over, then failing at confirm.
			const paused = jest.spyOn(svc, "changeOrder").mockImplementation(async function (this: unknown, orderId: any, ch: any, journal: any) {
				if (journal?.step === "confirmOrder") {
					await svc.db.orders.updateOne({ id: orderId }, { $set: { "saga.runner": { nodeID: svc.broker.nodeID, instanceID: "a-later-run" } } });
					throw new Error("confirm failed");
				}
				return change.call(svc, orderId, ch, journal);
			});
			let first;
			try {
				first = await checkout(c, { key: k });
			} finally {
				paused.mockRestore();
			}
			expect(first.status).toBe(503);
			const [placed] = (await shop.http.get("/api/orders", { token: c.token })).body.rows;
			// Nothing undone by the run that lost it: the order, its stock and its payment are as they were.
			expect(await svc.db.orders.findById(placed.id)).toMatchObject({ status: "pending", paymentStatus: "succeeded", saga: { state: "running" } });
			expect(await stockOf(v.variantId)).toBe(3);
			expect((await payment(placed.id)).refunds).toEqual([]);
			expect(await svc.db.idempotency_keys.findOne({ userId: c.userId, key: k })).toMatchObject({ status: "running" });

			// The run that took it over (an earlier run of this node, as far as this one can tell) finishes it.
			await svc.recoverInterruptedCheckouts();
			expect(await svc.db.orders.findById(placed.id)).toMatchObject({ status: "confirmed", saga: { state: "completed" } });
			const retried = await checkout(c, { key: k });
			expect(retried.status).toBe(200);
			expect(retried.body).toMatchObject({ id: placed.id, status: "confirmed" });
			expect(await stockOf(v.variantId)).toBe(3);
		});

		test("a checkout whose undoing failed (a service it needed was down) is undone again a few seconds later", async () => {
			const svc = orders();
			const { c, v } = await buyerWithCart(1200, 3, 2);
			const placed = await checkoutDyingAfterCallOf("reserveStock", c);
			await svc.db.orders.updateOne({ id: placed.id }, { $set: { "saga.state": "compensation_failed" } });
			// Just failed: not yet.
			await svc.recoverInterruptedCheckouts();
			expect(await svc.db.orders.findById(placed.id)).toMatchObject({ saga: { state: "compensation_failed" } });

			await svc.db.orders.updateOne({ id: placed.id }, { $set: { updatedAt: new Date(Date.now() - svc.settings.compensationRetryMs) } });
			await expectUndoneByNextScan(placed.id, v.variantId, 3);
		});

		test("a checkout whose node died after publishing, before its journal said so: recovery completes it without announcing twice", async () => {
			const svc = orders();
			const { c, v } = await buyerWithCart(2000, 5);
			const res = await checkout(c);
			expect(res.status).toBe(201);
			const announced = () => recorder.events.filter((e) => e.payload.orderId === res.body.id && e.name.startsWith("order.")).map((e) => e.name);
			expect(announced()).toEqual(["order.created", "order.confirmed"]);
			await svc.db.orders.updateOne({ id: res.body.id }, { $set: { "saga.state": "running" }, $pull: { "saga.completed": "publishOrder" } });

			await svc.recoverInterrupted(0);
			await svc.recoverInterrupted(0);
			expect(await svc.db.orders.findById(res.body.id)).toMatchObject({ status: "confirmed", saga: { state: "completed", completed: expect.arrayContaining(["publishOrder"]) } });
			expect(announced()).toEqual(["order.created", "order.confirmed"]);
			expect(await stockOf(v.variantId)).toBe(4);
			expect((await payment(res.body.id)).refunds).toEqual([]);
		});

		test("the recovery scan reads orders through indexes once no cancellation from before follow-ups is left, and adopts one that is", async () => {
			const svc = orders();
			const { c, v } = await buyerWithCart(2200, 5);
			const res = await checkout(c);
			expect(res.status).toBe(201);
			// Cancelled by a build before follow-ups: its release and refund were still owed.
			await svc.db.orders.updateOne({ id: res.body.id }, { $set: { status: "cancelled", cancelReason: "customer_request", cancelledAt: new Date(), cancellation: "pending" } });
			// As at a start: such orders are only ever in a store written before this run.
			svc.legacyCancellationsLeft = undefined;
			const nedb = (svc.db.orders.backend as any).db;
			const queries: Record<string, unknown>[] = [];
			const find = svc.db.orders.find.bind(svc.db.orders);
			const spy = jest.spyOn(svc.db.orders, "find").mockImplementation((query: any, opts: any) => {
				queries.push(query);
				return find(query, opts);
			});
			try {
				await svc.recoverInterrupted(0);
				await waitUntil(async () => (await payment(res.body.id)).status === "refunded");
				expect(await svc.db.orders.findById(res.body.id)).toMatchObject({ cancellation: null, pendingActions: [], refundedAmount: res.body.total });
				expect(await stockOf(v.variantId)).toBe(5);
				// One more scan finds none left; from then on no query of the scan reads the whole store.
				await svc.recoverInterrupted(0);
				queries.length = 0;
				await svc.recoverInterrupted(0);
				expect(queries.length).toBeGreaterThan(0);
				const all = nedb.getAllData().length;
				for (const query of queries) expect({ query, readsEveryOrder: nedb._getRawCandidates(query).length >= all }).toEqual({ query, readsEveryOrder: false });
			} finally {
				spy.mockRestore();
			}
		});
	});
});
