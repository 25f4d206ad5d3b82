/**
 * Notifications end to end: events from services with an outbox (fakes of users, orders and
 * payments built on the real OutboxMixin), messages over HTTP, catch-up after downtime, de-duplication,
 * retries with backoff, the worker pool's limit, pending work surviving a restart, and one-time
 * links that stay in a stored message only until it is delivered or given up.
 * The providers (SendGrid, Twilio) are covered by notifications-providers.spec.ts.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { OutboxMixin } from "../../mixins/outbox.mixin";
import { NotFoundError } from "../../lib/errors";
import NotificationsService from "../../services/notifications.service";
import { DeliveryError, type NotificationChannel, type OutgoingMessage } from "../../adapters/channels";
import type { SendOptions } from "../../adapters/channels/notification-channel";
import { LINK_REMOVED } from "../../lib/notification-plan";
import { waitFor } from "../helpers/wait";
import { fakeSession, fakeToken, sourceWithOutbox } from "../helpers/fakes";
import { setEnv, withEnv } from "../helpers/env";

interface User {
	id: string;
	email: string;
	firstName: string | null;
	phone: string | null;
}

const users = new Map<string, User>([
	["u-ann", { id: "u-ann", email: "ann@example.com", firstName: "Ann <script>alert(1)</script>", phone: "+1 (415) 555-0100" }],
	["u-bob", { id: "u-bob", email: "bob@example.com", firstName: "Bob", phone: null }],
	// Account mail goes only to an account that still exists (users.get), to the address its event names.
	["u-cy", { id: "u-cy", email: "cy@example.com", firstName: "Cy", phone: null }],
	["u-dee", { id: "u-dee", email: "dee@example.com", firstName: "Dee", phone: null }],
]);

/** users with its real outbox: `get` for the address, `announce` publishes durable events like the real one. */
const FakeUsers: ServiceSchema = {
	name: "users",
	mixins: [OutboxMixin("users")],
	actions: {
		checkSession: { params: { sid: "string" }, handler: (ctx: Context<{ sid: string }>) => fakeSession(ctx.params.sid) },
		get: {
			params: { id: "string" },
			handler(ctx: Context<{ id: string }>) {
				const u = users.get(ctx.params.id);
				if (!u) throw new NotFoundError("User");
				return { ...u, lastName: null, role: "customer", isVerified: false, createdAt: new Date() };
			},
		},
		announce: {
			params: { event: "string", payload: "object" },
			handler(ctx: Context<{ event: string; payload: Record<string, unknown> }>) {
				return this.publish(ctx, ctx.params.event, ctx.params.payload);
			},
		},
	},
};

function orderPayload(orderId: string, userId: string, extra: Record<string, unknown> = {}) {
	return {
		orderId,
		number: `SO-${orderId}`,
		userId,
		status: "confirmed",
		items: [
			{ productId: "p1", variantId: "v1", name: "Tee <b>bold</b>", variantName: "Red & <i>L</i>", quantity: 2, unitPrice: 1_250, lineTotal: 2_500 },
			{ productId: "p2", variantId: "v2", name: "Cap", quantity: 1, unitPrice: 999, lineTotal: 999 },
		],
		subtotal: 3_499,
		discount: 500,
		shipping: 499,
		total: 3_498,
		currency: "USD",
		promoCode: "SAVE5",
		createdAt: new Date().toISOString(),
		...extra,
	};
}

/** Every message handed to a channel the service picked itself (the outbox, here), as it went. */
const delivered: OutgoingMessage[] = [];

/** Notifications with short timers, so retries and scans happen within a test. */
function notifications(settings: Record<string, unknown> = {}): ServiceSchema<any> {
	return {
		name: "notifications",
		mixins: [NotificationsService as unknown as Partial<ServiceSchema>],
		settings: { scanIntervalMs: 100, catchUpIntervalMs: 1_000, catchUpDelayMs: 50, backoff: { baseMs: 40, factor: 2, maxMs: 400, jitter: 0 }, ...settings },
		created() {
			for (const medium of ["email", "sms"] as const) {
				const channel: NotificationChannel = this.channels[medium];
				this.channels[medium] = { provider: channel.provider, medium, deliversByStoring: channel.deliversByStoring, send: (m: OutgoingMessage) => (delivered.push(m), channel.send(m)) };
			}
		},
	};
}

