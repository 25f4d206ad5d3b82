/**
 * The order's life: which status may follow which, what a transition requires, how the payment
 * status follows refunds, and how an order's state is rebuilt from its event log.
 */
import type { SagaRunner } from "./checkout-recovery";
import { ConflictError, invalidField } from "./errors";
import { multiplyCents } from "./money";
import { absentOr } from "./store-queries";

export const ORDER_STATUSES = ["pending", "confirmed", "processing", "shipped", "delivered", "cancelled"] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

/** `cancelled`: the order was cancelled before any charge was made, and none will be. */
export const PAYMENT_STATUSES = ["pending", "succeeded", "failed", "cancelled", "refunded", "partially_refunded"] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

const TRANSITIONS: Record<OrderStatus, readonly OrderStatus[]> = {
	pending: ["confirmed", "cancelled"],
	confirmed: ["processing", "cancelled"],
	processing: ["shipped", "cancelled"],
	shipped: ["delivered"],
	delivered: [],
	cancelled: [],
};

export interface TransitionDetails {
	trackingNumber?: string | null;
}

export type TransitionCheck = { ok: true } | { ok: false; reason: "illegal" | "tracking_required" };

export const OrderStateMachine = {
	next(from: OrderStatus): readonly OrderStatus[] {
		return TRANSITIONS[from] ?? [];
	},

	canTransition(from: OrderStatus, to: OrderStatus): boolean {
		return (TRANSITIONS[from] ?? []).includes(to);
	},

	/** The statuses `to` can be reached from: the guard of a conditional (CAS) update. */
	sourcesOf(to: OrderStatus): OrderStatus[] {
		return ORDER_STATUSES.filter((from) => TRANSITIONS[from].includes(to));
	},

	check(from: OrderStatus, to: OrderStatus, details: TransitionDetails = {}): TransitionCheck {
		if (!OrderStateMachine.canTransition(from, to)) return { ok: false, reason: "illegal" };
		// A parcel the customer cannot track is not shipped as far as the shop is concerned.
		if (to === "shipped" && !details.trackingNumber?.trim()) return { ok: false, reason: "tracking_required" };
		return { ok: true };
	},

	/** Throws 409 for an illegal transition and 422 (trackingNumber) for a shipment without tracking. */
	assert(from: OrderStatus, to: OrderStatus, details: TransitionDetails = {}): void {
		const res = OrderStateMachine.check(from, to, details);
		if (res.ok) return;
		if (res.reason === "tracking_required") throw invalidField("trackingNumber", "trackingNumber is required to mark an order shipped", "required");
		throw new ConflictError(`Order cannot go from ${from} to ${to}`, "INVALID_TRANSITION", { from, to, allowed: TRANSITIONS[from] });
	},

	/** The customer may cancel until the parcel leaves. */
	isCancellable(status: OrderStatus): boolean {
		return OrderStateMachine.canTransition(status, "cancelled");
	},
};

/** The log entry of an order whose payment ends `cancelled`: none was taken, and none can be. */
export const PAYMENT_CANCELLED_EVENT = { type: "payment_cancelled", data: { reason: "not_charged" } } as const;

/** Payment status once `refunded` of `paid` cents went back to the customer. */
export function paymentStatusAfterRefund(paid: number, refunded: number): PaymentStatus {
	if (refunded <= 0) return "succeeded";
	return refunded >= paid ? "refunded" : "partially_refunded";
}

/** What an order's event log says about it. */
export interface OrderEvent {
	seq: number;
	type: string;
	data?: Record<string, any>;
	createdAt?: Date | string;
}

/** What the event log alone determines about an order (the rebuild compares these fields). */
export type OrderState = Pick<
	Order,
	"number" | "userId" | "status" | "paymentStatus" | "items" | "subtotal" | "discount" | "shipping" | "total" | "currency" | "promoCode" | "paidAmount" | "refundedAmount" | "trackingNumber" | "cancelReason"
