/**
 * Which messages an event asks for: the template kind, the channels and recipients, the values the
 * templates read, and the key that makes a message unique. Pure: the service does the I/O.
 */
import crypto from "node:crypto";
import { formatMoney } from "./money";
import { cancelRefundKey } from "./order-state";
import { toE164 } from "./user-records";

export type NotificationKind = "verify-email" | "password-reset" | "confirm-email-change" | "email-changed" | "order-confirmed" | "order-shipped" | "order-delivered" | "order-cancelled" | "payment-refunded" | "refund-failed";
export type Medium = "email" | "sms" | "push";
export type EventSource = "users" | "orders" | "payments";

export const NOTIFICATION_KINDS: NotificationKind[] = ["verify-email", "password-reset", "confirm-email-change", "email-changed", "order-confirmed", "order-shipped", "order-delivered", "order-cancelled", "payment-refunded", "refund-failed"];

/** The durable events we react to, by the service whose outbox keeps them. */
export const SOURCE_EVENTS: Record<EventSource, string[]> = {
	users: ["user.registered", "user.password_reset_requested", "user.email_change_requested", "user.email_changed", "user.deleted"],
	orders: ["order.confirmed", "order.status_changed", "order.cancelled"],
	payments: ["payment.refunded", "payment.refund_failed"],
};

/** Account mail: its event names the address it goes to, and (links or not) it goes by email only. */
const ACCOUNT_KINDS = new Set<NotificationKind>(["verify-email", "password-reset", "confirm-email-change", "email-changed"]);

export function sourceOf(event: string): EventSource | null {
	for (const [source, events] of Object.entries(SOURCE_EVENTS)) if (events.includes(event)) return source as EventSource;
	return null;
}

/**
 * The reasons orders gives the refund of a cancellation: the order's cancel reason (refundOwed in
 * lib/order-state.ts). That refund is made before the order.cancelled announcement, whose message
 * states it ("In all, $12.34 of this order has been refunded"), so a message of its own would tell
 * the customer twice. Not among them, so still announced on their own: "order_cancelled" (a payment
 * that completed after the cancellation was announced), "checkout_failed" (a checkout undone after
 * its charge, which sends no cancellation message), "cancelled" (orders cancelled before reasons
 * were kept), an admin's refund (its reason is the admin's note) and a refund made at Stripe.
 */
export const CANCELLATION_REFUND_REASONS: ReadonlySet<string> = new Set(["customer_request", "cancelled_by_shop", "payment_failed", "payment_timeout"]);

/**
 * A refund a cancellation made, which its cancel message states: its reason is a cancellation's and
 * its key the cancellation's (an admin's note that reads "customer_request" is no cancellation). An
 * event stored before refunds carried their key is judged by its reason alone.
 */
function isCancellationsOwnRefund(payload: Record<string, any>): boolean {
	if (!CANCELLATION_REFUND_REASONS.has(payload.reason)) return false;
	return payload.refundKey === undefined || payload.refundKey === cancelRefundKey(String(payload.orderId));
}

/** The template an event asks for, or null (e.g. an order moving to "processing" tells the customer nothing). */
export function kindFor(event: string, payload: Record<string, any>): NotificationKind | null {
	switch (event) {
		case "user.registered":
			return "verify-email";
		case "user.password_reset_requested":
			return "password-reset";
		// The link goes to the new address, which it proves; the notice to the old one, whose owner may not have asked.
		case "user.email_change_requested":
			return "confirm-email-change";
		case "user.email_changed":
			return "email-changed";
		case "order.confirmed":
			return "order-confirmed";
		case "order.status_changed":
			return payload.to === "shipped" ? "order-shipped" : payload.to === "delivered" ? "order-delivered" : null;
		case "order.cancelled":
			return "order-cancelled";
		case "payment.refunded":
			return isCancellationsOwnRefund(payload) ? null : "payment-refunded";
		// The customer was told the money was on its way (by the refund's or the cancellation's message).
		case "payment.refund_failed":
			return "refund-failed";
		default:
			return null;
	}
}

/** Account mail (verification, reset, email change): a customer waits for it, so it is not queued behind order news. */
export function isAccountMail(kind: NotificationKind): boolean {
	return ACCOUNT_KINDS.has(kind);
}

/** Order and payment events carry only the user id; the address and phone come from `users.get`. Account events carry their recipient. */
export function needsUserLookup(kind: NotificationKind): boolean {
	return !ACCOUNT_KINDS.has(kind);
}