async function startNotifications(shop: Shop, schema = notifications()): Promise<any> {
	const svc = shop.broker.createService(schema);
	await shop.broker.waitForServices("notifications", 15_000);
	return svc;
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const admin = fakeToken("admin", "admin");
const tokenOf = (userId: string) => fakeToken(userId);


/** A channel that fails as told (`noAnswer`: a timeout), counts attempts and how many sends run at once. */
class ScriptedChannel implements NotificationChannel {
	readonly provider = "outbox" as const;
	sent: OutgoingMessage[] = [];
	sends: Array<{ id: string; options: SendOptions }> = [];
	calls = 0;
	running = 0;
	maxRunning = 0;
	constructor(
		readonly medium: "email" | "sms",
		public script: { failures?: number; status?: number; delayMs?: number; noAnswer?: boolean } = {},
	) {}
	async send(message: OutgoingMessage, options: SendOptions = {}) {
		this.calls++;
		this.sends.push({ id: message.id, options });
		this.running++;
		this.maxRunning = Math.max(this.maxRunning, this.running);
		try {
			if (this.script.delayMs) await sleep(this.script.delayMs);
			if ((this.script.failures ?? 0) > 0) {
				this.script.failures!--;
				if (this.script.noAnswer) throw new DeliveryError("provider timed out", "scripted");
				throw new DeliveryError(`provider said ${this.script.status ?? 503}`, "scripted", this.script.status ?? 503);
			}
			this.sent.push(message);
			return { status: "sent" as const, provider: "scripted", providerId: `prov-${this.calls}` };
		} finally {
			this.running--;
		}
	}
}

describe("notifications: catch-up after downtime, exactly one message per event", () => {
	let shop: Shop;
	let svc: any;
	const confirmed = orderPayload("o1", "u-ann");

	beforeAll(async () => {
		// The broker runs without notifications while customers register and order.
		shop = await startShop({ services: [FakeUsers, sourceWithOutbox("orders"), sourceWithOutbox("payments")] });
		await shop.broker.call("users.announce", { event: "user.registered", payload: { userId: "u-bob", email: "bob@example.com", firstName: "Bob", verificationToken: "tok/en+1" } });
		const eventId = await shop.broker.call("orders.announce", { event: "order.confirmed", payload: confirmed });
		// A redelivery of the same event while nobody listens changes nothing either.
		await shop.broker.emit("order.confirmed", { ...confirmed, eventId });
		await shop.broker.call("orders.announce", { event: "order.status_changed", payload: orderPayload("o1", "u-ann", { status: "processing", from: "confirmed", to: "processing" }) });
		svc = await startNotifications(shop);
	});
	afterAll(() => shop.stop());

	const listAll = async () => (await shop.http.get("/api/notifications?pageSize=100", { token: admin })).body;

	test("events published while notifications was down are handled once it starts", async () => {
		const all = await waitFor(listAll, (b) => b.total >= 3 && b.rows.every((m: any) => m.status === "outboxed"));
		await sleep(300);
		const rows = (await listAll()).rows;
		expect(rows.map((m: any) => `${m.template}/${m.channel}/${m.recipient}`).sort()).toEqual([
			"order-confirmed/email/ann@example.com",
			"order-confirmed/sms/+14155550100",
			"verify-email/email/bob@example.com",
		]);
		expect(all.rows.every((m: any) => m.attempts === 1 && m.provider === "outbox")).toBe(true);
	});

	test("the cursor of each source is saved", async () => {
		const cursors = await svc.outboxCursors.find({});
		expect(Object.fromEntries(cursors.map((c: any) => [c.id, c.seq]))).toMatchObject({ users: 1, orders: 2 });
	});

	test("the same event delivered again, live or replayed from the outbox, makes no second message", async () => {
		const [event] = (await shop.broker.call<any, any>("orders.outboxSince", { after: 0 })).events;
		await shop.broker.emit("order.confirmed", event.payload);
		await shop.broker.emit("order.confirmed", event.payload);
		// A full replay, as if the markers and the cursor were lost: the unique key still holds.
		await svc.db.notification_events.removeMany({});
		await svc.outboxCursors.removeMany({});
		await svc.catchUpAll();
		await sleep(300);
		expect((await listAll()).total).toBe(3);
	});

	test("a live event is handled at once and the cursor follows", async () => {
		await shop.broker.call("orders.announce", { event: "order.status_changed", payload: orderPayload("o1", "u-ann", { status: "shipped", from: "processing", to: "shipped", trackingNumber: "1Z<999>" }) });
		const rows = (await waitFor(listAll, (b) => b.total === 5)).rows;
		expect(rows.filter((m: any) => m.template === "order-shipped").map((m: any) => m.channel).sort()).toEqual(["email", "sms"]);
		const shipped = await svc.db.notifications.findOne({ template: "order-shipped", channel: "email" });
		expect(shipped.subject).toBe("Order SO-o1 has shipped");
		expect(shipped.text).toContain("Tracking number: 1Z<999>");
		expect(shipped.html).toContain("Tracking number: <strong>1Z&lt;999&gt;</strong>");
		const sms = await svc.db.notifications.findOne({ template: "order-shipped", channel: "sms" });
		expect(sms.text).toBe("Moleculer Shop: order SO-o1 has shipped. Tracking: 1Z<999>");
		await waitFor(() => svc.outboxCursors.findById("orders"), (c: any) => c?.seq === 3);
	});

	test("templates escape what customers typed in HTML and keep it readable in text", async () => {
		const mail = await svc.db.notifications.findOne({ template: "order-confirmed", channel: "email" });
		expect(mail.subject).toBe("Order SO-o1 confirmed");
		expect(mail.html).toContain("Hi Ann &lt;script&gt;alert(1)&lt;/script&gt;,");
		expect(mail.html).not.toContain("<script>");
		expect(mail.html).toContain("<td>Tee &lt;b&gt;bold&lt;/b&gt; (Red &amp; &lt;i&gt;L&lt;/i&gt;)</td><td align=\"right\">$25.00</td>");
		expect(mail.html).toContain("<td>Cap</td>");
		expect(mail.text).toContain("- 2 x Tee <b>bold</b> (Red & <i>L</i>): $25.00\n- 1 x Cap: $9.99\n");
		// A link to the order, under STOREFRONT_URL like the account links.
		expect(mail.text).toContain("\n\nView your order: http://localhost:3000/orders/o1\n");
		expect(mail.html).toContain('<p><a href="http://localhost:3000/orders/o1">View your order</a></p>');
		expect(mail.text).toContain("Discount: -$5.00\nShipping: $4.99\nTotal: $34.98");
		const verify = delivered.find((m) => m.to === "bob@example.com" && m.subject === "Confirm your email address")!;
		expect(verify.text).toContain("http://localhost:3000/verify-email?token=tok%2Fen%2B1");
		expect(verify.html).toContain('href="http://localhost:3000/verify-email?token&#61;tok%2Fen%2B1"');
	});

	test("a message with a one-time link keeps no link in the store once it is outboxed", async () => {
		const stored = await svc.db.notifications.findOne({ template: "verify-email" });
		expect(stored).toMatchObject({ status: "outboxed", subject: "Confirm your email address", recipient: "bob@example.com", linkRemovedAt: expect.any(Date) });
		for (const body of [stored.text, stored.html]) {
			expect(body).not.toContain("tok%2Fen%2B1");
			expect(body).toContain(LINK_REMOVED);
			expect(body).toContain("Hello,");
		}
		// Order news carries no link: its body stays whole.
		const order = await svc.db.notifications.findOne({ template: "order-confirmed", channel: "email" });
		expect(order.text).toContain("- 2 x Tee <b>bold</b>");
		expect(order.text).toContain("http://localhost:3000/orders/o1");
		expect(order.linkRemovedAt).toBeUndefined();
	});

	test("GET /api/me/notifications: own messages only, newest first, paged, without bodies", async () => {
		expect((await shop.http.get("/api/me/notifications")).status).toBe(401);
		const ann = await shop.http.get("/api/me/notifications?pageSize=2", { token: tokenOf("u-ann") });
		expect(ann.status).toBe(200);
		expect(ann.body).toMatchObject({ total: 4, page: 1, pageSize: 2, totalPages: 2 });
		expect(ann.body.rows.map((m: any) => m.template)).toEqual(["order-shipped", "order-shipped"]);
		expect(Object.keys(ann.body.rows[0]).sort()).toEqual(["attempts", "channel", "createdAt", "id", "recipient", "sentAt", "status", "subject", "template"]);
		const page2 = await shop.http.get("/api/me/notifications?pageSize=2&page=2", { token: tokenOf("u-ann") });
		expect(page2.body.rows.map((m: any) => m.template)).toEqual(["order-confirmed", "order-confirmed"]);
		const bob = await shop.http.get("/api/me/notifications", { token: tokenOf("u-bob") });
		expect(bob.body.rows.map((m: any) => m.template)).toEqual(["verify-email"]);
	});

	test("admin routes are for admins", async () => {
		expect((await shop.http.get("/api/notifications", { token: tokenOf("u-ann") })).status).toBe(403);
		const someone = (await listAll()).rows[0];
		expect((await shop.http.post(`/api/notifications/${someone.id}/retry`, {}, { token: tokenOf("u-ann") })).status).toBe(403);
		expect((await shop.http.post(`/api/notifications/${someone.id}/retry`, {}, { token: admin })).status).toBe(409);
		expect((await shop.http.post("/api/notifications/nope/retry", {}, { token: admin })).status).toBe(404);
		expect((await shop.http.get("/api/notifications?status=lost", { token: admin })).status).toBe(422);
	});

	test("delivered, cancelled, refunded; processing, unknown users and a cancellation's own refund send nothing", async () => {
		const before = (await listAll()).total;
		await shop.broker.call("orders.announce", { event: "order.status_changed", payload: orderPayload("o2", "u-bob", { to: "processing", from: "confirmed" }) });
		await shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload("o3", "u-gone") });
		await shop.broker.call("orders.announce", { event: "order.status_changed", payload: orderPayload("o1", "u-bob", { to: "delivered", from: "shipped" }) });
		// A customer's cancel of a paid order: orders refunds it (reason: the cancel's), then announces the cancel, which states the refund.
		await shop.broker.call("payments.announce", { event: "payment.refunded", payload: { orderId: "o4", number: "SO-o4", paymentId: "pay1", refundId: "r1", userId: "u-bob", amount: 3_498, currency: "USD", totalRefunded: 3_498, reason: "customer_request" } });
		await shop.broker.call("orders.announce", { event: "order.cancelled", payload: orderPayload("o4", "u-bob", { status: "cancelled", reason: "customer_request", refundedAmount: 3_498 }) });
		// An admin's refund on its own is news of its own.
		await shop.broker.call("payments.announce", { event: "payment.refunded", payload: { orderId: "o5", number: "SO-o5", paymentId: "pay5", refundId: "r5", userId: "u-bob", amount: 1_000, currency: "USD", totalRefunded: 1_000, reason: "damaged in transit" } });
		const rows = (await waitFor(listAll, (b) => b.total === before + 3)).rows;
		expect(rows.slice(0, 3).map((m: any) => m.template).sort()).toEqual(["order-cancelled", "order-delivered", "payment-refunded"]);
		const cancelled = await svc.db.notifications.findOne({ template: "order-cancelled" });
		expect(cancelled.text).toContain("In all, $34.98 of this order has been refunded to your payment method");
		const refunds = await svc.db.notifications.find({ template: "payment-refunded" });
		expect(refunds.map((m: any) => m.subject)).toEqual(["Refund of $10.00 issued"]);
		expect(refunds[0].text).toContain("for order SO-o5");
		// Both refunds handled, the cancellation's without a message.
		await waitFor(() => svc.outboxCursors.findById("payments"), (c: any) => c?.seq === 2);
		expect(await svc.db.notification_events.count({ event: "payment.refunded" })).toBe(2);
		await sleep(200);
		expect((await listAll()).total).toBe(before + 3);
		// Every event counts as handled, the ones that needed no message too.
		await waitFor(() => svc.outboxCursors.findById("orders"), (c: any) => c?.seq === 7);
	});
});


