/**
 * What the payments service stores, shared by its charge and webhook code
 * (services/payments.service.ts) and its refunds (mixins/payment-refunds.mixin.ts): the records,
 * the timings of their leases and waits, and the refund as callers see it.
 */
import type { PaymentStatus } from "./payment-state";

/** Longer than a provider call can take (Stripe client: 15 s timeout, 2 retries). */
export const LEASE_MS = 60_000;
/** How long a duplicate call waits for the first one's outcome: below the broker's request timeout. */
export const WAIT_FOR_OUTCOME_MS = 8_000;
export const POLL_MS = 25;

export interface Payment {
	id: string;
	orderId: string;
	/** The order's number when the charge was made (older payments have none). */
	orderNumber?: string | null;
	userId: string;
	amount: number;
	currency: string;
	status: PaymentStatus;
	provider: string;
	providerPaymentId: string | null;
	cardBrand: string | null;
	cardLast4: string | null;
	failureReason: string | null;
	/** Cents given back (settled refunds). */
	refundedAmount: number;
	/** Cents claimed by refunds, including those still in flight: the limit is checked on this. */
	reservedRefundAmount: number;
	/** The refunds whose amount reservedRefundAmount holds, by refund id (older payments have none). */
	reservedRefunds?: Record<string, number>;
	/** The refunds counted in refundedAmount, by refund id, so none is counted twice (older payments have none). */
	countedRefunds?: Record<string, number>;
	/** While in the future, a call is talking to the provider about this payment. */
	chargeLeaseUntil: Date | null;
	createdAt: Date;
	updatedAt: Date;
}

export interface Refund {
	id: string;
	refundKey: string;
	orderId: string;
	paymentId: string;
	amount: number;
	currency: string;
	reason: string;
	/** `processing` while the provider is being asked. */
	status: "processing" | "succeeded" | "pending" | "failed";
	/** Its amount is counted in the payment's reservedRefundAmount. */
	reserved: boolean;
	/** False when the money was not a sale's (see RefundParams.sale); absent means it was. */
	sale?: boolean;
	providerRefundId: string | null;
	leaseUntil: Date | null;
	createdAt: Date;
	updatedAt: Date;
}


/** A refund as callers see it: without its lease, key and reservation flag. */
export function refundView(r: Refund) {
	const { leaseUntil: _lease, refundKey: _key, reserved: _reserved, ...rest } = r;
	return rest;
}
