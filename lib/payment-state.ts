/**
 * The payment state machine and refund arithmetic, without I/O.
 * pending → succeeded | failed; succeeded → partially_refunded | refunded;
 * partially_refunded → partially_refunded | refunded. Everything else is illegal, so a late or
 * replayed provider event (a `payment_failed` after `succeeded`) changes nothing.
 */

export const PAYMENT_STATUSES = ["pending", "succeeded", "failed", "partially_refunded", "refunded"] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

export const PAYMENT_TRANSITIONS: Readonly<Record<PaymentStatus, readonly PaymentStatus[]>> = {
	pending: ["succeeded", "failed"],
	succeeded: ["partially_refunded", "refunded"],
	partially_refunded: ["partially_refunded", "refunded"],
	failed: [],
	refunded: [],
};

/** Statuses in which money was taken and (part of it) can still be given back. */
export const REFUNDABLE_STATUSES: readonly PaymentStatus[] = ["succeeded", "partially_refunded"];

export function isPaymentStatus(value: unknown): value is PaymentStatus {
	return typeof value === "string" && (PAYMENT_STATUSES as readonly string[]).includes(value);
}

export function canTransition(from: PaymentStatus, to: PaymentStatus): boolean {
	return PAYMENT_TRANSITIONS[from]?.includes(to) ?? false;
}

/**
 * The statuses from which `to` may be entered: the condition of an atomic compare-and-set
 * (`updateOne({id, status: {$in: statusesLeadingTo(to)}}, ...)`), so the store applies the machine.
 */
export function statusesLeadingTo(to: PaymentStatus): PaymentStatus[] {
	return PAYMENT_STATUSES.filter((from) => canTransition(from, to));
}

/** The payment status once `refunded` of `paid` cents went back to the customer. */
export function statusAfterRefunds(paid: number, refunded: number): PaymentStatus {
	if (refunded <= 0) return "succeeded";
	return refunded >= paid ? "refunded" : "partially_refunded";
}

export type RefundPlan =
	| { ok: true; amount: number; refundable: number }
	| { ok: false; reason: "not_paid" | "fully_refunded" | "not_positive" | "exceeds_refundable"; refundable: number };

/**
 * How much a refund request may take: the requested amount, or everything left when none is given,
 * never more than paid minus what is already refunded (or being refunded).
 */
export function planRefund(input: { status: PaymentStatus; paid: number; alreadyRefunded: number; requested?: number }): RefundPlan {
	const refundable = Math.max(0, input.paid - input.alreadyRefunded);
	if (!REFUNDABLE_STATUSES.includes(input.status) && input.status !== "refunded") return { ok: false, reason: "not_paid", refundable: 0 };
	if (refundable === 0) return { ok: false, reason: "fully_refunded", refundable };
	const amount = input.requested ?? refundable;
	if (!Number.isSafeInteger(amount) || amount <= 0) return { ok: false, reason: "not_positive", refundable };
	if (amount > refundable) return { ok: false, reason: "exceeds_refundable", refundable };
	return { ok: true, amount, refundable };
}