describe("notifications without a provider (the outbox)", () => {
	let shop: Shop;
	let svc: any;
	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, sourceWithOutbox("orders"), sourceWithOutbox("payments")] });
		svc = await startNotifications(shop);
	});
	afterAll(() => shop.stop());

	test("without a provider, a message is stored outboxed in one write, as a delivery would leave it, and still reported to its channel", async () => {
		const inserts = jest.spyOn(svc.db.notifications, "insert");
		const updates = jest.spyOn(svc.db.notifications, "updateOne");
		const before = delivered.length;
		try {
			await shop.broker.call("orders.announce", { event: "order.cancelled", payload: orderPayload("o9", "u-ann", { status: "cancelled", reason: "customer_request" }) });
			const rows = await waitFor(() => svc.db.notifications.find({ template: "order-cancelled" }), (r: any[]) => r.length === 2);
			for (const m of rows) {
				expect(m).toMatchObject({ status: "outboxed", provider: "outbox", attempts: 1, sentAt: expect.any(Date), error: null, leaseUntil: new Date(0) });
				expect(m.sentAt.getTime()).toBe(m.createdAt.getTime());
			}
			// Stored once each: no queued version first, no update afterwards.
			expect(inserts).toHaveBeenCalledTimes(2);
			expect(updates).not.toHaveBeenCalled();
			expect(delivered.slice(before).map((m) => m.to).sort()).toEqual(["+14155550100", "ann@example.com"]);
		} finally {
			inserts.mockRestore();
			updates.mockRestore();
		}
	});
});
describe("notifications: retries, failures, the worker pool", () => {
	let shop: Shop;
	let svc: any;
	let email: ScriptedChannel;
	let sms: ScriptedChannel;

	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, sourceWithOutbox("orders")] });
		svc = await withEnv({ NOTIFY_MAX_ATTEMPTS: "3", NOTIFY_CONCURRENCY: "2" }, () => startNotifications(shop));
		email = new ScriptedChannel("email");
		sms = new ScriptedChannel("sms");
		svc.channels = { email, sms };
	});
	afterAll(() => shop.stop());

	const byOrder = async (orderId: string) => (await svc.db.notifications.find({ channel: "email" })).find((m: any) => m.text.includes(`SO-${orderId}`));

	test("a transient failure is retried with backoff until it is sent", async () => {
		email.script = { failures: 2, status: 503 };
		await shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload("r1", "u-bob") });
		const msg = await waitFor(() => byOrder("r1"), (m: any) => m?.status === "sent");
		expect(msg).toMatchObject({ attempts: 3, providerId: "prov-3", error: null, provider: "scripted" });
		expect(email.sent.map((m) => m.to)).toEqual(["bob@example.com"]);
		expect(email.sent[0]).toMatchObject({ subject: "Order SO-r1 confirmed", id: msg.id });
	});

	test("after NOTIFY_MAX_ATTEMPTS the message is failed, listed for admins, and can be retried", async () => {
		email.script = { failures: 100, status: 500 };
		email.calls = 0;
		await shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload("r2", "u-bob") });
		const failed = await waitFor(() => byOrder("r2"), (m: any) => m?.status === "failed");
		expect(failed.attempts).toBe(3);
		expect(failed.error).toContain("provider said 500");
		await sleep(300);
		expect(email.calls).toBe(3);

		const listed = await shop.http.get("/api/notifications?status=failed", { token: admin });
		expect(listed.body.rows.map((m: any) => m.id)).toEqual([failed.id]);
		expect(listed.body.rows[0]).toMatchObject({ status: "failed", attempts: 3, error: expect.stringContaining("500"), userId: "u-bob", template: "order-confirmed" });

		email.script = {};
		const retried = await shop.http.post(`/api/notifications/${failed.id}/retry`, {}, { token: admin });
		expect(retried.status).toBe(200);
		expect(retried.body).toMatchObject({ id: failed.id, status: "queued", attempts: 0 });
		await waitFor(() => byOrder("r2"), (m: any) => m?.status === "sent");
		expect((await shop.http.get("/api/notifications?status=failed", { token: admin })).body.total).toBe(0);
	});

	test("a permanent refusal (4xx) fails at once", async () => {
		email.script = { failures: 1, status: 400 };
		await shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload("r3", "u-bob") });
		const msg = await waitFor(() => byOrder("r3"), (m: any) => m?.status === "failed");
		expect(msg.attempts).toBe(1);
	});

	test("a message is stored claimed: sending it takes one more write, not a claim and a result", async () => {
		email.script = {};
		const updates = jest.spyOn(svc.db.notifications, "updateOne");
		try {
			await shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload("k1", "u-bob") });
			const msg = await waitFor(() => byOrder("k1"), (m: any) => m?.status === "sent");
			expect(msg.attempts).toBe(1);
			const own = updates.mock.calls.filter(([filter]: any[]) => filter.id === msg.id);
			expect(own).toHaveLength(1);
			expect(own[0][1]).toMatchObject({ $set: { status: "sent" } });
		} finally {
			updates.mockRestore();
		}
	});

	test("the due scan reads the queued messages (status index), not every message ever sent", async () => {
		email.script = {};
		const now = Date.now();
		const doc = (id: string, status: string) => ({
			id, userId: "u-scan", eventId: `e-${id}`, dedupeKey: `d-${id}`, template: "order-confirmed", channel: "email", provider: null, recipient: "scan@example.com",
			subject: "s", html: "<p>x</p>", text: "x", status, attempts: 1, providerId: null, error: null,
			createdAt: new Date(now - 60_000), sentAt: status === "sent" ? new Date(now - 60_000) : null, failedAt: null, nextAttemptAt: new Date(now - 60_000), leaseUntil: new Date(now - 1000),
		});
		await svc.db.notifications.insertMany(Array.from({ length: 300 }, (_, i) => doc(`scan-sent-${now}-${i}`, "sent")));
		await svc.db.notifications.insert(doc(`scan-due-${now}`, "queued"));
		const db = (svc.db.notifications as any).backend.db;
		const candidates = jest.spyOn(db, "_getRawCandidates");
		try {
			await svc.enqueueDue();
			const scan = candidates.mock.calls.findIndex(([query]: any[]) => query.status === "queued" && query.nextAttemptAt);
			expect(scan).toBeGreaterThanOrEqual(0);
			// Before: through the compound index NeDB cannot use for a range, every stored message (300 and more).
			expect((candidates.mock.results[scan].value as unknown[]).length).toBeLessThan(10);
			await waitFor(() => svc.db.notifications.findById(`scan-due-${now}`), (m: any) => m?.status === "sent");
		} finally {
			candidates.mockRestore();
		}
	});

	test("a stored claim with less than half its lease left is renewed first, and only while it is still ours", async () => {
		email.script = {};
		const now = Date.now();
		const stored = async (id: string, leaseUntil: Date) =>
			svc.db.notifications.insert({
				id, userId: "u-bob", eventId: `e-${id}`, dedupeKey: `d-${id}`, template: "order-confirmed", channel: "email", provider: null, recipient: "bob@example.com",
				subject: `Subject ${id}`, html: "<p>x</p>", text: "x", status: "queued", attempts: 1, providerId: null, error: null,
				createdAt: new Date(now), sentAt: null, failedAt: null, nextAttemptAt: new Date(now), leaseUntil,
			});
		const updates = jest.spyOn(svc.db.notifications, "updateOne");
		try {
			// Waited behind a backlog: 1 s of a 60 s lease left.
			const late = await stored(`late-${now}`, new Date(now + 1000));
			await svc.deliver({ id: late.id, claimed: late });
			expect(updates.mock.calls[0][0]).toEqual({ id: late.id, status: "queued", leaseUntil: late.leaseUntil });
			expect((updates.mock.calls[0][1] as any).$set.leaseUntil.getTime()).toBeGreaterThan(now + 30_000);
			expect((await svc.db.notifications.findById(late.id)).status).toBe("sent");

			// Its lease ran out and another worker took it meanwhile: not sent by this one.
			const taken = await stored(`taken-${now}`, new Date(now + 1000));
			await svc.db.notifications.updateOne({ id: taken.id }, { $set: { leaseUntil: new Date(now + 90_000) } });
			const calls = email.calls;
			await svc.deliver({ id: taken.id, claimed: taken });
			expect(email.calls).toBe(calls);
			expect((await svc.db.notifications.findById(taken.id)).status).toBe("queued");
		} finally {
			updates.mockRestore();
		}
	});

	test("no more than NOTIFY_CONCURRENCY messages are sent at once", async () => {
		email.script = { delayMs: 60 };
		email.maxRunning = 0;
		const sentBefore = email.sent.length;
		for (let i = 0; i < 8; i++) await shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload(`c${i}`, "u-bob") });
		await waitFor(() => email.sent.length, (n) => n === sentBefore + 8, 5_000);
		expect(email.maxRunning).toBe(2);
	});

	const resetMail = async (to: string, resetToken: string) => {
		await shop.broker.call("users.announce", { event: "user.password_reset_requested", payload: { userId: `u-${to}`, email: `${to}@example.com`, firstName: "Cy", resetToken } });
		return () => svc.db.notifications.findOne({ template: "password-reset", recipient: `${to}@example.com` });
	};

	test("a reset link stays stored while the mail is retried, and is gone once it is sent", async () => {
		email.script = { failures: 2, status: 503 };
		const stored = await resetMail("cy", "reset-token-cy-1");
		// Failed once, waiting for its retry: the stored body must still hold the link to send.
		const waiting = await waitFor(stored, (m: any) => m?.status === "queued" && m.error !== null);
		expect(waiting.text).toContain("reset-password?token=reset-token-cy-1");
		expect(waiting.linkRemovedAt).toBeUndefined();

		const sent = await waitFor(stored, (m: any) => m?.status === "sent");
		expect(sent.attempts).toBe(3);
		expect(email.sent.find((m) => m.id === sent.id)!.text).toContain("reset-password?token=reset-token-cy-1");
		expect(JSON.stringify(sent)).not.toContain("reset-token-cy-1");
		expect(sent.text).toContain(LINK_REMOVED);
		expect(sent.html).toContain(`href="${LINK_REMOVED}"`);
		expect(sent.linkRemovedAt).toEqual(expect.any(Date));
	});

	test("given up, the message keeps no link either, and an admin cannot send it again", async () => {
		email.script = { failures: 100, status: 500 };
		const stored = await resetMail("dee", "reset-token-dee-1");
		const failed = await waitFor(stored, (m: any) => m?.status === "failed");
		expect(JSON.stringify(failed)).not.toContain("reset-token-dee-1");
		expect(failed.text).toContain(LINK_REMOVED);
		const retried = await shop.http.post(`/api/notifications/${failed.id}/retry`, {}, { token: admin });
		expect(retried.status).toBe(409);
		expect(retried.body.type).toBe("LINK_REMOVED");
		expect((await stored()).status).toBe("failed");
	});

	test("a hung SMS provider holds up neither email nor account mail", async () => {
		email.script = {};
		sms.script = { delayMs: 1_500 };
		const smsBefore = sms.calls;
		// Order news for a customer with a phone: an SMS each, which the provider sits on, as many as there are workers and more.
		for (let i = 0; i < 6; i++) await shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload(`h${i}`, "u-ann") });
		await waitFor(() => sms.running, (n) => n === 2);
		users.set("u-fay", { id: "u-fay", email: "fay@example.com", firstName: "Fay", phone: null });
		const reset = await resetMail("fay", "reset-token-fay-1");
		// Sharing one pool with the SMS, the reset waited for three rounds of them (4.5 s).
		await waitFor(reset, (m: any) => m?.status === "sent", 1_000);
		await waitFor(() => svc.db.notifications.count({ channel: "email", recipient: "ann@example.com", status: "sent", text: { $regex: /SO-h5\b/ } }), (n: number) => n === 1, 1_000);
		expect(sms.running).toBe(2);
		sms.script = {};
		await waitFor(() => sms.calls - smsBefore === 6 && sms.running === 0, (done) => done, 10_000);
	}, 20_000);

	test("the retry of an attempt that got no answer waits longer for its answer (a slow provider may have taken it)", async () => {
		email.script = { failures: 1, noAnswer: true };
		await shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload("t1", "u-bob") });
		const msg = await waitFor(() => byOrder("t1"), (m: any) => m?.status === "sent");
		expect(msg.attempts).toBe(2);
		// The first with the channel's own timeout; the retry with half the lease (60 s).
		expect(email.sends.filter((s) => s.id === msg.id).map((s) => s.options.timeoutMs)).toEqual([undefined, 30_000]);
		// An answer, even a refusal, is no reason to wait longer.
		email.script = { failures: 1, status: 503 };
		await shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload("t2", "u-bob") });
		const answered = await waitFor(() => byOrder("t2"), (m: any) => m?.status === "sent");
		expect(email.sends.filter((s) => s.id === answered.id).map((s) => s.options.timeoutMs)).toEqual([undefined, undefined]);
	});

	test("an erased account: user.deleted drops its kept messages, and account mail asked meanwhile is neither sent nor kept", async () => {
		email.script = { failures: 0, status: 500 };
		users.set("u-eve", { id: "u-eve", email: "eve@example.com", firstName: "Eve", phone: null });
		const kept = await resetMail("eve", "reset-token-eve-1");
		await waitFor(kept, (m: any) => m?.status === "sent");
		// Erased (users.get answers 404 from now on), then an email change asked a moment before reaches notifications.
		users.delete("u-eve");
		await shop.broker.call("users.announce", { event: "user.deleted", payload: { userId: "u-eve" } });
		await shop.broker.call("users.announce", { event: "user.email_change_requested", payload: { userId: "u-eve", email: "eve.new@example.com", firstName: "Eve", changeToken: "change-token-eve-1" } });
		await waitFor(() => svc.db.notifications.count({ userId: "u-eve" }), (n: number) => n === 0);
		// Both events were handled (none is left for a retry), and nothing went to the new address.
		await waitFor(() => svc.db.notification_events.count({ event: { $in: ["user.deleted", "user.email_change_requested"] } }), (n: number) => n === 2);
		expect(await svc.db.notifications.count({ recipient: "eve.new@example.com" })).toBe(0);
		expect(email.sent.filter((m) => m.to === "eve.new@example.com")).toEqual([]);
	});
});

