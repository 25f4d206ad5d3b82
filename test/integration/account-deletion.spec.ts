import crypto from "node:crypto";
/**
 * POST /api/me/delete: a customer erases their account. Refused for an admin, with a wrong password, and
 * while an order is under way; then the profile, addresses, wishlist, sessions, cart, messages and
 * reviews go, the orders stay (tied to the account's id), and the email can register again.
 */
import { startShopWithAdmin, type Shop } from "../helpers/shop";
import { addToCart, checkout, createProduct, registerCustomer, uniqueEmail } from "../helpers/flows";
import { waitFor } from "../helpers/wait";
import { Collection } from "../../mixins/collection";

const ADMIN = { email: "admin@deletion.test", password: "admin-password-deletion-1" };
const PASSWORD = "correct horse battery";

describe("a customer deletes their account", () => {
	let shop: Shop;
	let admin: string;
	beforeAll(async () => {
		({ adminToken: admin, ...shop } = await startShopWithAdmin(ADMIN));
	});
	afterAll(() => shop?.stop());

	test("refused without the password or with a wrong one, and while an order is under way; then everything that names them goes, and the orders stay", async () => {
		const http = shop.http;
		const { product, variantId } = await createProduct(http, admin, { price: 1800, stock: 5 });
		const email = uniqueEmail("leaving");
		const c = await registerCustomer(http, email);
		expect((await http.post("/api/me/wishlist", { productId: product.id }, { token: c.token })).status).toBe(201);
		const review = await http.post(`/api/products/${product.id}/reviews`, { rating: 2, title: "Not for me", body: "Written by Ada Buyer" }, { token: c.token });
		expect(review.status).toBe(201);
		expect((await http.patch(`/api/reviews/${review.body.id}/moderation`, { approved: true }, { token: admin })).status).toBe(200);
		await addToCart(http, c.token, variantId, 1);
		const order = await checkout(http, c);
		expect(order.status).toBe(201);
		await waitFor(() => http.get("/api/me/notifications", { token: c.token }), (r) => r.body.total > 0);

		expect((await http.request("POST", "/api/me/delete", { token: c.token })).body).toMatchObject({ code: 422, data: [expect.objectContaining({ field: "password" })] });
		expect((await http.request("POST", "/api/me/delete", { token: c.token, body: { password: "not the password" } })).body).toMatchObject({ code: 422, data: [expect.objectContaining({ field: "password", type: "wrongPassword" })] });
		const underWay = await http.request("POST", "/api/me/delete", { token: c.token, body: { password: PASSWORD } });
		expect(underWay.status).toBe(409);
		expect(underWay.body).toMatchObject({ type: "ORDERS_OPEN", data: { orders: [{ id: order.body.id, number: order.body.number, status: "confirmed" }] } });
		// Nothing was taken meanwhile.
		expect((await http.get("/api/me", { token: c.token })).body.email).toBe(email);
		expect((await http.get(`/api/products/${product.id}/rating`)).body.count).toBe(1);

		for (const status of ["processing", "shipped", "delivered"]) {
			expect((await http.patch(`/api/orders/${order.body.id}/status`, { status, ...(status === "shipped" ? { trackingNumber: "TRK-DEL-1" } : {}) }, { token: admin })).status).toBe(200);
		}
		await addToCart(http, c.token, variantId, 2);
		const compacted = jest.spyOn(Collection.prototype, "compact");
		const gone = await http.request("POST", "/api/me/delete", { token: c.token, body: { password: PASSWORD } });
		expect(gone.status).toBe(204);
		// The messages kept go on the durable user.deleted, which notifications read (live here, or on catch-up).
		await waitFor(() => http.get(`/api/notifications?userId=${c.userId}`, { token: admin }), (r) => r.body.total === 0);
		// The embedded files are rewritten at once, without the versions that named them (test/unit/store-compact.spec.ts).
		expect(compacted.mock.contexts.map((c) => (c as Collection).name).sort()).toEqual(["notification_push_devices", "notification_push_subscriptions", "notifications", "reviews", "user_addresses", "user_sessions", "user_tokens", "user_wishlist", "users", "users_outbox"]);
		compacted.mockRestore();

		// Signed out everywhere, and the old email and password open nothing.
		expect((await http.get("/api/me", { token: c.token })).status).toBe(401);
		expect((await http.post("/api/auth/login", { email, password: PASSWORD })).status).toBe(401);
		// The review went; the product's rating was counted again without it.
		expect((await http.get(`/api/reviews/${review.body.id}`, { token: admin })).status).toBe(404);
		expect((await http.get(`/api/products/${product.id}/rating`)).body.count).toBe(0);
		// The order stays for the shop's books, under the account's id.
		const kept = (await http.get(`/api/orders/${order.body.id}`, { token: admin })).body;
		expect(kept).toMatchObject({ id: order.body.id, status: "delivered" });
		// The stored account names no one.
		const stored = await shop.broker.call<Record<string, unknown>, { id: string }>("users.get", { id: c.userId }).catch((err) => err);
		expect(stored).toMatchObject({ code: 404 });
		const cart = await shop.broker.call<{ items: unknown[] }, { userId: string }>("cart.snapshot", { userId: c.userId });
		expect(cart.items).toEqual([]);

		// The account events kept for their consumers name no one any more: its registration event had the email and name.
		const outbox = (shop.broker.getLocalService("users") as any).outbox;
		const events = await outbox.find({ "payload.userId": c.userId });
		expect(events.map((e: any) => e.event)).toContain("user.registered");
		for (const e of events) expect(Object.keys(e.payload).sort()).toEqual(["eventId", "userId"]);
		expect(JSON.stringify(events)).not.toContain(email);

		// The placeholder address opens nothing: no reset link goes out for it, and nobody can register it.
		const placeholder = `deleted-${Buffer.from(c.userId).toString("hex")}@deleted.invalid`;
		expect((await http.post("/api/auth/password-reset", { email: placeholder })).status).toBe(202);
		expect(await outbox.count({ event: "user.password_reset_requested", "payload.userId": c.userId })).toBe(0);
		expect((await http.post("/api/auth/register", { email: placeholder, password: PASSWORD })).body).toMatchObject({ code: 422, data: [expect.objectContaining({ field: "email" })] });

		// The address is free for a new account, which starts empty.
		const again = await http.post("/api/auth/register", { email, password: PASSWORD });
		expect(again.status).toBe(201);
		expect(again.body.user.id).not.toBe(c.userId);
		for (const path of ["/api/me/addresses", "/api/me/wishlist", "/api/me/notifications", "/api/orders"]) {
			const res = await http.get(path, { token: again.body.accessToken });
			expect({ path, total: res.body.total ?? res.body.length }).toEqual({ path, total: path === "/api/me/notifications" ? expect.any(Number) : 0 });
		}
	}, 60_000);

	test("an admin erases a customer's account on their request, as the customer would; a customer cannot, and an admin account is refused", async () => {
		const http = shop.http;
		const c = await registerCustomer(http, uniqueEmail("by-admin"));
		const other = await registerCustomer(http, uniqueEmail("bystander"));
		expect((await http.post(`/api/users/${c.userId}/delete`, {}, { token: other.token })).status).toBe(403);
		expect((await http.post("/api/users/no-such-user/delete", {}, { token: admin })).status).toBe(404);
		const adminId = (await http.get("/api/me", { token: admin })).body.id;
		expect((await http.post(`/api/users/${adminId}/delete`, {}, { token: admin })).body).toMatchObject({ code: 409, type: "ADMIN_ACCOUNT" });

		expect((await http.post(`/api/users/${c.userId}/delete`, {}, { token: admin })).status).toBe(204);
		expect((await http.get("/api/me", { token: c.token })).status).toBe(401);
		expect((await http.post("/api/auth/login", { email: c.email, password: PASSWORD })).status).toBe(401);
		await waitFor(() => http.get(`/api/notifications?userId=${c.userId}`, { token: admin }), (r) => r.body.total === 0);
		// Once is enough: a second time there is no such account.
		expect((await http.post(`/api/users/${c.userId}/delete`, {}, { token: admin })).status).toBe(404);
		expect((await http.get("/api/me", { token: other.token })).status).toBe(200);
	});

	describe("an erasure and a checkout that overlap: no order is made for an erased account", () => {
		const stockOf = async (variantId: string) => (await shop.broker.call<any[], any>("products.getVariants", { ids: [variantId] }))[0].stock as number;

		/** The erasure held once it has marked the account (its first write of closingUntil), until `release`. */
		function holdErasureOnceMarked() {
			const users = shop.broker.getLocalService("users") as any;
			const updateOne = users.db.users.updateOne;
			let reached!: () => void;
			const marked = new Promise<void>((r) => (reached = r));
			let release!: () => void;
			const released = new Promise<void>((r) => (release = r));
			let held = false;
			const spy = jest.spyOn(users.db.users, "updateOne").mockImplementation(async (...args: any[]) => {
				const saved = await updateOne.apply(users.db.users, args);
				if (args[1]?.$set?.closingUntil && !held) {
					held = true;
					reached();
					await released;
				}
				return saved;
			});
			const timedOut = new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the erasure never marked the account")), 5000).unref());
			return { marked: Promise.race([marked, timedOut]), release, restore: () => (release(), spy.mockRestore()) };
		}

		test("a checkout that read the address before the erasure began stores no confirmed order after it: refused, nothing charged or kept", async () => {
			const http = shop.http;
			const { variantId } = await createProduct(http, admin, { price: 1200, stock: 3 });
			const c = await registerCustomer(http, uniqueEmail("racing"));
			await addToCart(http, c.token, variantId, 1);
			const users = shop.broker.getLocalService("users") as any;
			const requireAddress = users.requireAddress;
			let reached!: () => void;
			const atAddress = new Promise<void>((r) => (reached = r));
			let release!: () => void;
			const released = new Promise<void>((r) => (release = r));
			// The checkout has claimed the cart and read the address; it waits there while the account is erased.
			const spy = jest.spyOn(users, "requireAddress").mockImplementation(async (...args: unknown[]) => {
				const address = await requireAddress.apply(users, args);
				reached();
				await released;
				return address;
			});
			try {
				const placing = checkout(http, c);
				await atAddress;
				expect((await http.request("POST", "/api/me/delete", { token: c.token, body: { password: PASSWORD } })).status).toBe(204);
				release();
				const res = await placing;
				expect(res.status).toBe(409);
				expect(res.body.type).toBe("ACCOUNT_CLOSED");
			} finally {
				release();
				spy.mockRestore();
			}
			// The order it stored is cancelled, with nothing held or charged.
			const orders = (await http.get(`/api/orders?userId=${c.userId}`, { token: admin })).body.rows;
			expect(orders).toEqual([expect.objectContaining({ status: "cancelled", cancelReason: "account_closed" })]);
			expect(await shop.broker.call("payments.getByOrder", { orderId: orders[0].id })).toBeNull();
			expect(await stockOf(variantId)).toBe(3);
		}, 30_000);

		test("a checkout that stores its order while the erasure looks for open orders is refused; the erasure goes on", async () => {
			const http = shop.http;
			const { variantId } = await createProduct(http, admin, { price: 1300, stock: 3 });
			const c = await registerCustomer(http, uniqueEmail("racing-2"));
			await addToCart(http, c.token, variantId, 1);
			const hold = holdErasureOnceMarked();
			try {
				const erasing = http.request("POST", "/api/me/delete", { token: c.token, body: { password: PASSWORD } });
				await hold.marked;
				const res = await checkout(http, c);
				expect(res.status).toBe(409);
				expect(res.body.type).toBe("ACCOUNT_CLOSED");
				hold.release();
				expect((await erasing).status).toBe(204);
			} finally {
				hold.restore();
			}
			const orders = (await http.get(`/api/orders?userId=${c.userId}`, { token: admin })).body.rows;
			expect(orders).toEqual([expect.objectContaining({ status: "cancelled", cancelReason: "account_closed" })]);
			expect(await stockOf(variantId)).toBe(3);
		}, 30_000);

		test("a second erasure while one runs is refused and leaves its mark alone; a checkout refused meanwhile may use its key again once the erasure is refused", async () => {
			const http = shop.http;
			const { variantId } = await createProduct(http, admin, { price: 1500, stock: 5 });
			const c = await registerCustomer(http, uniqueEmail("twice"));
			await addToCart(http, c.token, variantId, 1);
			// An order under way: the erasure will be refused for it.
			const first = await checkout(http, c);
			expect(first.status).toBe(201);
			await addToCart(http, c.token, variantId, 1);
			const hold = holdErasureOnceMarked();
			try {
				const erasing = http.request("POST", "/api/me/delete", { token: c.token, body: { password: PASSWORD } });
				await hold.marked;
				const again = await http.post(`/api/users/${c.userId}/delete`, {}, { token: admin });
				expect(again.status).toBe(409);
				expect(again.body.type).toBe("ERASURE_IN_PROGRESS");
				// The first erasure's mark still holds orders off.
				const key = crypto.randomUUID();
				const refused = await checkout(http, c, key);
				expect(refused.body.type).toBe("ACCOUNT_CLOSED");
				hold.release();
				expect((await erasing).body.type).toBe("ORDERS_OPEN");
				// Not erased after all: the same key checks out now, instead of answering ACCOUNT_CLOSED again.
				const retried = await checkout(http, c, key);
				expect(retried.status).toBe(201);
			} finally {
				hold.restore();
			}
		}, 30_000);

		test("an erasure waits for a checkout that stored its order just before the mark: that checkout gives way, and the erasure goes on", async () => {
			const http = shop.http;
			const { variantId } = await createProduct(http, admin, { price: 1600, stock: 3 });
			const c = await registerCustomer(http, uniqueEmail("gives-way"));
			await addToCart(http, c.token, variantId, 1);
			const broker = shop.broker;
			const call = broker.call.bind(broker);
			let atCheck!: () => void;
			const checking = new Promise<void>((r) => (atCheck = r));
			let lookedUp!: (open: unknown) => void;
			const lookup = new Promise<unknown>((r) => (lookedUp = r));
			let release!: () => void;
			const released = new Promise<void>((r) => (release = r));
			// The checkout has stored its order and waits before it asks about the account; the erasure marks
			// the account and finds that order, still pending, before the checkout goes on.
			// Other calls get the broker's own promise: the caller reads the callee's meta (a 204) from it.
			const spy = jest.spyOn(broker, "call").mockImplementation(((action: string, ...rest: any[]) => {
				if (action === "users.checkCanOrder") {
					atCheck();
					return released.then(() => (call as any)(action, ...rest));
				}
				const p = (call as any)(action, ...rest);
				if (action === "orders.openOrdersOf") p.then(lookedUp, () => undefined);
				return p;
			}) as any);
			try {
				const placing = checkout(http, c);
				await checking;
				const erasing = http.request("POST", "/api/me/delete", { token: c.token, body: { password: PASSWORD } });
				expect(await lookup).toEqual([expect.objectContaining({ status: "pending", checkingOut: true })]);
				release();
				expect((await placing).body.type).toBe("ACCOUNT_CLOSED");
				expect((await erasing).status).toBe(204);
			} finally {
				release();
				spy.mockRestore();
			}
			const orders = (await http.get(`/api/orders?userId=${c.userId}`, { token: admin })).body.rows;
			expect(orders).toEqual([expect.objectContaining({ status: "cancelled", cancelReason: "account_closed" })]);
			expect(await stockOf(variantId)).toBe(3);
		}, 30_000);

		test("a checkout that finds the cart emptied by an erasure under way is told the account is being deleted, not that the cart is empty", async () => {
			const http = shop.http;
			const { variantId } = await createProduct(http, admin, { price: 1700, stock: 3 });
			const c = await registerCustomer(http, uniqueEmail("emptied"));
			await addToCart(http, c.token, variantId, 1);
			const broker = shop.broker;
			const call = broker.call.bind(broker);
			let atReviews!: () => void;
			const emptied = new Promise<void>((r) => (atReviews = r));
			let release!: () => void;
			const released = new Promise<void>((r) => (release = r));
			// The erasure has emptied the cart and waits before the reviews; the sessions still work.
			const spy = jest.spyOn(broker, "call").mockImplementation(((action: string, ...rest: any[]) => {
				if (action !== "reviews.forgetAuthor") return (call as any)(action, ...rest);
				atReviews();
				return released.then(() => (call as any)(action, ...rest));
			}) as any);
			try {
				const erasing = http.request("POST", "/api/me/delete", { token: c.token, body: { password: PASSWORD } });
				await emptied;
				const res = await checkout(http, c);
				expect(res.status).toBe(409);
				expect(res.body.type).toBe("ACCOUNT_CLOSED");
				release();
				expect((await erasing).status).toBe(204);
			} finally {
				release();
				spy.mockRestore();
			}
			// No order was made: the cart was empty before any was stored.
			expect((await http.get(`/api/orders?userId=${c.userId}`, { token: admin })).body.total).toBe(0);
		}, 30_000);

		test("a review or an add to the cart sent while an erasure runs, after it forgot the reviews and the cart, does not outlive it", async () => {
			const http = shop.http;
			const { product, variantId } = await createProduct(http, admin, { price: 1900, stock: 5 });
			const c = await registerCustomer(http, uniqueEmail("late-writes"));
			const broker = shop.broker;
			const call = broker.call.bind(broker);
			let forgotten!: () => void;
			const afterReviews = new Promise<void>((r) => (forgotten = r));
			let release!: () => void;
			const released = new Promise<void>((r) => (release = r));
			// The erasure has emptied the cart and forgotten the reviews, and waits before it goes on; the sessions still work.
			const spy = jest.spyOn(broker, "call").mockImplementation(((action: string, ...rest: any[]) => {
				const p = (call as any)(action, ...rest);
				if (action !== "reviews.forgetAuthor") return p;
				return p.then((res: unknown) => {
					forgotten();
					return released.then(() => res);
				});
			}) as any);
			try {
				const erasing = http.request("POST", "/api/me/delete", { token: c.token, body: { password: PASSWORD } });
				await afterReviews;
				const review = await http.post(`/api/products/${product.id}/reviews`, { rating: 5, title: "Late", body: "Written while leaving" }, { token: c.token });
				expect(review.status).toBe(409);
				expect(review.body.type).toBe("ACCOUNT_CLOSED");
				expect((await http.post("/api/cart/items", { variantId, quantity: 1 }, { token: c.token })).status).toBe(201);
				release();
				expect((await erasing).status).toBe(204);
			} finally {
				release();
				spy.mockRestore();
			}
			expect((await http.get(`/api/reviews?productId=${product.id}`, { token: admin })).body.rows).toEqual([]);
			expect((await broker.call<any, any>("cart.snapshot", { userId: c.userId })).items).toEqual([]);
		}, 30_000);

		test("an empty cart of an account that is not being erased is still just empty", async () => {
			const c = await registerCustomer(shop.http, uniqueEmail("empty"));
			expect((await checkout(shop.http, c)).body.type).toBe("CART_EMPTY");
		});

		test("an erasure refused for an open order leaves the account able to order", async () => {
			const http = shop.http;
			const { variantId } = await createProduct(http, admin, { price: 1400, stock: 5 });
			const c = await registerCustomer(http, uniqueEmail("staying"));
			await addToCart(http, c.token, variantId, 1);
			expect((await checkout(http, c)).status).toBe(201);
			expect((await http.request("POST", "/api/me/delete", { token: c.token, body: { password: PASSWORD } })).body.type).toBe("ORDERS_OPEN");
			await addToCart(http, c.token, variantId, 1);
			expect((await checkout(http, c)).status).toBe(201);
		});
	});

	test("an admin account is not deleted here", async () => {
		const res = await shop.http.request("POST", "/api/me/delete", { token: admin, body: { password: ADMIN.password } });
		expect(res.status).toBe(409);
		expect(res.body.type).toBe("ADMIN_ACCOUNT");
		expect((await shop.http.get("/api/me", { token: admin })).status).toBe(200);
	});
});
