/**
 * The events analytics consumes: validation of their payloads (docs/services.md) into one typed
 * shape, and the hourly counter increments each one causes. No broker, no I/O.
 *
 * Revenue rule: revenue is the sum of confirmed (paid) order totals, shipping included, minus
 * refunds, each counted in the hour it happened. Only `payment.refunded` lowers revenue:
 * `order.cancelled` counts the cancellation, and the money of a paid order that is cancelled comes
 * back through the refund the orders service makes, which arrives as `payment.refunded`.
 * Subtracting on both would count that refund twice. A refund the provider fails later
 * (`payment.refund_failed`) is added back, in the hour it failed.
 */
import { allocateCents, isCents } from "./money";
import { hourKey } from "./time-buckets";

export const ANALYTICS_EVENTS = [
	"order.created",
	"order.confirmed",
	"order.cancelled",
	"checkout.failed",
	"payment.refunded",
	"payment.refund_failed",
	"payment.failed",
	"product.viewed",
	"cart.item_added",
] as const;
export type AnalyticsEventName = (typeof ANALYTICS_EVENTS)[number];

/**
 * Events sent live only, without an outbox (they are many, and only counted): nothing ever delivers
 * one again, so once counted there is no duplicate to catch, and no reason to keep its id.
 */
export const LIVE_ONLY_EVENTS: readonly AnalyticsEventName[] = ["product.viewed", "cart.item_added"];

export interface SoldItem {
	productId: string;
	name?: string;
	quantity: number;
	lineTotal: number;
}

interface EventBase {
	eventId: string;
	/** When it happened: `occurredAt` when the producer sends it, otherwise see `eventTime`. */
	at: Date;
	/** Hourly bucket key of `at`. */
	hour: string;
}

export type AnalyticsEvent = EventBase &
	(
		| { type: "order.created"; orderId: string; status: string; currency: string }
		| {
				type: "order.confirmed";
				orderId: string;
				status: string;
				currency: string;
				total: number;
				discount: number;
				items: SoldItem[];
				checkoutDurationMs?: number;
		  }
		| {
				type: "order.cancelled";
				orderId: string;
				status: string;
				currency: string;
				/** What a confirmed order had sold, taken back from the products' units and revenue. */
				unsold?: { discount: number; items: SoldItem[] };
				/** Why it was cancelled (payment_failed, payment_timeout, customer_request, ...), as the order records it. */
				reason: string;
		  }
		| { type: "checkout.failed"; orderId: string; status: string; currency: string; reason: string }
		| { type: "payment.refunded" | "payment.refund_failed"; orderId: string; currency: string; amount: number; sale: boolean }
		| { type: "payment.failed"; orderId: string; currency: string; amount: number }
		| { type: "product.viewed"; productId: string }
		| { type: "cart.item_added"; productId: string; quantity: number }
	);

export type NormaliseResult = { ok: true; event: AnalyticsEvent } | { ok: false; eventId?: string; reason: string };

class PayloadError extends Error {}

type Payload = Record<string, unknown>;

function id(p: Payload, field: string): string {
	const v = p[field];
	if (typeof v !== "string" || !v.trim() || v.length > 200) throw new PayloadError(`${field} must be a non-empty string`);
	return v;
}

function cents(p: Payload, field: string, min: number): number {
	const v = p[field];
	if (!isCents(v) || v < min) throw new PayloadError(`${field} must be an integer number of cents >= ${min}`);
	return v;
}

function currency(p: Payload): string {
	const v = p.currency;
	if (typeof v !== "string" || !/^[A-Za-z]{3}$/.test(v)) throw new PayloadError("currency must be an ISO 4217 code");
	return v.toUpperCase();
}

function positiveInt(p: Payload, field: string): number {
	const v = p[field];
	if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) throw new PayloadError(`${field} must be a positive integer`);
	return v;
}

function toDate(v: unknown): Date | undefined {
	if (v instanceof Date || typeof v === "string" || typeof v === "number") {
		const d = new Date(v);
		if (Number.isFinite(d.getTime())) return d;
	}
	return undefined;
}

/**
 * `occurredAt` when the producer sends it. Otherwise `order.created` and `checkout.failed` use the
 * order's `createdAt` (the moment the checkout started), and every other event the time it reached
 * us: for live events that is within moments of when it happened.
 */