/** A shop with the users stand-in and an orders outbox, and a data dir of its own for notifications' files (DATA_DIR). */
function shopWithDataDir(prefix: string): { shop: Shop; dataDir: string } {
	const t = {} as { shop: Shop; dataDir: string };
	beforeAll(async () => {
		t.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
		t.shop = await startShop({ services: [FakeUsers, sourceWithOutbox("orders")] });
	});
	afterAll(async () => {
		await t.shop.stop();
		fs.rmSync(t.dataDir, { recursive: true, force: true });
	});
	return t;
}

describe("notifications: pending work survives a restart", () => {
	const t = shopWithDataDir("notify-restart-");
	const env = () => ({ NODE_ENV: "development", DATA_DIR: t.dataDir, MONGO_URI: undefined });

	test("a message waiting for its retry is sent by the next run; handled events are not redone", async () => {
		// First run (files under DATA_DIR): the provider is down, so the message waits for a retry.
		let svc = await withEnv(env(), () => startNotifications(t.shop, notifications({ backoff: { baseMs: 600, factor: 2, maxMs: 2_000, jitter: 0 } })));
		const down = new ScriptedChannel("email", { failures: 100, status: 503 });
		svc.channels = { email: down, sms: new ScriptedChannel("sms") };
		await t.shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload("s1", "u-bob") });
		await waitFor(() => down.calls, (n) => n === 1);
		const { publicKey } = svc.vapidKeys;
		await t.shop.broker.destroyService(svc);
		expect(fs.readdirSync(t.dataDir).sort()).toEqual(["notification_cursors.db", "notification_events.db", "notification_keys.db", "notification_push_devices.db", "notification_push_subscriptions.db", "notifications.db"]);

		// Second run on the same files, with the outbox channel (no provider configured).
		svc = await withEnv(env(), () => startNotifications(t.shop));
		// The Web Push key pair made by the first run is kept: browsers subscribed with it still get messages.
		expect(svc.vapidKeys.publicKey).toBe(publicKey);
		const msg = await waitFor(() => svc.db.notifications.findOne({ template: "order-confirmed" }), (m: any) => m?.status === "outboxed");
		expect(msg).toMatchObject({ attempts: 2, recipient: "bob@example.com" });
		await sleep(300);
		expect(await svc.db.notifications.count({})).toBe(1);
		await t.shop.broker.destroyService(svc);
	});

	test("links in messages stored before links were removed on delivery are removed at the next start", async () => {
		let svc = await withEnv(env(), () => startNotifications(t.shop));
		const legacy = (id: string, template: string, status: string, token: string) =>
			svc.db.notifications.insert({
				id, userId: "u-bob", eventId: `e-${id}`, dedupeKey: `d-${id}`, template, channel: "email", provider: "outbox", recipient: "bob@example.com",
				subject: "Reset your password", html: `<p><a href="http://localhost:3000/reset-password?token&#61;${token}">Choose a new password</a></p>`,
				text: `Hello,\n\nhttp://localhost:3000/reset-password?token=${token}\n`, status, attempts: 1, providerId: null, error: null,
				createdAt: new Date(), sentAt: new Date(), failedAt: null, nextAttemptAt: new Date(Date.now() + 3_600_000), leaseUntil: new Date(0),
			});
		await legacy("old-sent", "password-reset", "sent", "old-token-1");
		await legacy("old-failed", "verify-email", "failed", "old-token-2");
		// Still to be sent (its retry is an hour away): its link is still needed.
		await legacy("old-queued", "password-reset", "queued", "old-token-3");
		await t.shop.broker.destroyService(svc);

		svc = await withEnv(env(), () => startNotifications(t.shop));
		for (const [id, token] of [["old-sent", "old-token-1"], ["old-failed", "old-token-2"]]) {
			const m = await svc.db.notifications.findById(id);
			expect(JSON.stringify(m)).not.toContain(token);
			expect(m.text).toBe(`Hello,\n\n${LINK_REMOVED}\n`);
			expect(m.html).toContain(`href="${LINK_REMOVED}"`);
		}
		expect((await svc.db.notifications.findById("old-queued")).text).toContain("old-token-3");
		expect(await svc.removeSpentLinks()).toBe(0);
		await t.shop.broker.destroyService(svc);
	});
});

