import fs from "node:fs";
import path from "node:path";
import {
	ONE_TIME_LINK_KINDS,
	CANCELLATION_REFUND_REASONS, LINK_REMOVED, NOTIFICATION_KINDS, dedupeKey, deviceIdOf, deviceRecipient, eventIdOf, kindFor, needsUserLookup, outboxSeqOf, plannedMessages, sourceOf, templateVars, withOpenedTokens,
	withoutOneTimeLinks, type Contact, type NotificationKind,
} from "../../lib/notification-plan";
import { renderTemplate } from "../../lib/template-render";
import { FOLLOW_UPS_AFTER, refundOwed, type Order } from "../../lib/order-state";
import { toE164 } from "../../lib/user-records";

const contact = (over: Partial<Contact> = {}): Contact => ({ userId: "u1", email: "Ann@Example.com ", phone: null, firstName: "Ann", ...over });
const links = { shopName: "Shop", storefrontUrl: "https://shop.example/" };

describe("notification plan", () => {
	test.each([
		["user.registered", {}, "verify-email"],
		["user.password_reset_requested", {}, "password-reset"],
		["user.email_change_requested", {}, "confirm-email-change"],
		["user.email_changed", {}, "email-changed"],
		["order.confirmed", {}, "order-confirmed"],
		["order.status_changed", { to: "shipped" }, "order-shipped"],
		["order.status_changed", { to: "delivered" }, "order-delivered"],
		["order.status_changed", { to: "processing" }, null],
		["order.cancelled", {}, "order-cancelled"],
		["payment.refunded", {}, "payment-refunded"],
		["payment.succeeded", {}, null],
		// Told whatever the refund was (a cancellation's included): the customer was told the money was coming.
		["payment.refund_failed", { reason: "expired_or_canceled_card" }, "refund-failed"],
		["payment.refund_failed", { orderId: "o1", refundKey: "o1-cancel", reason: "expired_or_canceled_card" }, "refund-failed"],
		// The refund of a cancellation: the order.cancelled message states it ("In all, $X refunded").
		["payment.refunded", { reason: "customer_request" }, null],
		["payment.refunded", { reason: "cancelled_by_shop" }, null],
		["payment.refunded", { reason: "payment_failed" }, null],
		["payment.refunded", { reason: "payment_timeout" }, null],
		// Refunds whose cancellation message never states them: announced on their own.
		["payment.refunded", { reason: "order_cancelled", sale: false }, "payment-refunded"],
		["payment.refunded", { reason: "checkout_failed", sale: false }, "payment-refunded"],
		["payment.refunded", { reason: "cancelled" }, "payment-refunded"],
		["payment.refunded", { reason: "damaged in transit" }, "payment-refunded"],
		["payment.refunded", { reason: "Refunded at the payment provider" }, "payment-refunded"],
		["payment.refunded", { reason: null }, "payment-refunded"],
		// With its key: a cancellation's own refund is told by the cancel message; an admin's whose note reads the same is not.
		["payment.refunded", { orderId: "o1", refundKey: "o1-cancel", reason: "customer_request" }, null],
		["payment.refunded", { orderId: "o1", refundKey: "o1-admin-k1", reason: "customer_request" }, "payment-refunded"],
		["payment.refunded", { orderId: "o1", refundKey: "o1-admin-k2", reason: "payment_timeout" }, "payment-refunded"],
	])("%s %j → %s", (event, payload, kind) => {
		expect(kindFor(event, payload)).toBe(kind);
	});

	test("the refund orders makes for a cancellation (before announcing it) gets no message; a late payment's refund (after) does", () => {
		const order = (over: Partial<Order>) => ({ id: "o1", paidAmount: 2599, refundedAmount: 0, confirmedAt: new Date(), cancelReason: "customer_request", ...over }) as Order;
		// The follow-ups of a cancellation refund before they announce it: its message states the refund.
		for (const list of [FOLLOW_UPS_AFTER.cancelled, FOLLOW_UPS_AFTER.paymentNotCompleted]) expect(list.indexOf("refund")).toBeLessThan(list.indexOf("announceCancelled"));
		for (const cancelReason of ["customer_request", "cancelled_by_shop", "payment_failed", "payment_timeout"]) {
			expect(CANCELLATION_REFUND_REASONS.has(cancelReason)).toBe(true);
			expect(kindFor("payment.refunded", { reason: refundOwed(order({ cancelReason }), "refund")!.reason })).toBeNull();
		}
		expect(kindFor("payment.refunded", { reason: refundOwed(order({}), "refundLatePayment")!.reason })).toBe("payment-refunded");
	});

	test.each([
		["user.registered", "users"],
		["user.email_change_requested", "users"],
		["user.email_changed", "users"],
		["order.cancelled", "orders"],
		["payment.refunded", "payments"],
		["product.created", null],
	])("%s comes from %s", (event, source) => expect(sourceOf(event)).toBe(source));

	test("account mail needs no user lookup, order news does", () => {
		expect(needsUserLookup("verify-email")).toBe(false);
		expect(needsUserLookup("password-reset")).toBe(false);
		// Both carry their recipient: the new address to confirm, the old one to tell.
		expect(needsUserLookup("confirm-email-change")).toBe(false);
		expect(needsUserLookup("email-changed")).toBe(false);
		expect(needsUserLookup("order-shipped")).toBe(true);
	});

	test("event ids: the outbox's, or a stable hash of the event", () => {
		expect(eventIdOf("order.confirmed", { eventId: "orders:7", orderId: "o1" })).toBe("orders:7");
		const a = eventIdOf("order.confirmed", { orderId: "o1", items: [{ b: 1, a: 2 }] });
		expect(a).toMatch(/^order\.confirmed:[0-9a-f]{32}$/);
		expect(eventIdOf("order.confirmed", { items: [{ a: 2, b: 1 }], orderId: "o1" })).toBe(a);
		expect(eventIdOf("order.cancelled", { orderId: "o1", items: [{ b: 1, a: 2 }] })).not.toBe(a);
		expect(eventIdOf("order.confirmed", { orderId: "o2", items: [{ b: 1, a: 2 }] })).not.toBe(a);
	});

	test.each([
		["orders", "orders:42", 42],
		["orders", "payments:42", null],
		["users", "users:x", null],
		["users", "abc", null],
	] as const)("outbox seq of %s in %s is %s", (source, id, seq) => expect(outboxSeqOf(source, id)).toBe(seq));

	test("the dedupe key is event + template + channel + recipient, recipient case-insensitive", () => {
		expect(dedupeKey("orders:1", "order-confirmed", "email", "Ann@Example.com")).toBe(dedupeKey("orders:1", "order-confirmed", "email", "ann@example.com"));
		const keys = new Set([
			dedupeKey("orders:1", "order-confirmed", "email", "a@x"),
			dedupeKey("orders:2", "order-confirmed", "email", "a@x"),
			dedupeKey("orders:1", "order-shipped", "email", "a@x"),
			dedupeKey("orders:1", "order-confirmed", "sms", "a@x"),
			dedupeKey("orders:1", "order-confirmed", "email", "b@x"),
		]);
		expect(keys.size).toBe(5);
	});

	test.each([
		["+14155550100", "+14155550100"],
		["+1 (415) 555-0100", "+14155550100"],
		["0044 20 7946 0958", "+442079460958"],
		["415-555-0100", null],
		["+0123456789", null],
		["call me", null],
		[null, null],
	])("phone %s → %s", (input, e164) => expect(toE164(input)).toBe(e164));

	test.each([
		["order-confirmed", contact({ phone: "+1 415 555 0100" }), [{ medium: "email", recipient: "ann@example.com" }, { medium: "sms", recipient: "+14155550100" }]],
		["order-confirmed", contact({ phone: "not a phone" }), [{ medium: "email", recipient: "ann@example.com" }]],
		["password-reset", contact({ phone: "+14155550100" }), [{ medium: "email", recipient: "ann@example.com" }]],
		["order-shipped", contact({ email: null, phone: "+14155550100" }), [{ medium: "sms", recipient: "+14155550100" }]],
		["order-shipped", contact({ email: null }), []],
		["order-shipped", contact({ pushSubscriptionIds: ["s1", "s2"] }), [{ medium: "email", recipient: "ann@example.com" }, { medium: "push", recipient: "s1" }, { medium: "push", recipient: "s2" }]],
		// A phone with the app: its device id, marked as a device's.
		["order-shipped", contact({ pushSubscriptionIds: ["s1"], pushDeviceIds: ["d1"] }), [{ medium: "email", recipient: "ann@example.com" }, { medium: "push", recipient: "s1" }, { medium: "push", recipient: "device:d1" }]],
		// Account mail carries links for the address it names: never to a browser or an app.
		["verify-email", contact({ pushSubscriptionIds: ["s1"], pushDeviceIds: ["d1"] }), [{ medium: "email", recipient: "ann@example.com" }]],
	] as const)("%s for %j", (kind, c, planned) => {
		expect(plannedMessages(kind, c)).toEqual(planned);
	});

	test("a device's recipient reads back as its id; a browser subscription's has none", () => {
		expect(deviceIdOf(deviceRecipient("d1"))).toBe("d1");
		expect(deviceIdOf("s1")).toBeNull();
	});

	test("template values: links carry the token encoded, money is formatted, empty parts are empty", () => {
		expect(templateVars("verify-email", { verificationToken: "a/b+c" }, contact({ firstName: null }), links)).toEqual({ shopName: "Shop", firstName: "there", verifyUrl: "https://shop.example/verify-email?token=a%2Fb%2Bc" });
		expect(templateVars("password-reset", { resetToken: "r1" }, contact(), links)).toMatchObject({ resetUrl: "https://shop.example/reset-password?token=r1" });
		expect(templateVars("confirm-email-change", { changeToken: "c/1" }, contact({ email: "new@example.com" }), links)).toEqual({
			shopName: "Shop",
			firstName: "Ann",
			newEmail: "new@example.com",
			confirmUrl: "https://shop.example/confirm-email-change?token=c%2F1",
		});
		expect(templateVars("email-changed", { newEmail: "new@example.com" }, contact({ email: "old@example.com" }), links)).toEqual({ shopName: "Shop", firstName: "Ann", newEmail: "new@example.com" });
		expect(
			templateVars("order-confirmed", { number: "SO-1", items: [{ name: "Tee", quantity: 2, lineTotal: 2500 }], subtotal: 2500, discount: 0, shipping: 499, total: 2999, currency: "EUR" }, contact(), links),
		).toMatchObject({ orderNumber: "SO-1", items: [{ name: "Tee", quantity: 2, lineTotal: "€25.00" }], subtotal: "€25.00", discount: "", shipping: "€4.99", total: "€29.99" });
		expect(templateVars("order-shipped", { orderId: "o1" }, contact(), links)).toMatchObject({ orderNumber: "o1", trackingNumber: "", orderUrl: "https://shop.example/orders/o1" });
		expect(templateVars("order-cancelled", { number: "SO-2", refundedAmount: 0, currency: "USD" }, contact(), links)).toMatchObject({ refundedAmount: "" });
		// Why, when the order says.
		expect(templateVars("order-cancelled", { number: "SO-2", reason: "payment_failed" }, contact(), links)).toMatchObject({ cancelNote: "The payment was not completed, so the order could not go ahead." });
		expect(templateVars("order-cancelled", { number: "SO-2", reason: "customer_request" }, contact(), links)).toMatchObject({ cancelNote: "This confirms the cancellation you asked for." });
		expect(templateVars("order-cancelled", { number: "SO-2", reason: "toString" }, contact(), links)).toMatchObject({ cancelNote: "" });
		expect(templateVars("order-cancelled", { number: "SO-2" }, contact(), links)).toMatchObject({ cancelNote: "" });
		expect(templateVars("payment-refunded", { amount: 1050, totalRefunded: 2000, currency: "USD" }, contact(), links)).toMatchObject({ amount: "$10.50", totalRefunded: "$20.00", orderNumber: "" });
		// Money that is not whole cents is not shown as if it were.
		expect(templateVars("payment-refunded", { amount: 10.5, currency: "USD" }, contact(), links)).toMatchObject({ amount: "" });
	});
});