/**
 * The event's id for de-duplication: the outbox's `eventId` ("orders:42"); for an event without one,
 * a hash of its name and payload, so the same delivery twice still maps to one id.
 */
export function eventIdOf(event: string, payload: Record<string, any>): string {
	if (typeof payload.eventId === "string" && payload.eventId) return payload.eventId;
	const { eventId: _ignored, ...rest } = payload;
	return `${event}:${crypto.createHash("sha256").update(stableJson(rest)).digest("hex").slice(0, 32)}`;
}

function stableJson(value: unknown): string {
	if (Array.isArray(value)) return `[${value.map(stableJson).join(",")}]`;
	if (value && typeof value === "object" && !(value instanceof Date)) {
		return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${stableJson((value as Record<string, unknown>)[k])}`).join(",")}}`;
	}
	return JSON.stringify(value) ?? "null";
}

/** The sequence number of an outbox event id of `source` ("orders:42" → 42), or null. */
export function outboxSeqOf(source: EventSource, eventId: string): number | null {
	const m = /^([a-z]+):(\d+)$/.exec(eventId);
	return m && m[1] === source ? Number(m[2]) : null;
}

export function dedupeKey(eventId: string, kind: NotificationKind, medium: Medium, recipient: string): string {
	return `${eventId}|${kind}|${medium}|${recipient.toLowerCase()}`;
}

export interface Contact {
	userId: string | null;
	email: string | null;
	phone: string | null;
	firstName: string | null;
	/** The customer's browsers subscribed for push (mixins/push-subscriptions.mixin.ts). */
	pushSubscriptionIds?: string[];
	/** The customer's phones with the shop's app (mixins/push-devices.mixin.ts). */
	pushDeviceIds?: string[];
}

/** A push message's recipient for an app's device: its id after this prefix (a browser's subscription id has none). */
const DEVICE_RECIPIENT = "device:";
export const deviceRecipient = (deviceId: string) => `${DEVICE_RECIPIENT}${deviceId}`;
/** The device id of an app push message's recipient; null for a browser's subscription. */
export function deviceIdOf(recipient: string): string | null {
	return recipient.startsWith(DEVICE_RECIPIENT) ? recipient.slice(DEVICE_RECIPIENT.length) : null;
}

export interface PlannedMessage {
	medium: Medium;
	recipient: string;
}

/**
 * Email when there is an address; for order news also SMS when the customer has a valid phone, and
 * push to each subscribed browser and each phone with the app (its recipient is the subscription's id,
 * or `device:` and the device's: the endpoint or token is a secret of the browser's or app's, and may
 * be renewed before the message goes).
 */
export function plannedMessages(kind: NotificationKind, contact: Contact): PlannedMessage[] {
	const out: PlannedMessage[] = [];
	if (contact.email) out.push({ medium: "email", recipient: contact.email.trim().toLowerCase() });
	if (ACCOUNT_KINDS.has(kind)) return out;
	const phone = toE164(contact.phone);
	if (phone) out.push({ medium: "sms", recipient: phone });
	for (const id of contact.pushSubscriptionIds ?? []) out.push({ medium: "push", recipient: id });
	for (const id of contact.pushDeviceIds ?? []) out.push({ medium: "push", recipient: deviceRecipient(id) });
	return out;
}

const ONE_TIME_TOKENS = ["verificationToken", "resetToken", "changeToken"] as const;

/**
 * The payload with its one-time tokens opened (they travel sealed, see lib/sealed-token.ts), or
 * null when one cannot be opened: a link with it would not work.
 */
export function withOpenedTokens(payload: Record<string, any>, open: (sealed: unknown) => string | null): Record<string, any> | null {
	const out = { ...payload };
	for (const field of ONE_TIME_TOKENS) {
		if (out[field] === undefined) continue;
		const token = open(out[field]);
		if (token === null) return null;
		out[field] = token;
	}
	return out;
}

/** Kinds whose messages carry a one-time link (it verifies an address or resets a password). */
export const ONE_TIME_LINK_KINDS: readonly NotificationKind[] = ["verify-email", "password-reset", "confirm-email-change"];

export const LINK_REMOVED = "[link removed after delivery]";