describe("notifications: NOTIFICATION_RETENTION_DAYS", () => {
	const t = shopWithDataDir("notify-retention-");
	const DAY = 24 * 3600 * 1000;
	const env = (days?: string) => ({ NODE_ENV: "development", DATA_DIR: t.dataDir, MONGO_URI: undefined, NOTIFICATION_RETENTION_DAYS: days });
	const start = async (days: string | undefined, email: ScriptedChannel) => {
		const svc = await withEnv(env(days), () => startNotifications(t.shop));
		svc.channels = { email, sms: new ScriptedChannel("sms") };
		return svc;
	};
	const messageOf = (svc: any, orderId: string) => svc.db.notifications.findOne({ eventId: { $exists: true }, text: { $regex: new RegExp(`SO-${orderId}\\b`) } });

	test("unset: finished messages are kept for good", async () => {
		const svc = await start(undefined, new ScriptedChannel("email"));
		await t.shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload("keep1", "u-bob") });
		const sent = await waitFor(() => messageOf(svc, "keep1"), (m: any) => m?.status === "sent");
		expect(sent.purgeAt).toBeUndefined();
		await t.shop.broker.destroyService(svc);
	});

	test("set: a finished message (sent, or failed) is removed that many days after it finished; a retried one is kept while it waits again", async () => {
		const email = new ScriptedChannel("email");
		const svc = await start("8", email);
		// Stored before the setting (the previous test's run): kept 8 days from this start.
		const earlier = await messageOf(svc, "keep1");
		expect(earlier.purgeAt.getTime()).toBeGreaterThan(Date.now() + 8 * DAY - 60_000);

		await t.shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload("ret1", "u-bob") });
		const sent = await waitFor(() => messageOf(svc, "ret1"), (m: any) => m?.status === "sent");
		expect(sent.purgeAt.getTime() - sent.sentAt.getTime()).toBe(8 * DAY);

		email.script = { failures: 1, status: 400 };
		await t.shop.broker.call("orders.announce", { event: "order.confirmed", payload: orderPayload("ret2", "u-bob") });
		const failed = await waitFor(() => messageOf(svc, "ret2"), (m: any) => m?.status === "failed");
		expect(failed.purgeAt.getTime() - failed.failedAt.getTime()).toBe(8 * DAY);
		email.script = { failures: 100, status: 503 };
		expect((await t.shop.http.post(`/api/notifications/${failed.id}/retry`, {}, { token: admin })).status).toBe(200);
		expect((await svc.db.notifications.findById(failed.id)).purgeAt).toBeUndefined();

		// Its day comes: the message is gone from the store and from the lists; the others stay.
		await svc.db.notifications.updateOne({ id: sent.id }, { $set: { purgeAt: new Date(Date.now() - 1000) } });
		expect(await svc.db.notifications.findById(sent.id)).toBeNull();
		const listed = (await t.shop.http.get("/api/notifications?pageSize=100", { token: admin })).body.rows.map((m: any) => m.id);
		expect(listed).not.toContain(sent.id);
		expect(listed).toEqual(expect.arrayContaining([earlier.id, failed.id]));
		await t.shop.broker.destroyService(svc);
		// Removed from the file too (the minute sweep, or this start's load): not back after a restart.
		const again = await start("8", new ScriptedChannel("email"));
		expect(await again.db.notifications.count({ id: sent.id })).toBe(0);
		await t.shop.broker.destroyService(again);
	});

	test("unset again: nothing more is removed", async () => {
		const svc = await start(undefined, new ScriptedChannel("email"));
		expect(await svc.db.notifications.count({ purgeAt: { $exists: true } })).toBe(0);
		expect(await svc.db.notifications.count({})).toBeGreaterThanOrEqual(2);
		await t.shop.broker.destroyService(svc);
	});

	test("fewer days than a replayed event may come after (8) stop the start, naming the variable", async () => {
		await expect(withEnv(env("7"), () => startNotifications(t.shop))).rejects.toThrow(/NOTIFICATION_RETENTION_DAYS must be a whole number of days, 8 or more/);
	});
});