describe("order messages", () => {
	const read = (kind: NotificationKind, suffix: string) => fs.readFileSync(path.join(__dirname, "../../templates/notifications", kind + suffix), "utf8");
	const render = (kind: NotificationKind, payload: Record<string, any>, storefrontUrl = "https://shop.example.com/store/") => {
		const vars = templateVars(kind, payload, contact(), { shopName: "Shop", storefrontUrl });
		return { html: renderTemplate(read(kind, ".html"), vars, "html"), text: renderTemplate(read(kind, ".txt"), vars, "text"), sms: renderTemplate(read(kind, ".sms.txt"), vars, "text") };
	};
	const confirmed = {
		orderId: "o-1",
		number: "SO-1",
		currency: "USD",
		items: [
			{ name: "Coastal Ocean Print", variantName: "A1", quantity: 1, lineTotal: 2799 },
			{ name: "Coastal Ocean Print", variantName: "A2 <matte> & \"framed\"", quantity: 1, lineTotal: 1799 },
			{ name: "Gift card", quantity: 1, lineTotal: 1000 },
			{ name: "Sticker", variantName: "", quantity: 2, lineTotal: 200 },
		],
		subtotal: 5798,
		discount: 0,
		shipping: 0,
		total: 5798,
	};

	test("the confirmation names each line's variant when it has one, escaped in html", () => {
		const { text, html } = render("order-confirmed", confirmed);
		expect(text).toContain(
			"- 1 x Coastal Ocean Print (A1): $27.99\n- 1 x Coastal Ocean Print (A2 <matte> & \"framed\"): $17.99\n- 1 x Gift card: $10.00\n- 2 x Sticker: $2.00\n",
		);
		expect(html).toContain("<td>Coastal Ocean Print (A1)</td>");
		expect(html).toContain("<td>Coastal Ocean Print (A2 &lt;matte&gt; &amp; &quot;framed&quot;)</td>");
		expect(html).toContain("<td>Gift card</td>");
		expect(html).toContain("<td>Sticker</td>");
	});

	test.each<[NotificationKind, Record<string, any>]>([
		["order-confirmed", confirmed],
		["order-shipped", { orderId: "o-1", number: "SO-1", trackingNumber: "1Z" }],
		["order-delivered", { orderId: "o-1", number: "SO-1" }],
		["order-cancelled", { orderId: "o-1", number: "SO-1", refundedAmount: 5798, currency: "USD" }],
		["payment-refunded", { orderId: "o-1", number: "SO-1", amount: 500, totalRefunded: 500, currency: "USD" }],
	])("%s links to the order in STOREFRONT_URL, in text and html (not by SMS)", (kind, payload) => {
		for (const base of ["https://shop.example.com/store/", "https://shop.example.com/store"]) {
			const { text, html, sms } = render(kind, payload, base);
			expect(text).toMatch(/\n\nView your order: https:\/\/shop\.example\.com\/store\/orders\/o-1\n$/);
			expect(html).toContain('<p><a href="https://shop.example.com/store/orders/o-1">View your order</a></p>');
			expect(sms).not.toContain("/orders/");
		}
	});

	test("a cancellation says why, when the order says", () => {
		const { text, html, sms } = render("order-cancelled", { orderId: "o-1", number: "SO-1", refundedAmount: 0, currency: "USD", reason: "payment_failed" });
		expect(text).toContain("Your order SO-1 was cancelled. The payment was not completed, so the order could not go ahead.\n");
		expect(html).toContain("was cancelled. The payment was not completed, so the order could not go ahead.</p>");
		expect(sms.trim()).toBe("Shop: order SO-1 was cancelled.");
		expect(render("order-cancelled", { orderId: "o-1", number: "SO-1", reason: "checkout_failed" }).text).toContain("Your order SO-1 was cancelled.\n");
	});

	test("an order id is one path segment of the link; without one there is no link", () => {
		expect(templateVars("order-delivered", { orderId: "a/b?c" }, contact(), links)).toMatchObject({ orderUrl: "https://shop.example/orders/a%2Fb%3Fc" });
		const { text, html } = render("payment-refunded", { amount: 500, totalRefunded: 500, currency: "USD" });
		expect(text).not.toContain("View your order");
		expect(html).not.toContain("View your order");
	});
});