>;

const STATUS_EVENTS: Record<string, OrderStatus> = {
	confirmed: "confirmed",
	processing: "processing",
	shipped: "shipped",
	delivered: "delivered",
	cancelled: "cancelled",
};

/**
 * Folds an order's events (in `seq` order) into its state. Status events go through the state
 * machine, so a log that records an impossible history is refused rather than silently replayed.
 */
export function rebuildOrderState(events: OrderEvent[]): OrderState {
	const sorted = [...events].sort((a, b) => a.seq - b.seq);
	if (sorted[0]?.type !== "created") throw new Error("Order log must start with a created event");
	let state: OrderState | undefined;
	for (const ev of sorted) {
		const d = ev.data ?? {};
		if (ev.type === "created") {
			if (state) throw new Error("Order log has a second created event");
			state = {
				number: d.number,
				userId: d.userId,
				status: "pending",
				paymentStatus: "pending",
				items: d.items ?? [],
				subtotal: d.subtotal,
				discount: d.discount,
				shipping: d.shipping,
				total: d.total,
				currency: d.currency,
				promoCode: d.promoCode ?? null,
				paidAmount: 0,
				refundedAmount: 0,
				trackingNumber: null,
				cancelReason: null,
			};
			continue;
		}
		const s = state!;
		const to = STATUS_EVENTS[ev.type];
		if (to) {
			OrderStateMachine.assert(s.status, to, { trackingNumber: d.trackingNumber });
			s.status = to;
			if (to === "shipped") s.trackingNumber = d.trackingNumber;
			if (to === "cancelled") s.cancelReason = d.reason ?? null;
		} else if (ev.type === "payment_succeeded") {
			s.paymentStatus = "succeeded";
			s.paidAmount = d.amount;
		} else if (ev.type === "payment_failed") {
			s.paymentStatus = "failed";
		} else if (ev.type === "payment_cancelled") {
			s.paymentStatus = "cancelled";
		} else if (ev.type === "refunded" || ev.type === "refund_failed") {
			// A refund the provider failed after accepting it is no longer refunded.
			s.refundedAmount += ev.type === "refunded" ? d.amount : -d.amount;
			s.paymentStatus = paymentStatusAfterRefund(s.paidAmount, s.refundedAmount);
		}
		// stock_reserved, promo_consumed, stock_released, ... are history only: they change no field.
	}
	return state!;
}

export interface OrderLine {
	productId: string;
	variantId: string;
	sku?: string;
	name: string;
	variantName?: string;
	quantity: number;
	unitPrice: number;
	lineTotal: number;
}

/** The order's lines from the cart service's snapshot (priced from the catalog, never by the client). */
export function orderLinesOf(cartItems: Array<Omit<OrderLine, "lineTotal">>): OrderLine[] {
	return cartItems.map((i) => ({
		productId: i.productId,
		variantId: i.variantId,
		sku: i.sku,
		name: i.name,
		variantName: i.variantName,
		quantity: i.quantity,
		unitPrice: i.unitPrice,
		lineTotal: multiplyCents(i.unitPrice, i.quantity),
	}));
}

