/**
 * The payment state machine and refund arithmetic, without I/O.
 * pending → succeeded | failed; succeeded → partially_refunded | refunded;
 * partially_refunded → partially_refunded | refunded. Everything else is illegal, so a late or
 * replayed provider event (a `payment_failed` after `succeeded`) changes nothing. Two exceptions:
 * failed → succeeded when the provider reports the money taken after all (canOverturnFailure), and a refund
 * the provider failed after accepting it (statusAfterFailedRefund).
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

/**
 * The one way out of `failed`: the provider reports (a webhook) that a payment of it succeeded after
 * all. Either the failure was recorded without the provider naming a payment (its charge's answer was
 * lost and the provider, asked later, had none), or the provider's payment is the one that failed: a
 * Stripe PaymentIntent declined or failing 3-D Secure can still be confirmed with its client secret,
 * which the customer's browser holds. Either way the money was taken for an order that failed, so it
 * is recorded (`succeeded`) to be given back. Another payment of the provider's is not this one.
 */
export function canOverturnFailure(p: { status: PaymentStatus; providerPaymentId: string | null }, to: PaymentStatus, reported?: string): boolean {
	return p.status === "failed" && to === "succeeded" && (!p.providerPaymentId || p.providerPaymentId === reported);
}

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

/**
 * The status once a refund of `failed` cents, counted in `refundedAmount`, failed at the provider
 * after it accepted it (Stripe's `refund.failed`: a closed card account, say): the money is back in
 * the shop's balance, so the payment counts only its other refunds. Null when the payment is not in
 * a refunded state or does not count that much.
 */
export function statusAfterFailedRefund(p: { status: PaymentStatus; amount: number; refundedAmount: number }, failed: number): PaymentStatus | null {
	if (p.status !== "refunded" && p.status !== "partially_refunded") return null;
	if (!Number.isSafeInteger(failed) || failed <= 0 || failed > p.refundedAmount) return null;
	return statusAfterRefunds(p.amount, p.refundedAmount - failed);
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