export function eventTime(name: AnalyticsEventName, p: Payload, receivedAt: Date): Date {
	return toDate(p.occurredAt) ?? (name === "order.created" || name === "checkout.failed" ? toDate(p.createdAt) : undefined) ?? receivedAt;
}

function soldItems(p: Payload): SoldItem[] {
	if (!Array.isArray(p.items)) throw new PayloadError("items must be an array");
	return p.items.map((raw, i) => {
		if (!raw || typeof raw !== "object") throw new PayloadError(`items[${i}] must be an object`);
		const item = raw as Payload;
		try {
			return {
				productId: id(item, "productId"),
				name: typeof item.name === "string" ? item.name.slice(0, 200) : undefined,
				quantity: positiveInt(item, "quantity"),
				lineTotal: cents(item, "lineTotal", 0),
			};
		} catch (err) {
			throw new PayloadError(`items[${i}].${(err as Error).message}`);
		}
	});
}

function optionalDuration(p: Payload): number | undefined {
	const v = p.checkoutDurationMs;
	return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/** The status an order event stands for is its name's, whatever the payload's snapshot says. */
const ORDER_STATUS = { "order.created": "pending", "order.confirmed": "confirmed", "order.cancelled": "cancelled", "checkout.failed": "cancelled" } as const;

export function isAnalyticsEvent(name: string): name is AnalyticsEventName {
	return (ANALYTICS_EVENTS as readonly string[]).includes(name);
}

/** Validates one incoming payload; a bad one is reported, never thrown. */
export function normaliseEvent(name: string, payload: unknown, receivedAt: Date = new Date()): NormaliseResult {
	if (!isAnalyticsEvent(name)) return { ok: false, reason: `not an analytics event: ${name}` };
	if (!payload || typeof payload !== "object") return { ok: false, reason: "payload must be an object" };
	const p = payload as Payload;
	const eventId = typeof p.eventId === "string" ? p.eventId : undefined;
	try {
		const base = { eventId: id(p, "eventId"), at: eventTime(name, p, receivedAt) };
		const withHour = { ...base, hour: hourKey(base.at) };
		switch (name) {
			case "order.created":
				return { ok: true, event: { ...withHour, type: name, orderId: id(p, "orderId"), status: ORDER_STATUS[name], currency: currency(p) } };
			case "order.cancelled": {
				const unsold = p.wasConfirmed === true ? { discount: p.discount == null ? 0 : cents(p, "discount", 0), items: soldItems(p) } : undefined;
				const reason = typeof p.reason === "string" && p.reason.trim() ? p.reason.slice(0, 100) : "cancelled";
				return { ok: true, event: { ...withHour, type: name, orderId: id(p, "orderId"), status: ORDER_STATUS[name], currency: currency(p), reason, ...(unsold ? { unsold } : {}) } };
			}
			case "order.confirmed":
				return {
					ok: true,
					event: {
						...withHour,
						type: name,
						orderId: id(p, "orderId"),
						status: ORDER_STATUS[name],
						currency: currency(p),
						total: cents(p, "total", 0),
						discount: p.discount == null ? 0 : cents(p, "discount", 0),
						items: soldItems(p),
						checkoutDurationMs: optionalDuration(p),
					},
				};
			case "checkout.failed":
				return { ok: true, event: { ...withHour, type: name, orderId: id(p, "orderId"), status: ORDER_STATUS[name], currency: currency(p), reason: id(p, "reason") } };
			case "payment.refunded":
			case "payment.refund_failed":
				// `sale: false`: the money of an order that never was a sale (paid after it was cancelled).
				return { ok: true, event: { ...withHour, type: name, orderId: id(p, "orderId"), currency: currency(p), amount: cents(p, "amount", 1), sale: p.sale !== false } };
			case "payment.failed":
				return { ok: true, event: { ...withHour, type: name, orderId: id(p, "orderId"), currency: currency(p), amount: cents(p, "amount", 0) } };
			case "product.viewed":
				return { ok: true, event: { ...withHour, type: name, productId: id(p, "productId") } };
			case "cart.item_added":
				return { ok: true, event: { ...withHour, type: name, productId: id(p, "productId"), quantity: positiveInt(p, "quantity") } };
		}
	} catch (err) {
		if (err instanceof PayloadError) return { ok: false, eventId, reason: err.message };
		throw err;
	}
}

// ---- aggregation -------------------------------------------------------------------------

export type MetricName = "orders" | "revenue" | "refunds" | "units" | "product_revenue" | "views" | "funnel" | "payment_failures" | "checkout_failures";

export type FunnelStep = "views" | "addedToCart" | "checkoutStarted" | "paid";

/** One `$inc` on one hourly counter; `dims` are stored beside it for the reports. */
export interface Increment {
	bucket: string;
	metric: MetricName;
	key: string;
	value: number;
	dims: Record<string, string>;
}

/**
 * Why the event's checkout did not go through, or null: a checkout that failed before its order was
 * placed (declined, out of stock, ...), or an order cancelled before it was ever confirmed (its payment
 * failed or never completed, or it was cancelled while waiting for it).
 */
export function checkoutFailureOf(e: AnalyticsEvent): string | null {
	if (e.type === "checkout.failed") return e.reason;
	if (e.type === "order.cancelled" && !e.unsold) return e.reason;
	return null;
}

/**
 * The counters one event moves. Product revenue is each line's total minus its share of the
 * order discount (shares in whole cents that add up to the discount exactly).
 */
export function incrementsFor(e: AnalyticsEvent): Increment[] {
	const at = (metric: MetricName, key: string, value: number, dims: Record<string, string> = {}): Increment => ({ bucket: e.hour, metric, key, value, dims });
	const failed = checkoutFailureOf(e);
	const own = ownIncrements(e, at);
	return failed === null ? own : [...own, at("checkout_failures", failed, 1, { reason: failed })];
}

type At = (metric: MetricName, key: string, value: number, dims?: Record<string, string>) => Increment;

/** The counters an event moves besides the checkout failures (checkoutFailureOf). */
function ownIncrements(e: AnalyticsEvent, at: At): Increment[] {
	const funnel = (step: FunnelStep) => at("funnel", step, 1, { step });
	switch (e.type) {
		case "order.created":
			return [funnel("checkoutStarted")];
		case "order.confirmed": {
			const out = [
				at("orders", `${e.status}|${e.currency}`, 1, { status: e.status, currency: e.currency }),
				at("revenue", e.currency, e.total, { currency: e.currency }),
				funnel("paid"),
			];
			return [...out, ...productIncrements(e, 1, at)];
		}
		case "order.cancelled":
			// The money comes back through payment.refunded (see the top); a confirmed order's goods are
			// taken back from the products' units and revenue, which refunds do not touch.
			return [at("orders", `${e.status}|${e.currency}`, 1, { status: e.status, currency: e.currency }), ...(e.unsold ? productIncrements({ ...e.unsold, currency: e.currency }, -1, at) : [])];
		case "payment.refunded":
			// Money that was never counted as revenue (no order.confirmed) is not taken off it either.
			if (!e.sale) return [];
			return [at("revenue", e.currency, -e.amount, { currency: e.currency }), at("refunds", e.currency, e.amount, { currency: e.currency })];
		case "payment.refund_failed":
			// The refund's money stayed with the shop: back into revenue, out of refunds.
			if (!e.sale) return [];
			return [at("revenue", e.currency, e.amount, { currency: e.currency }), at("refunds", e.currency, -e.amount, { currency: e.currency })];
		case "checkout.failed":
			// A checkout started (its order was created) that did not go through: declined, out of stock, ...
			// Its order ends cancelled, as GET /orders lists it, so it is among the cancelled orders too.
			return [funnel("checkoutStarted"), at("orders", `${e.status}|${e.currency}`, 1, { status: e.status, currency: e.currency })];
		case "payment.failed":
			return [at("payment_failures", e.currency, 1, { currency: e.currency })];
		case "product.viewed":
			return [at("views", e.productId, 1, { productId: e.productId }), funnel("views")];
		case "cart.item_added":
			return [funnel("addedToCart")];
	}
}

/** Units and revenue per product of an order's lines, each line net of its share of the discount; `sign` -1 takes them back. */
function productIncrements(
	sale: { discount: number; items: SoldItem[]; currency: string },
	sign: 1 | -1,
	at: At,
): Increment[] {
	const discounts = allocateCents(Math.min(sale.discount, sale.items.reduce((s, i) => s + i.lineTotal, 0)), sale.items.map((i) => i.lineTotal));
	return sale.items.flatMap((item, i) => {
		const dims: Record<string, string> = { productId: item.productId };
		if (item.name) dims.name = item.name;
		return [
			at("units", item.productId, sign * item.quantity, dims),
			at("product_revenue", `${item.productId}|${sale.currency}`, sign * (item.lineTotal - discounts[i]), { ...dims, currency: sale.currency }),
		];
	});
}

/**
 * The stored id of an increment's counter: an upsert by id is a lookup in the primary index, where
 * one by the (bucket, metric, key) compound index compared objects field by field (~3x slower).
 * Neither bucket nor metric contains "|", so the id is unambiguous.
 */
export function counterId(inc: Pick<Increment, "bucket" | "metric" | "key">): string {
	return `${inc.bucket}|${inc.metric}|${inc.key}`;
}

/** Sums increments on the same counter, so a batch becomes one `$inc` per counter. */
export function combineIncrements(list: Increment[]): Increment[] {
	const byCounter = new Map<string, Increment>();
	for (const inc of list) {
		const k = `${inc.bucket}\u0000${inc.metric}\u0000${inc.key}`;
		const seen = byCounter.get(k);
		if (seen) {
			seen.value += inc.value;
			Object.assign(seen.dims, inc.dims);
		} else byCounter.set(k, { ...inc, dims: { ...inc.dims } });
	}
	return [...byCounter.values()].filter((inc) => inc.value !== 0);
}

// ---- counting each batch once ------------------------------------------------------------

/**
 * Who counts a batch: one start of the analytics service (`writer`, a random id without dots) and
 * the batch's number in that start (`seq`, growing). A writer counts its batches one after the
 * other, each one in every counter before the next one touches any, so a counter only has to keep,
 * per writer, the number of the last batch counted in it (`countedUpTo.<writer>`): a batch whose
 * number is not above it is in the counter already. Writing a batch again (after a crash, a failed
 * write, or by two nodes at once) then adds nothing where it got through the first time.
 */
export interface BatchTag {
	writer: string;
	seq: number;
}

const countedPath = (writer: string) => `countedUpTo.${writer}`;

/**
 * The counter has counted neither this batch nor a later one of its writer. Written with $or,
 * $exists and $lt, which NeDB and MongoDB read alike (a list of batch ids would need `$nin` on an
 * array, which NeDB reads as "some element differs"); an upsert copies none of it into the new counter.
 */
export function notCountedYet(tag: BatchTag): Record<string, unknown> {
	const path = countedPath(tag.writer);
	return { $or: [{ [path]: { $exists: false } }, { [path]: { $lt: tag.seq } }] };
}

/** Adds the increment to its counter and records there that the batch is counted, in one update. */
export function counterUpdate(inc: Increment, tag: BatchTag, now: Date): Record<string, Record<string, unknown>> {
	return { $inc: { value: inc.value }, $set: { ...inc.dims, updatedAt: now, [countedPath(tag.writer)]: tag.seq } };
}

/** What an event's claim row keeps until its batch is counted: the batch, who counts it, and the event's increments. */
export interface CountingMark<Run> extends BatchTag {
	/** The node run counting it, so another node can tell a batch in progress from one whose run died. */
	runner: Run;
	increments: Increment[];
}

export interface PendingClaim<Run> {
	eventId: string;
	claim: string;
	counting: CountingMark<Run>;
}

export interface UnfinishedBatch<Run> extends BatchTag {
	claim: string;
	runner: Run;
	eventIds: string[];
	/** Summed per counter, as when the batch was first written. */
	increments: Increment[];
}

/**
 * The batches left unfinished, from their claim rows: each writer's in the order it counted them
 * (finishing a later one first would mark counters past the earlier one, which would then be skipped).
 */
export function unfinishedBatches<Run>(rows: PendingClaim<Run>[]): UnfinishedBatch<Run>[] {
	const byClaim = new Map<string, { batch: UnfinishedBatch<Run>; increments: Increment[] }>();
	for (const row of rows) {
		let entry = byClaim.get(row.claim);
		if (!entry) {
			const { writer, seq, runner } = row.counting;
			entry = { batch: { claim: row.claim, writer, seq, runner, eventIds: [], increments: [] }, increments: [] };
			byClaim.set(row.claim, entry);
		}
		entry.batch.eventIds.push(row.eventId);
		entry.increments.push(...row.counting.increments);
	}
	const batches = [...byClaim.values()].map(({ batch, increments }) => ({ ...batch, increments: combineIncrements(increments) }));
	return batches.sort((a, b) => (a.writer < b.writer ? -1 : a.writer > b.writer ? 1 : a.seq - b.seq));
}