/** An order as stored. */
export interface Order {
	id: string;
	number: string;
	userId: string;
	status: OrderStatus;
	paymentStatus: PaymentStatus;
	items: OrderLine[];
	subtotal: number;
	discount: number;
	shipping: number;
	total: number;
	currency: string;
	promoCode: string | null;
	/** The cart's version when the checkout took it (null for orders from before it was kept). */
	cartVersion?: number | null;
	shippingAddress: Record<string, unknown>;
	/** `clientSecret` while the payment waits for the customer (3-D Secure): see orderView. */
	payment: { id: string; cardBrand?: string; cardLast4?: string; clientSecret?: string } | null;
	paidAmount: number;
	refundedAmount: number;
	/** Refund id → amount: each refund counts once, whoever reports it first. */
	refunds: Record<string, number>;
	/** Refund id → amount: refunds the provider failed after accepting them, counted off once (absent: none). */
	failedRefunds?: Record<string, number>;
	trackingNumber: string | null;
	cancelReason: string | null;
	/** Work this order still owes (see FOLLOW_UPS_AFTER), in the order it is done. */
	pendingActions: FollowUp[];
	/** Until when one caller drives the follow-ups; null when nobody does. */
	followUpLease: Date | null;
	/** The node run holding `followUpLease` (absent on leases taken before it was recorded). */
	followUpRunner?: SagaRunner | null;
	/** When each announcement was first attempted: a later attempt looks in the outbox first. */
	announcements: Partial<Record<Announcement, Date>>;
	/** Before pendingActions: "pending" while a cancel's release and refund were owed (recovery adopts it). */
	cancellation?: "pending" | "done" | null;
	confirmedAt?: Date;
	/**
	 * The event log, in order: an entry's seq is its position. Appended by the same update as the
	 * change it records. The created entry's data is the order's own fields, which never change.
	 * Orders stored before the log moved here keep theirs in `order_events`; see orderEventLog.
	 */
	events?: StoredOrderEvent[];
	/** `runner`: the node run driving the saga (lib/checkout-recovery.ts); absent on orders stored before. */
	saga: { state: "running" | "completed" | "compensated" | "compensation_failed"; completed: string[]; compensated: string[]; runner?: SagaRunner | null };
	createdAt: Date;
	updatedAt: Date;
}

/**
 * The card, and while the order waits for its payment the client secret the customer's browser
 * completes 3-D Secure with (Stripe.js handleNextAction; the built-in provider: POST
 * /api/payments/test-authentication). Only its customer sees it (`viewerId`), not an admin: with it
 * anyone could complete the payment (payments' own admin view leaves it out too).
 */
function paymentOfView(o: Order, viewerId: string | undefined) {
	const mine = viewerId === undefined || viewerId === o.userId;
	const waiting = mine && o.status === "pending" && o.paymentStatus === "pending" && o.payment?.clientSecret ? { clientSecret: o.payment.clientSecret } : {};
	return { cardBrand: o.payment!.cardBrand ?? null, cardLast4: o.payment!.cardLast4 ?? null, ...waiting };
}

/**
 * What the client sees of an order (no saga journal, no internal counters). `viewerId`: who asks, when
 * it may be someone else than its customer (an admin); unset, the customer (their checkout's answer).
 */
export function orderView(o: Order, viewerId?: string) {
	return {
		id: o.id,
		number: o.number,
		userId: o.userId,
		status: o.status,
		paymentStatus: o.paymentStatus,
		items: o.items,
		subtotal: o.subtotal,
		discount: o.discount,
		shipping: o.shipping,
		total: o.total,
		currency: o.currency,
		promoCode: o.promoCode,
		shippingAddress: o.shippingAddress,
		payment: o.payment ? paymentOfView(o, viewerId) : null,
		refundedAmount: o.refundedAmount,
		trackingNumber: o.trackingNumber,
		cancelReason: o.cancelReason,
		createdAt: o.createdAt,
		updatedAt: o.updatedAt,
	};
}

/** The payload of every order.* event (docs/services.md). */
export function eventPayload(o: Order, extra: Record<string, unknown> = {}) {
	return {
		orderId: o.id,
		number: o.number,
		userId: o.userId,
		status: o.status,
		// variantName: order messages say which variant was bought ("Print (A2)").
		items: o.items.map(({ productId, variantId, name, variantName, quantity, unitPrice, lineTotal }) => ({ productId, variantId, name, variantName, quantity, unitPrice, lineTotal })),
		subtotal: o.subtotal,
		discount: o.discount,
		shipping: o.shipping,
		total: o.total,
		currency: o.currency,
		promoCode: o.promoCode,
		createdAt: o.createdAt,
		...extra,
	};
}

