/**
 * The order's life: which status may follow which, what a transition requires, how the payment
 * status follows refunds, and how an order's state is rebuilt from its event log.
 */
import { ConflictError, invalidField } from "./errors";

export const ORDER_STATUSES = ["pending", "confirmed", "processing", "shipped", "delivered", "cancelled"] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export const PAYMENT_STATUSES = ["pending", "succeeded", "failed", "refunded", "partially_refunded"] as const;
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

export interface OrderState {
	number: string;
	userId: string;
	status: OrderStatus;
	paymentStatus: PaymentStatus;
	items: any[];
	subtotal: number;
	discount: number;
	shipping: number;
	total: number;
	currency: string;
	promoCode: string | null;
	paidAmount: number;
	refundedAmount: number;
	trackingNumber: string | null;
	cancelReason: string | null;
}

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
		} else if (ev.type === "refunded") {
			s.refundedAmount += d.amount;
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
	shippingAddress: Record<string, unknown>;
	payment: { id: string; cardBrand?: string; cardLast4?: string } | null;
	paidAmount: number;
	refundedAmount: number;
	/** Refund id → amount: each refund counts once, whoever reports it first. */
	refunds: Record<string, number>;
	trackingNumber: string | null;
	cancelReason: string | null;
	/** "pending" between the cancel and its stock release / refund, so an interrupted cancel can resume. */
	cancellation: "pending" | "done" | null;
	eventSeq: number;
	saga: { state: "running" | "completed" | "compensated" | "compensation_failed"; completed: string[]; compensated: string[] };
	createdAt: Date;
	updatedAt: Date;
}

/** What the client sees of an order (no saga journal, no internal counters). */
export function orderView(o: Order) {
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
		payment: o.payment ? { cardBrand: o.payment.cardBrand ?? null, cardLast4: o.payment.cardLast4 ?? null } : null,
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
		items: o.items.map(({ productId, variantId, name, quantity, unitPrice, lineTotal }) => ({ productId, variantId, name, quantity, unitPrice, lineTotal })),
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
	return "checkout_failed";
}