/** With the real services that publish the events (written concurrently with this one). */
describe("notifications with the real users, products, cart, orders and payments services", () => {
	const ADMIN = { email: "notify-admin@example.com", password: "Admin-Passw0rd-42!" };
	let restoreEnv: () => void;
	let shop: Shop;
	let adminToken: string;

	beforeAll(async () => {
		restoreEnv = setEnv({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, STRIPE_SECRET_KEY: undefined });
		shop = await startShop({ services: ["users", "products", "cart", "orders", "payments"] });
		adminToken = (await shop.http.post("/api/auth/login", ADMIN)).body.accessToken;
	}, 60_000);
	afterAll(async () => {
		await shop?.stop();
		restoreEnv();
	});

	test("a customer who registered and ordered while notifications was down gets each message once, and the link verifies the email", async () => {
		const reg = await shop.http.post("/api/auth/register", { email: "real-buyer@example.com", password: "Corr3ct-Horse-Battery", firstName: "Real" });
		expect(reg.status).toBe(201);
		const token: string = reg.body.accessToken;
		expect((await shop.http.patch("/api/me", { phone: "+14155550123" }, { token })).status).toBe(200);
		const address = await shop.http.post("/api/me/addresses", { type: "shipping", line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, { token });
		const product = await shop.http.post("/api/products", { name: "Notify Mug", price: 1_250, currency: "USD", variants: [{ sku: `NM-${process.pid}`, name: "One size", stock: 5 }] }, { token: adminToken });
		expect((await shop.http.post("/api/cart/items", { variantId: product.body.variants[0].id, quantity: 2 }, { token })).status).toBe(201);
		const order = await shop.http.post("/api/orders", { shippingAddressId: address.body.id, paymentMethod: { type: "card", token: "pm_card_visa" } }, { token, headers: { "Idempotency-Key": `k-${process.pid}` } });
		expect(order.status).toBe(201);

		const svc = await startNotifications(shop);
		const mine = () => shop.http.get("/api/me/notifications", { token });
		const listed = await waitFor(mine, (r) => r.body.total === 3 && r.body.rows.every((m: any) => m.status === "outboxed"), 15_000);
		expect(listed.body.rows.map((m: any) => `${m.template}/${m.channel}/${m.recipient}`).sort()).toEqual([
			"order-confirmed/email/real-buyer@example.com",
			"order-confirmed/sms/+14155550123",
			"verify-email/email/real-buyer@example.com",
		]);
		const confirmed = await svc.db.notifications.findOne({ template: "order-confirmed", channel: "email" });
		expect(confirmed.subject).toBe(`Order ${order.body.number} confirmed`);
		// The variant's name comes with the order's event.
		expect(confirmed.text).toContain("- 2 x Notify Mug (One size): $25.00");
		expect(confirmed.html).toContain("<td>Notify Mug (One size)</td>");
		expect(confirmed.text).toContain(`View your order: http://localhost:3000/orders/${order.body.id}\n`);

		// The link as it went out (here: outboxed, as in development's log); the stored copy has none left.
		const verify = delivered.find((m) => m.to === "real-buyer@example.com" && /verify-email\?token=/.test(m.text))!;
		const verifyToken = decodeURIComponent(/verify-email\?token=(\S+)/.exec(verify.text)![1]);
		expect(JSON.stringify(await svc.db.notifications.findOne({ template: "verify-email" }))).not.toContain(encodeURIComponent(verifyToken));
		const verified = await shop.http.post("/api/auth/verify-email", { token: verifyToken });
		expect(verified.status).toBe(200);
		expect(verified.body.user.isVerified).toBe(true);

		// Live from now on: shipping with a tracking number.
		expect((await shop.http.patch(`/api/orders/${order.body.id}/status`, { status: "processing" }, { token: adminToken })).status).toBe(200);
		expect((await shop.http.patch(`/api/orders/${order.body.id}/status`, { status: "shipped", trackingNumber: "TRACK-42" }, { token: adminToken })).status).toBe(200);
		await waitFor(mine, (r) => r.body.total === 5, 10_000);
		const shippedSms = await svc.db.notifications.findOne({ template: "order-shipped", channel: "sms" });
		expect(shippedSms.text).toContain("Tracking: TRACK-42");
		await sleep(300);
		expect((await mine()).body.total).toBe(5);
	}, 60_000);

	test("a customer's cancel of a paid order tells of its refund once, in the cancel message; an admin's refund has its own", async () => {
		const svc = shop.broker.getLocalService("notifications") as any;
		const reg = await shop.http.post("/api/auth/register", { email: "cancel-buyer@example.com", password: "Corr3ct-Horse-Battery", firstName: "Cora" });
		const token: string = reg.body.accessToken;
		expect((await shop.http.patch("/api/me", { phone: "+14155550124" }, { token })).status).toBe(200);
		const address = await shop.http.post("/api/me/addresses", { type: "shipping", line1: "2 Main St", city: "Springfield", postalCode: "12345", country: "US" }, { token });
		const product = await shop.http.post("/api/products", { name: "Cancel Lamp", price: 3_000, currency: "USD", variants: [{ sku: `CL-${process.pid}`, name: "Brass", stock: 5 }] }, { token: adminToken });
		const buy = async (key: string) => {
			expect((await shop.http.post("/api/cart/items", { variantId: product.body.variants[0].id, quantity: 1 }, { token })).status).toBe(201);
			const res = await shop.http.post("/api/orders", { shippingAddressId: address.body.id, paymentMethod: { type: "card", token: "pm_card_visa" } }, { token, headers: { "Idempotency-Key": key } });
			expect(res.status).toBe(201);
			return res.body;
		};
		const kept = await buy(`kept-${process.pid}`);
		const cancelled = await buy(`cancelled-${process.pid}`);
		const cancel = await shop.http.post(`/api/orders/${cancelled.id}/cancel`, {}, { token });
		expect(cancel.body).toMatchObject({ status: "cancelled", refundedAmount: cancelled.total });
		expect((await shop.http.post(`/api/orders/${kept.id}/refund`, { amount: 500, reason: "scratched base" }, { token: adminToken })).status).toBeLessThan(300);

		// Both refunds handled, the cancellation's without a message of its own.
		await waitFor(() => svc.db.notification_events.count({ event: "payment.refunded" }), (n: number) => n === 2, 10_000);
		await waitFor(() => svc.db.notification_events.count({ event: "order.cancelled" }), (n: number) => n === 1, 10_000);
		await sleep(300);
		const rows = (await shop.http.get("/api/me/notifications?pageSize=50", { token })).body.rows;
		expect(rows.map((m: any) => `${m.template}/${m.channel}`).sort()).toEqual([
			"order-cancelled/email",
			"order-cancelled/sms",
			"order-confirmed/email",
			"order-confirmed/email",
			"order-confirmed/sms",
			"order-confirmed/sms",
			"payment-refunded/email",
			"payment-refunded/sms",
			"verify-email/email",
		]);
		const total = `$${(cancelled.total / 100).toFixed(2)}`;
		const cancelMail = await svc.db.notifications.findOne({ template: "order-cancelled", channel: "email", recipient: "cancel-buyer@example.com" });
		expect(cancelMail.text).toContain(`Your order ${cancelled.number} was cancelled. This confirms the cancellation you asked for.\nIn all, ${total} of this order has been refunded`);
		const cancelSms = await svc.db.notifications.findOne({ template: "order-cancelled", channel: "sms", recipient: "+14155550124" });
		expect(cancelSms.text).toContain(`Refunded in all: ${total}`);
		const refundMail = await svc.db.notifications.findOne({ template: "payment-refunded", channel: "email", recipient: "cancel-buyer@example.com" });
		expect(refundMail.subject).toBe("Refund of $5.00 issued");
		expect(refundMail.text).toContain(`for order ${kept.number}`);
	}, 60_000);
});