/** Why a checkout was abandoned, as stored on the cancelled order. */
export function cancelReasonOf(err: any): string {
	if (err?.code === 402) return "payment_declined";
	if (err?.type === "INSUFFICIENT_STOCK") return "insufficient_stock";
	if (err?.code === 422) return "promotion_unavailable";
	if (err?.type === "ACCOUNT_CLOSED") return "account_closed";
	return "checkout_failed";
}

/*
 * Follow-ups: what a change of an order owes other services and subscribers.
 *
 * INVARIANT ("nothing lost when a node dies"): the conditional update that changes an order's state
 * also records, in `pendingActions`, every follow-up that change requires, and a follow-up leaves
 * `pendingActions` only in the update that records it done (with its event-log entry). So whatever
 * was interrupted, the stored order says what is still owed: the handler that made the change, a
 * replayed payment event, a retried request and the recovery timer all drive the pending follow-ups,
 * in order, to completion (one at a time, under `followUpLease`). Each follow-up is idempotent, so
 * redoing one whose effect happened just before a crash changes nothing: products.commit/release and
 * cart.releasePromo per orderId, payments.refund under a key derived from the order, and an
 * announcement is looked up in the outbox once an earlier attempt may have published it.
 */
export const FOLLOW_UPS = [
	"settlePayment",
	"commitStock",
	"releaseStock",
	"releasePromo",
	"cancelPayment",
	"refund",
	"refundLatePayment",
	"restoreCart",
	"announceConfirmed",
	"announceCancelled",
	"announceProcessing",
	"announceShipped",
	"announceDelivered",
] as const;
export type FollowUp = (typeof FOLLOW_UPS)[number];

/** The follow-ups each change records, in the order they are done: the money and stock before the news. */
export const FOLLOW_UPS_AFTER = {
	/** A checkout that ended waiting for its payment: news that came while it ran was ignored then. */
	awaitingPayment: ["settlePayment"],
	/** A pending order confirmed by its payment settling later (the webhook). */
	confirmed: ["commitStock", "announceConfirmed"],
	/** A payment still waiting (3-D Secure) is stopped before the refund, so it cannot take money afterwards. */
	cancelled: ["releaseStock", "releasePromo", "cancelPayment", "refund", "announceCancelled"],
	/**
	 * An order whose payment failed or never completed after its checkout (3-D Secure): cancelled, and
	 * its lines and code go back into the customer's cart, which the checkout had emptied, so they can
	 * pay again without filling it anew. After the stock and the code are freed, so both are there.
	 */
	paymentNotCompleted: ["releaseStock", "releasePromo", "cancelPayment", "refund", "restoreCart", "announceCancelled"],
	/** A payment that succeeded after its order was cancelled goes back. */
	paidLate: ["refundLatePayment"],
	/**
	 * A checkout undone after its charge may have gone through without the order knowing (its node
	 * died, or the charge's answer was lost): the payment is stopped, one found paid is refunded as a
	 * late one, and with none a payment is recorded never charged, so a charge arriving later is
	 * refused. News of it that came while the saga ran was ignored then.
	 */
	undoneAfterCharge: ["settlePayment"],
	processing: ["announceProcessing"],
	shipped: ["announceShipped"],
	delivered: ["announceDelivered"],
} as const satisfies Record<string, readonly FollowUp[]>;

export type Announcement = "confirmed" | "cancelled" | "processing" | "shipped" | "delivered";

const ANNOUNCED_BY: Partial<Record<FollowUp, Announcement>> = {
	announceConfirmed: "confirmed",
	announceCancelled: "cancelled",
	announceProcessing: "processing",
	announceShipped: "shipped",
	announceDelivered: "delivered",
};

/** The announcement a follow-up makes, or null for one that is not an announcement. */
export function announcementOf(followUp: FollowUp): Announcement | null {
	return ANNOUNCED_BY[followUp] ?? null;
}