describe("one-time tokens in payloads", () => {
	const open = (v: unknown) => (v === "sealed-ok" ? "raw-token" : v === "sealed-bad" ? null : String(v));
	test("are opened; a payload without one is unchanged; one that cannot be opened gives null", () => {
		expect(withOpenedTokens({ email: "a@b.c", verificationToken: "sealed-ok" }, open)).toEqual({ email: "a@b.c", verificationToken: "raw-token" });
		expect(withOpenedTokens({ resetToken: "sealed-ok", userId: "u1" }, open)).toEqual({ resetToken: "raw-token", userId: "u1" });
		expect(withOpenedTokens({ orderId: "o1" }, open)).toEqual({ orderId: "o1" });
		expect(withOpenedTokens({ resetToken: "sealed-bad" }, open)).toBeNull();
	});
});


describe("one-time links in stored bodies", () => {
	const TOKEN = "Zk3-q_9xYbL0mN2pQ4rS6tU8vW1yA3cE5gI7kM9oQ2s";
	const read = (kind: NotificationKind, suffix: string) => fs.readFileSync(path.join(__dirname, "../../templates/notifications", kind + suffix), "utf8");
	const rendered = (kind: NotificationKind, storefrontUrl: string) => {
		const vars = templateVars(kind, { verificationToken: TOKEN, resetToken: TOKEN, changeToken: TOKEN, number: "SO-1", items: [] }, contact(), { shopName: "Shop", storefrontUrl });
		return { html: renderTemplate(read(kind, ".html"), vars, "html"), text: renderTemplate(read(kind, ".txt"), vars, "text") };
	};

	test.each<[NotificationKind, string]>([
		["verify-email", "https://shop.example/"],
		["password-reset", "https://shop.example"],
		["password-reset", "https://shop.example/store?lang=en&region=eu"],
		["verify-email", "http://localhost:3000"],
		["confirm-email-change", "https://shop.example/"],
	])("%s from %s: the link goes from html and text, the rest stays", (kind, storefrontUrl) => {
		const body = rendered(kind, storefrontUrl);
		expect(body.text).toContain(TOKEN);
		expect(body.html).toContain(TOKEN);
		const spent = withoutOneTimeLinks(kind, body)!;
		for (const part of [spent.text, spent.html!]) {
			expect(part).not.toContain(TOKEN);
			expect(part).not.toMatch(/token(=|&#61;)/);
			expect(part).toContain(LINK_REMOVED);
			// Mail to an address nobody may have verified yet greets no one by a name anyone could have typed.
			expect(part).toContain("Hello,");
			expect(part).not.toMatch(/Hi Ann/);
		}
		expect(spent.html).toContain(`href="${LINK_REMOVED}"`);
		expect(spent.text.split("\n")).toContain(LINK_REMOVED);
	});

	test("kinds without a link are left alone; a message without html keeps none", () => {
		for (const kind of NOTIFICATION_KINDS.filter((k) => !ONE_TIME_LINK_KINDS.includes(k))) {
			expect(withoutOneTimeLinks(kind, { html: "<a href=\"https://x/?token=1\">", text: "https://x/?token=1" })).toBeNull();
		}
		expect(withoutOneTimeLinks("password-reset", { html: null, text: `Open https://x/reset-password?token=${TOKEN} now` })).toEqual({ html: null, text: `Open ${LINK_REMOVED} now` });
	});
});
