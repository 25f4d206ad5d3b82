/**
 * One checkout of a cart at a time, whatever the Idempotency-Keys (a double click in a client that
 * makes a key per click, two tabs): checkouts pay through Stripe (the fake server, answering a
 * little late as over a real network), so several of them run at once and interleave. The cart is
 * claimed by the first; the others are refused with 409 CHECKOUT_IN_PROGRESS (or find the cart
 * empty once it is bought), and the unpaid-orders limit holds under the same race.
 */
import crypto from "node:crypto";
import { startShop, type Shop } from "../helpers/shop";
import { startFakeStripe, type FakeStripe } from "../helpers/fake-stripe";
import { setEnv } from "../helpers/env";
import { waitFor } from "../helpers/wait";
import { registerCustomer, createProduct, addToCart as addItem, checkout as checkoutWith, login, type Customer } from "../helpers/flows";
import { requestFingerprint } from "../../lib/idempotency";

const ADMIN = { email: "concurrency-admin@example.com", password: "Admin-Passw0rd-42!" };
/** How late the fake Stripe answers: long enough for checkouts sent together to overlap. */
const STRIPE_LATENCY_MS = 150;

// Each test drives several real services through HTTP on a shared, small machine.
jest.setTimeout(30_000);

describe("concurrent checkouts of one cart", () => {
	let shop: Shop;
	let fake: FakeStripe;
	let admin: string;
	let restoreEnv: () => void;

	const cartService = () => shop.broker.getLocalService("cart") as any;
	const orders = () => shop.broker.getLocalService("orders") as any;

	const customer = () => registerCustomer(shop.http);
	const variant = async (price: number, stock: number) => (await createProduct(shop.http, admin, { price, stock })).variantId;
	const addToCart = (c: Customer, variantId: string, quantity = 1) => addItem(shop.http, c.token, variantId, quantity);
	const checkout = (c: Customer, card = "pm_card_visa", key: string = crypto.randomUUID()) => checkoutWith(shop.http, c, key, card);

	/** `count` checkouts of the customer's cart sent at once, each with its own key. */
	const checkoutsAtOnce = (c: Customer, count: number, card = "pm_card_visa") => Promise.all(Array.from({ length: count }, () => checkout(c, card)));

	const stockOf = async (variantId: string) => (await shop.broker.call<any[], any>("products.getVariants", { ids: [variantId] }))[0].stock as number;
	const ordersOf = async (c: Customer) => (await shop.http.get("/api/orders?pageSize=100", { token: c.token })).body.rows as any[];
	const chargesOf = (c: Customer) => fake.requestsTo("/v1/payment_intents").filter((r) => r.form["metadata[userId]"] === c.userId);
	const waitingForPayment = async (c: Customer) => (await ordersOf(c)).filter((o) => o.status === "pending" && o.paymentStatus === "pending");
	/** `action`, called by the checkout, answers `ms` late, as a service on another node does. */
	function slowCallsTo(action: string, ms: number) {
		const svc = orders();
		const call = svc.callFrom;
		return jest.spyOn(svc, "callFrom").mockImplementation(async function (this: unknown, c: any, name: any, params: any, opts?: any) {
			if (name === action) await new Promise((r) => setTimeout(r, ms));
			return call.call(svc, c, name, params, opts);
		});
	}
	/** Whether the order still holds the customer's cart (releasing an order's claim says so; it changes nothing otherwise). */
	const holdsCart = async (c: Customer, orderId: string) => (await shop.broker.call<any, any>("cart.releaseCheckout", { userId: c.userId, orderId })).released as boolean;

	beforeAll(async () => {
		fake = await startFakeStripe();
		fake.delayAnswers(STRIPE_LATENCY_MS);
		restoreEnv = setEnv({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, STRIPE_SECRET_KEY: "sk_test_concurrency_spec", STRIPE_API_BASE: fake.url, STRIPE_WEBHOOK_SECRET: undefined });
		shop = await startShop({ services: ["users", "products", "cart", "orders", "payments"] });
		admin = await login(shop.http, ADMIN.email, ADMIN.password);
	}, 30_000);
	afterAll(async () => {
		await shop?.stop();
		await fake?.stop();
		restoreEnv?.();
	});

	test("the payments go through Stripe, answering late", () => {
		expect((shop.broker.getLocalService("payments") as any).provider.name).toBe("stripe");
	});

	test("several checkouts with different keys at once: one order, one charge, the stock taken once; the others 409", async () => {
		const c = await customer();
		const v = await variant(2000, 10);
		await addToCart(c, v, 2);

		const answers = await checkoutsAtOnce(c, 5);
		const placed = answers.filter((r) => r.status === 201);
		expect(placed).toHaveLength(1);
		const refused = answers.filter((r) => r.status !== 201);
		expect(refused.map((r) => r.status)).toEqual([409, 409, 409, 409]);
		for (const r of refused) expect(["CHECKOUT_IN_PROGRESS", "CART_EMPTY"]).toContain(r.body.type);
		// Sent together, at least one found the first still running (not only its empty cart afterwards).
		const inProgress = refused.filter((r) => r.body.type === "CHECKOUT_IN_PROGRESS");
		expect(inProgress.length).toBeGreaterThan(0);
		expect(inProgress[0].body.message).toBe("Another checkout of this cart is in progress");

		expect(placed[0].body).toMatchObject({ status: "confirmed", paymentStatus: "succeeded", subtotal: 4000 });
		expect((await ordersOf(c)).map((o) => o.id)).toEqual([placed[0].body.id]);
		expect(chargesOf(c)).toHaveLength(1);
		expect(await stockOf(v)).toBe(8);
		expect((await shop.http.get("/api/cart", { token: c.token })).body.items).toEqual([]);
		expect(await holdsCart(c, placed[0].body.id)).toBe(false);
	});

	test("a key refused because another checkout held the cart is free again: retried with it, the checkout runs", async () => {
		const c = await customer();
		const v = await variant(1500, 5);
		await addToCart(c, v);
		const keys = [crypto.randomUUID(), crypto.randomUUID()];
		const answers = await Promise.all(keys.map((k) => checkout(c, "pm_card_visa", k)));
		const lost = answers.findIndex((r) => r.body.type === "CHECKOUT_IN_PROGRESS");
		expect(lost).toBeGreaterThanOrEqual(0);
		expect(answers[1 - lost].status).toBe(201);

		await addToCart(c, v);
		const retried = await checkout(c, "pm_card_visa", keys[lost]);
		expect(retried.status).toBe(201);
		expect(await stockOf(v)).toBe(3);
	});

	test("checkouts at once that would pass the unpaid-orders limit: never more than 3 orders waiting for payment", async () => {
		const c = await customer();
		// Two orders already wait for 3-D Secure.
		for (let i = 0; i < 2; i++) {
			await addToCart(c, await variant(1000, 10));
			expect((await checkout(c, "pm_card_authenticationRequired")).status).toBe(201);
		}
		expect(await waitingForPayment(c)).toHaveLength(2);

		await addToCart(c, await variant(1000, 10));
		// The address comes from another node: each checkout counts, then waits a moment before its order exists.
		const slow = slowCallsTo("users.getAddress", 100);
		const answers = await checkoutsAtOnce(c, 4, "pm_card_authenticationRequired").finally(() => slow.mockRestore());
		expect(await waitingForPayment(c)).toHaveLength(3);
		expect(answers.filter((r) => r.status === 201)).toHaveLength(1);
		for (const r of answers.filter((a) => a.status !== 201)) {
			expect(r.status).toBe(409);
			expect(["CHECKOUT_IN_PROGRESS", "CART_EMPTY", "TOO_MANY_UNPAID_ORDERS"]).toContain(r.body.type);
		}

		// Refilled, the cart cannot be bought while three wait: the same answer and message as ever.
		const v = await variant(1000, 10);
		await addToCart(c, v);
		const fourth = await checkoutsAtOnce(c, 3, "pm_card_authenticationRequired");
		expect(fourth.map((r) => r.status)).toEqual([409, 409, 409]);
		const tooMany = fourth.find((r) => r.body.type === "TOO_MANY_UNPAID_ORDERS");
		expect(tooMany?.body.message).toBe("You have 3 orders waiting for payment: complete or cancel one first");
		expect(await waitingForPayment(c)).toHaveLength(3);
		expect(await stockOf(v)).toBe(10);
		expect(chargesOf(c)).toHaveLength(3);

		// The refusal let the cart go: once one of the three is cancelled, the next checkout goes through.
		const [oldest] = (await waitingForPayment(c)).slice(-1);
		expect((await shop.http.post(`/api/orders/${oldest.id}/cancel`, {}, { token: c.token })).status).toBe(200);
		expect((await checkout(c, "pm_card_authenticationRequired")).status).toBe(201);
	});

	test("a declined checkout lets the cart go: the next checkout of the same cart goes through", async () => {
		const c = await customer();
		const v = await variant(2500, 4);
		await addToCart(c, v, 2);
		const declined = await checkout(c, "pm_card_chargeDeclined");
		expect(declined.status).toBe(402);
		const [failed] = await ordersOf(c);
		expect(failed).toMatchObject({ status: "cancelled" });
		expect(await holdsCart(c, failed.id)).toBe(false);

		const paid = await checkout(c);
		expect(paid.status).toBe(201);
		expect(await stockOf(v)).toBe(2);
	});

	test("a checkout refused before its order exists (unknown address) leaves no claim behind", async () => {
		const c = await customer();
		await addToCart(c, await variant(900, 3));
		const bad = await shop.http.post(
			"/api/orders",
			{ shippingAddressId: "no-such-address", paymentMethod: { type: "card", token: "pm_card_visa" } },
			{ token: c.token, headers: { "Idempotency-Key": crypto.randomUUID() } },
		);
		expect(bad.status).toBe(422);
		expect((await checkout(c)).status).toBe(201);
	});

	test("a claim whose checkout no longer runs (no key running, no order running) is let go at once; one that runs is respected", async () => {
		const c = await customer();
		const v = await variant(1200, 5);
		await addToCart(c, v);
		// What a node that died before its order existed left (its key since freed), or a claim that landed
		// after its checkout's release: the cart claimed, nothing running.
		await shop.broker.call("cart.snapshot", { userId: c.userId, claimFor: "order-of-a-dead-node" });
		const after = await checkout(c);
		expect(after.status).toBe(201);
		expect(await stockOf(v)).toBe(4);

		// A checkout still running (its key running) keeps the cart: a second one is refused, naming it.
		await addToCart(c, v);
		const keys = orders().db.idempotency_keys;
		await keys.insert({ userId: c.userId, key: crypto.randomUUID(), fingerprint: "f", orderId: "order-running", status: "running", createdAt: new Date() });
		await shop.broker.call("cart.snapshot", { userId: c.userId, claimFor: "order-running" });
		const refused = await checkout(c);
		expect(refused.status).toBe(409);
		expect(refused.body).toMatchObject({ type: "CHECKOUT_IN_PROGRESS", data: { heldBy: "order-running" } });
		expect(await holdsCart(c, "order-running")).toBe(true);
	});

	test("a claim nobody lets go ends with its lease", async () => {
		const c = await customer();
		const lease = cartService().settings.checkoutLeaseMs;
		cartService().settings.checkoutLeaseMs = 300;
		try {
			await shop.broker.call("cart.snapshot", { userId: c.userId, claimFor: "order-a" });
			await expect(shop.broker.call("cart.snapshot", { userId: c.userId, claimFor: "order-b" })).rejects.toMatchObject({ type: "CHECKOUT_IN_PROGRESS" });
			await new Promise((r) => setTimeout(r, 350));
			await expect(shop.broker.call("cart.snapshot", { userId: c.userId, claimFor: "order-b" })).resolves.toMatchObject({ items: [] });
		} finally {
			cartService().settings.checkoutLeaseMs = lease;
		}
	});

	test("a request that died holding the cart before its order existed: once its key is freed, a retry with that key is not held back by the claim", async () => {
		const c = await customer();
		const v = await variant(1300, 5);
		await addToCart(c, v);
		const key = crypto.randomUUID();
		// What such a request left: its key running with the order id it chose, and the cart claimed for that order.
		const keys = (shop.broker.getLocalService("orders") as any).db.idempotency_keys;
		const orderId = "order-of-a-request-that-died";
		const body = { shippingAddressId: c.addressId, paymentMethod: { type: "card", token: "pm_card_visa" } };
		await keys.insert({ userId: c.userId, key, fingerprint: requestFingerprint(body), orderId, status: "running", createdAt: new Date(Date.now() - 10 * 60_000) });
		await shop.broker.call("cart.snapshot", { userId: c.userId, claimFor: orderId });
		const retry = await checkout(c, "pm_card_visa", key);
		expect(retry.status).toBe(201);
		expect(await stockOf(v)).toBe(4);
	});

	test("a checkout that runs out of time after claiming the cart still lets it go: undoing is not held to the request's deadline", async () => {
		const c = await customer();
		const v = await variant(1400, 5);
		await addToCart(c, v);
		// The address answers after the request's deadline: the next call of the checkout is skipped, and so
		// would its undoing be.
		const slow = slowCallsTo("users.getAddress", 400);
		const body = { shippingAddressId: c.addressId, paymentMethod: { type: "card", token: "pm_card_visa" } };
		const meta = { user: { id: c.userId, role: "customer", sid: "s" }, idempotencyKey: crypto.randomUUID() };
		try {
			await expect(shop.broker.call("orders.checkout", body, { timeout: 200, retries: 0, meta })).rejects.toMatchObject({ name: "RequestTimeoutError" });
			await new Promise((r) => setTimeout(r, 500));
		} finally {
			slow.mockRestore();
		}
		const next = await checkout(c);
		expect(next.status).toBe(201);
		expect(await stockOf(v)).toBe(4);
	});

	test("a sale whose request runs out of time just after the stock is committed still empties the cart and lets it go", async () => {
		const c = await customer();
		const v = await variant(1500, 5);
		await addToCart(c, v);
		// The deadline passes while the stock is committed: the steps after it are past the request's time.
		const svc = orders();
		const call = svc.callFrom;
		const slow = jest.spyOn(svc, "callFrom").mockImplementation(async function (this: unknown, ck: any, name: any, params: any, opts?: any) {
			const answer = await call.call(svc, ck, name, params, opts);
			if (name === "products.commit") await new Promise((r) => setTimeout(r, 400));
			return answer;
		});
		const body = { shippingAddressId: c.addressId, paymentMethod: { type: "card", token: "pm_card_visa" } };
		const meta = { user: { id: c.userId, role: "customer", sid: "s" }, idempotencyKey: crypto.randomUUID() };
		try {
			await shop.broker.call("orders.checkout", body, { timeout: 300, retries: 0, meta }).catch(() => null);
			await waitFor(() => shop.http.get("/api/orders", { token: c.token }), (res) => res.body.rows[0]?.status === "confirmed");
			await waitFor(() => shop.http.get("/api/cart", { token: c.token }), (res) => res.body.items.length === 0);
		} finally {
			slow.mockRestore();
		}
		await addToCart(c, v);
		const next = await checkout(c);
		expect(next.status).toBe(201);
	});

	test("a clear for an order that outlived its claim leaves alone the cart another checkout holds now", async () => {
		const c = await customer();
		const v = await variant(1600, 5);
		await addToCart(c, v);
		const version = (await shop.broker.call<any, any>("cart.snapshot", { userId: c.userId })).version;
		// Order B holds the cart (A's lease ran out); A, finishing late, clears the cart as it bought it.
		await shop.broker.call("cart.snapshot", { userId: c.userId, claimFor: "order-b" });
		const cleared = await shop.broker.call<any, any>("cart.clear", { userId: c.userId, version, orderId: "order-a" });
		expect(cleared).toEqual({ cleared: false });
		expect((await shop.http.get("/api/cart", { token: c.token })).body.items).toHaveLength(1);
		expect(await holdsCart(c, "order-b")).toBe(true);
	});

	test("a checkout left half-done by a dying node holds its cart until recovery undoes it, which lets the cart go", async () => {
		const c = await customer();
		const v = await variant(1800, 5);
		await addToCart(c, v);
		const svc = orders();
		// The node dies at reserveStock: nothing is undone, the order is left running as recovery finds it.
		const dead = jest.spyOn(svc.checkoutSaga, "compensate").mockResolvedValue([]);
		svc.injectCheckoutFailure("reserveStock");
		try {
			expect((await checkout(c)).status).toBe(503);
		} finally {
			svc.injectCheckoutFailure(null);
			dead.mockRestore();
		}
		const [interrupted] = await ordersOf(c);
		await svc.db.orders.updateOne({ id: interrupted.id }, { $set: { "saga.state": "running" } });

		const blocked = await checkout(c);
		expect(blocked.status).toBe(409);
		expect(blocked.body.type).toBe("CHECKOUT_IN_PROGRESS");

		await svc.recoverInterrupted(0);
		await waitFor(async () => (await shop.http.get(`/api/orders/${interrupted.id}`, { token: c.token })).body.status, (s) => s === "cancelled");
		expect((await checkout(c)).status).toBe(201);
		expect(await stockOf(v)).toBe(4);
	});

	test("the customer may change the cart while its checkout runs: what was added stays in the cart, what was bought goes", async () => {
		const c = await customer();
		const first = await variant(1000, 5);
		const later = await variant(700, 5);
		await addToCart(c, first);
		fake.delayAnswers(1000);
		let placed;
		try {
			const running = checkout(c);
			// While the checkout waits for Stripe.
			await waitFor(() => chargesOf(c).length, (k) => k === 1, 3000, 5);
			await addToCart(c, later);
			placed = await running;
		} finally {
			fake.delayAnswers(STRIPE_LATENCY_MS);
		}
		expect(placed.status).toBe(201);
		expect(placed.body.items.map((l: any) => l.variantId)).toEqual([first]);
		// What was bought is not in the cart any more (it stayed, and the next checkout bought it again).
		expect((await shop.http.get("/api/cart", { token: c.token })).body.items.map((l: any) => l.variantId)).toEqual([later]);
		// The cart is free again: the rest is bought by the next checkout.
		const next = await checkout(c);
		expect(next.status).toBe(201);
		expect(next.body.items.map((l: any) => l.variantId)).toEqual([later]);
	});
});