/** The durable event of an announcement and its payload, from the order as it stands now. */
export function announcementEvent(o: Order, what: Announcement): { event: string; payload: Record<string, unknown> } {
	switch (what) {
		case "confirmed":
			// Announced late, the order may have moved on since: the event still says what it announces.
			return { event: "order.confirmed", payload: eventPayload(o, { status: "confirmed" }) };
		case "cancelled":
			// wasConfirmed: its goods had counted as sold (analytics takes them back).
			return { event: "order.cancelled", payload: eventPayload(o, { status: "cancelled", reason: o.cancelReason, refundedAmount: o.refundedAmount, wasConfirmed: !!o.confirmedAt }) };
		default: {
			// Each admin status has exactly one source; a parcel has no tracking number before it is shipped.
			const from = OrderStateMachine.sourcesOf(what)[0];
			return { event: "order.status_changed", payload: eventPayload(o, { status: what, from, to: what, trackingNumber: what === "processing" ? null : o.trackingNumber }) };
		}
	}
}

/** The key of the refund a cancellation makes: one per order, so a repeated follow-up refunds once. */
export function cancelRefundKey(orderId: string): string {
	return `${orderId}-cancel`;
}

/**
 * The refund a refund follow-up still owes (the rest of the payment), or null when nothing is left.
 * `sale`: whether the money was a sale's (the order was confirmed), which revenue then gives back;
 * a payment that came after its order was cancelled never was one.
 */
export function refundOwed(o: Order, followUp: "refund" | "refundLatePayment"): { refundKey: string; reason: string; sale: boolean } | null {
	if (o.paidAmount - o.refundedAmount <= 0) return null;
	// Derived from the order, so a redone follow-up reuses the key and payments refunds once.
	if (followUp === "refundLatePayment") return { refundKey: `${o.id}-late`, reason: "order_cancelled", sale: false };
	// A cancel's refund gives back a sale only if the order was confirmed: one cancelled while its
	// payment was still completing (recorded as late) never was.
	return { refundKey: cancelRefundKey(o.id), reason: o.cancelReason ?? "cancelled", sale: !!o.confirmedAt };
}

/** The condition under which a caller may take an order's follow-ups: some pending, nobody driving them. */
export function followUpsClaimable(now: Date): Record<string, unknown> {
	return {
		"pendingActions.0": { $exists: true },
		...absentOr("followUpLease", { $lt: now }),
	};
}

/** From checkout start to confirmation. */
export function checkoutDurationMs(o: Pick<Order, "createdAt" | "confirmedAt">, now: Date = new Date()): number {
	return new Date(o.confirmedAt ?? now).getTime() - new Date(o.createdAt).getTime();
}

export interface OrderEventEntry {
	type: string;
	data?: Record<string, unknown>;
}

/** One change of an order (see changeOrder in services/orders.service.ts). */
export interface OrderChange {
	/** The condition of the compare-and-set. */
	when?: Record<string, unknown>;
	set?: Record<string, unknown>;
	inc?: Record<string, number>;
	/** The follow-ups this change leaves to do, recorded in the same update. */
	followUps?: readonly FollowUp[];
	/** The follow-up this change records as done. */
	done?: FollowUp;
	/** Its event-log entries, in order; none for bookkeeping alone. */
	event?: OrderEventEntry | OrderEventEntry[];
}

/** An entry of the log kept on the order. */
export interface StoredOrderEvent {
	type: string;
	data: Record<string, unknown>;
	createdAt: Date;
}

const entriesOf = (change: OrderChange): OrderEventEntry[] => (change.event === undefined ? [] : ([] as OrderEventEntry[]).concat(change.event));

/** The $push that appends log entries to the order's event log, stamped `now`. */
const pushEntries = (entries: readonly OrderEventEntry[], now: Date) => ({ events: { $each: entries.map((e): StoredOrderEvent => ({ type: e.type, data: e.data ?? {}, createdAt: now })) } });