/** A URL with a `token` parameter, as `link` writes it: raw in text, HTML-escaped in html ("=" is "&#61;", "&" is "&amp;"). */
const TOKEN_URL = /[^\s"'<>]*[?&;]token(?:=|&#61;)[^\s"'<>]*/g;

/**
 * The stored body of a message once it is delivered or given up: a one-time link in it would still
 * work for whoever reads the store or a backup, so it goes. Null when the kind carries no link.
 */
export function withoutOneTimeLinks(kind: string, body: { html: string | null; text: string }): { html: string | null; text: string } | null {
	if (!(ONE_TIME_LINK_KINDS as readonly string[]).includes(kind)) return null;
	return { html: body.html == null ? null : body.html.replace(TOKEN_URL, LINK_REMOVED), text: body.text.replace(TOKEN_URL, LINK_REMOVED) };
}

export interface LinkSettings {
	shopName: string;
	storefrontUrl: string;
}

function money(amount: unknown, currency: unknown): string {
	return typeof amount === "number" && Number.isSafeInteger(amount) ? formatMoney(amount, typeof currency === "string" ? currency : undefined) : "";
}

/** A page of the storefront at `base` (STOREFRONT_URL, with or without its trailing slash). */
function storefrontPage(base: string, path: string): string {
	return `${base.replace(/\/+$/, "")}${path}`;
}

function link(base: string, path: string, token: unknown): string {
	return `${storefrontPage(base, path)}?token=${encodeURIComponent(String(token ?? ""))}`;
}

/** The order's page in the storefront, or "" without an order id (the templates then show no link). */
function orderUrl(base: string, orderId: unknown): string {
	return typeof orderId === "string" && orderId ? storefrontPage(base, `/orders/${encodeURIComponent(orderId)}`) : "";
}

/**
 * Why an order was cancelled, in the customer's words, by the order's cancel reason. Other reasons
 * (none stored, a checkout undone) say nothing more than "cancelled". Nothing about the cart: a
 * payment not completed gives the lines back to it only when no order was placed since (the
 * restoreCart follow-up), which the announcement does not know.
 */
const CANCEL_NOTES: ReadonlyMap<unknown, string> = new Map([
	["payment_failed", "The payment was not completed, so the order could not go ahead."],
	["payment_timeout", "The payment was not completed in time, so the order could not go ahead."],
	["customer_request", "This confirms the cancellation you asked for."],
	["cancelled_by_shop", "The shop cancelled it."],
]);

/** The values a kind's templates read; money leaves here formatted ("$12.34"), never as a float. */
export function templateVars(kind: NotificationKind, payload: Record<string, any>, contact: Contact, links: LinkSettings): Record<string, unknown> {
	const base = { shopName: links.shopName, firstName: contact.firstName || "there" };
	const currency = payload.currency;
	const order = { ...base, orderNumber: payload.number ?? payload.orderId, orderUrl: orderUrl(links.storefrontUrl, payload.orderId) };
	switch (kind) {
		case "verify-email":
			return { ...base, verifyUrl: link(links.storefrontUrl, "/verify-email", payload.verificationToken) };
		case "password-reset":
			return { ...base, resetUrl: link(links.storefrontUrl, "/reset-password", payload.resetToken) };
		case "confirm-email-change":
			return { ...base, newEmail: contact.email ?? "", confirmUrl: link(links.storefrontUrl, "/confirm-email-change", payload.changeToken) };
		case "email-changed":
			return { ...base, newEmail: typeof payload.newEmail === "string" ? payload.newEmail : "" };
		case "order-confirmed":
			return {
				...order,
				items: (Array.isArray(payload.items) ? payload.items : []).map((i: Record<string, any>) => ({
					name: i.name,
					variantName: typeof i.variantName === "string" ? i.variantName : "",
					quantity: i.quantity,
					lineTotal: money(i.lineTotal, currency),
				})),
				subtotal: money(payload.subtotal, currency),
				discount: payload.discount > 0 ? money(payload.discount, currency) : "",
				shipping: money(payload.shipping, currency),
				total: money(payload.total, currency),
			};
		case "order-shipped":
			return { ...order, trackingNumber: payload.trackingNumber ?? "" };
		case "order-delivered":
			return order;
		case "order-cancelled":
			return { ...order, refundedAmount: payload.refundedAmount > 0 ? money(payload.refundedAmount, currency) : "", cancelNote: CANCEL_NOTES.get(payload.reason) ?? "" };
		case "payment-refunded":
		case "refund-failed":
			return { ...order, orderNumber: payload.number ?? "", amount: money(payload.amount, currency), totalRefunded: money(payload.totalRefunded, currency) };
	}
}