/** The update document of a change: its fields, its log entries, its follow-ups. */
export function orderUpdate(change: OrderChange, now: Date): Record<string, unknown> {
	const entries = entriesOf(change);
	const update: Record<string, unknown> = { $set: { ...change.set, updatedAt: now } };
	if (change.inc && Object.keys(change.inc).length) update.$inc = { ...change.inc };
	// The change and its log entries in one write: a node dying in between cannot lose the entries.
	if (entries.length) update.$push = pushEntries(entries, now);
	// MongoDB refuses two operators on one field: a change records follow-ups or completes one.
	if (change.followUps?.length && change.done) throw new Error("A change cannot both record and complete follow-ups");
	if (change.followUps?.length) update.$addToSet = { pendingActions: { $each: [...change.followUps] } };
	if (change.done) update.$pull = { pendingActions: change.done };
	return update;
}

/**
 * The update that ends a checkout's saga in `state`: with the journal marks still to store, the
 * follow-ups it leaves (a look at the payment, for one that ended without knowing it), and the log
 * entries of steps that wrote nothing of their own (the stock commit), in the order they ran.
 */
export function sagaEndUpdate(state: Order["saga"]["state"], marks: string[], followUps: readonly FollowUp[] = [], entries: readonly OrderEventEntry[] = [], now = new Date()): Record<string, unknown> {
	const addToSet: Record<string, unknown> = { "saga.completed": { $each: marks } };
	if (followUps.length) addToSet.pendingActions = { $each: [...followUps] };
	const update: Record<string, any> = { $set: { "saga.state": state }, $addToSet: addToSet };
	if (entries.length) {
		update.$set.updatedAt = now;
		update.$push = pushEntries(entries, now);
	}
	return update;
}

/** The first entry of a new order's log (its data is read from the order; see createdEventData). */
export function createdEvent(now: Date): StoredOrderEvent {
	return { type: "created", data: {}, createdAt: now };
}

/** What the created entry says: the order as it was created (these fields never change). */
export function createdEventData(o: Order): Record<string, unknown> {
	const { number, userId, items, subtotal, discount, shipping, total, currency, promoCode, shippingAddress } = o;
	return { number, userId, items, subtotal, discount, shipping, total, currency, promoCode, shippingAddress };
}

/** Whether the whole log is on the order; otherwise it began in `order_events` (an older order). */
export function logIsEmbedded(o: Order): boolean {
	return o.events?.[0]?.type === "created";
}

/**
 * The log as the customer sees it: a refund's reason and an admin's cancel note are the shop's own
 * notes (an admin's words, such as "suspected fraud"), not for the customer; the amount, the refund
 * and the cancel are. A customer's own cancel note is theirs to see.
 */
export function customerEventLog(log: Required<OrderEvent>[]): Required<OrderEvent>[] {
	return log.map((e) => {
		if (e.type === "refunded" && e.data && "reason" in e.data) {
			const { reason: _shopNote, ...data } = e.data;
			return { ...e, data };
		}
		if (e.type === "cancelled" && e.data && "note" in e.data && e.data.by !== "customer") {
			const { note: _shopNote, ...data } = e.data;
			return { ...e, data };
		}
		return e;
	});
}

/**
 * The order's event log as the API shows it: the entries kept on the order, after the rows an
 * older order has in `order_events` (`legacy`, for an order whose log is not embedded).
 */
export function orderEventLog(o: Order, legacy: OrderEvent[] = []): Required<OrderEvent>[] {
	const embedded = logIsEmbedded(o);
	const before = embedded ? [] : [...legacy].sort((a, b) => a.seq - b.seq);
	const log = before.map(({ seq, type, data, createdAt }) => ({ seq, type, data: data ?? {}, createdAt: createdAt! }));
	(o.events ?? []).forEach((e, i) => {
		const data = embedded && i === 0 ? createdEventData(o) : e.data;
		log.push({ seq: before.length + i + 1, type: e.type, data, createdAt: e.createdAt });
	});
	return log;
}
