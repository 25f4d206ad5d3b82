/**
 * The built-in provider (no keys needed): Stripe's test payment-method tokens decide the outcome,
 * so the same tokens work here and against Stripe's test mode. Like Stripe, it is idempotent per
 * key: a repeated key returns the first result and charges nothing more. State lives in memory;
 * payments from before a restart are still refunded and canceled (see chargeOf).
 */
import crypto from "node:crypto";
import type { CancelPaymentResult, CreatePaymentInput, CreatePaymentResult, FindPaymentInput, PaymentProvider, RefundInput, RefundResult } from "./provider";
import { AMOUNT_REFUSED, MAX_CHARGE_MINOR_UNITS, PaymentProviderError } from "./provider";

interface TestCard {
	outcome: "succeeded" | "failed" | "pending";
	brand: string;
	last4: string;
	reason?: string;
	/** Its refunds are accepted (pending), then fail (Stripe's refund.failed). */
	refundFails?: boolean;
}

/** A refund that failed after it was accepted, as Stripe's refund.failed event tells it. */
export interface FailedRefundNotice {
	providerRefundId: string;
	providerPaymentId: string;
	reason: string;
}

/** How long a refund of a `pm_card_refundFail` charge stays pending before it fails. */
const REFUND_FAILS_AFTER_MS = 200;

/** Stripe's test tokens (https://docs.stripe.com/testing) with Stripe's own decline messages. */
export const TEST_CARDS: Readonly<Record<string, TestCard>> = {
	pm_card_visa: { outcome: "succeeded", brand: "visa", last4: "4242" },
	pm_card_mastercard: { outcome: "succeeded", brand: "mastercard", last4: "4444" },
	pm_card_chargeDeclined: { outcome: "failed", brand: "visa", last4: "0002", reason: "Your card was declined." },
	pm_card_chargeDeclinedInsufficientFunds: { outcome: "failed", brand: "visa", last4: "9995", reason: "Your card has insufficient funds." },
	pm_card_chargeDeclinedExpiredCard: { outcome: "failed", brand: "visa", last4: "0069", reason: "Your card has expired." },
	pm_card_chargeDeclinedIncorrectCvc: { outcome: "failed", brand: "visa", last4: "0127", reason: "Your card's security code is incorrect." },
	pm_card_chargeDeclinedProcessingError: { outcome: "failed", brand: "visa", last4: "0119", reason: "An error occurred while processing your card. Try again in a little bit." },
	pm_card_chargeDeclinedFraudulent: { outcome: "failed", brand: "visa", last4: "0019", reason: "Your card was declined." },
	pm_card_amex: { outcome: "succeeded", brand: "amex", last4: "8431" },
	// Needs 3-D Secure: the payment stays pending until a webhook settles it.
	pm_card_authenticationRequired: { outcome: "pending", brand: "visa", last4: "3184" },
	// Charged; a refund goes pending, then fails (the card account was closed).
	pm_card_refundFail: { outcome: "succeeded", brand: "visa", last4: "5126", refundFails: true },
};

export const INVALID_PAYMENT_METHOD = "invalid payment method";

interface Charge {
	amount: number;
	refunded: number;
	/** `pending` until the customer completes 3-D Secure (authenticate) or it is canceled. */
	status: "succeeded" | "pending" | "canceled" | "failed";
	refundFails?: boolean;
}

export class TestPaymentProvider implements PaymentProvider {
	readonly name = "test";
	/**
	 * A miss is final at once: this provider lives in the process, so what it does not hold was never
	 * charged (a call that errored charged nothing; after a restart it holds nothing, and nothing of
	 * the previous run's unanswered calls was charged either: they died with it).
	 */
	readonly lookupLagMs = 0;
	/** Number of payments actually created (not counting idempotent replays). */
	chargesCreated = 0;
	private readonly payments = new Map<string, { fingerprint: string; result: Promise<CreatePaymentResult> }>();
	private readonly refunds = new Map<string, { fingerprint: string; result: Promise<RefundResult> }>();
	private readonly charges = new Map<string, Charge>();
	/** Where a refund failing later is told, as Stripe's webhook tells it (set by the payments service). */
	onRefundFailed: ((notice: FailedRefundNotice) => void) | null = null;

	createPayment(input: CreatePaymentInput): Promise<CreatePaymentResult> {
		const fingerprint = JSON.stringify([input.amount, input.currency, input.token]);
		// The promise is stored before any await, so concurrent calls with one key share one charge.
		return this.once(this.payments, input.idempotencyKey, fingerprint, async () => {
			// Own entries only: a token such as "constructor" is not a card.
			const card = Object.hasOwn(TEST_CARDS, input.token) ? TEST_CARDS[input.token] : undefined;
			if (!card) return { providerId: null, status: "failed", cardBrand: null, cardLast4: null, failureReason: INVALID_PAYMENT_METHOD };
			if (input.amount > MAX_CHARGE_MINOR_UNITS) return { providerId: null, status: "failed", cardBrand: null, cardLast4: null, failureReason: AMOUNT_REFUSED };
			this.chargesCreated++;
			const providerId = `pi_test_${crypto.randomBytes(12).toString("hex")}`;
			const clientSecret = card.outcome === "pending" ? `${providerId}_secret_${crypto.randomBytes(12).toString("hex")}` : undefined;
			// Declined ones are kept too (a refund of one is refused); a pending one (3-D Secure) is refundable once it settles: payments asks only then.
			this.charges.set(providerId, { amount: input.amount, refunded: 0, status: card.outcome, ...(card.refundFails ? { refundFails: true } : {}) });
			return { providerId, status: card.outcome, cardBrand: card.brand, cardLast4: card.last4, failureReason: card.reason ?? null, ...(clientSecret ? { clientSecret } : {}) };
		});
	}

	/** The payment made under the key, as it stands now (3-D Secure completed or canceled since). */
	async findPayment(input: FindPaymentInput): Promise<CreatePaymentResult | null> {
		const seen = this.payments.get(input.idempotencyKey);
		if (!seen) return null;
		let result: CreatePaymentResult;
		try {
			result = await seen.result;
		} catch {
			// Errored: nothing was charged (and the key is free again).
			return null;
		}
		const now = result.providerId ? this.charges.get(result.providerId)?.status : undefined;
		if (now === "succeeded" || now === "pending") return { ...result, status: now };
		if (now === "canceled") return { ...result, status: "failed", failureReason: result.failureReason ?? "Canceled" };
		return result;
	}

	refund(input: RefundInput): Promise<RefundResult> {
		const fingerprint = JSON.stringify([input.providerPaymentId, input.amount]);
		return this.once(this.refunds, input.idempotencyKey, fingerprint, async () => {
			const charge = this.chargeOf(input.providerPaymentId);
			if (!charge) throw new PaymentProviderError(`No such payment: ${input.providerPaymentId}`);
			if (charge.status === "canceled" || charge.status === "failed") throw new PaymentProviderError(`Payment ${input.providerPaymentId} is ${charge.status}: nothing to refund`);
			if (!Number.isSafeInteger(input.amount) || input.amount <= 0 || input.amount > charge.amount - charge.refunded) {
				throw new PaymentProviderError(`Refund of ${input.amount} exceeds the unrefunded ${charge.amount - charge.refunded}`);
			}
			charge.refunded += input.amount;
			const providerRefundId = `re_test_${crypto.randomBytes(12).toString("hex")}`;
			if (!charge.refundFails) return { providerRefundId, status: "succeeded" };
			// The money comes back to the shop's balance, refundable again, and the failure is told.
			setTimeout(() => {
				charge.refunded -= input.amount;
				this.onRefundFailed?.({ providerRefundId, providerPaymentId: input.providerPaymentId, reason: "expired_or_canceled_card" });
			}, REFUND_FAILS_AFTER_MS).unref();
			return { providerRefundId, status: "pending" };
		});
	}

	async cancelPayment(providerPaymentId: string): Promise<CancelPaymentResult> {
		const charge = this.chargeOf(providerPaymentId);
		// Not one of ours (made through another provider before the shop switched): it cannot take money here.
		if (!charge) return { status: "canceled" };
		if (charge.status === "pending") charge.status = "canceled";
		// A declined payment can no longer take money either.
		return { status: charge.status === "failed" ? "canceled" : charge.status };
	}

	/**
	 * The charge behind a payment id. This provider's state lives in memory, but the embedded shop's
	 * payments outlive a restart: one of ours from before it (a `pi_test_` id) is taken as it stands
	 * in the payments service, which keeps its amount, what was refunded of it and its status, and
	 * checks a refund against them before asking here. Only another id is unknown.
	 */
	private chargeOf(providerPaymentId: string): Charge | null {
		const known = this.charges.get(providerPaymentId);
		if (known) return known;
		if (!providerPaymentId.startsWith("pi_test_")) return null;
		const adopted: Charge = { amount: Number.MAX_SAFE_INTEGER, refunded: 0, status: "pending" };
		this.charges.set(providerPaymentId, adopted);
		return adopted;
	}

	/** What the customer finishing 3-D Secure does at the provider (its webhook is sent separately, as Stripe's is). */
	completeAuthentication(providerPaymentId: string): void {
		const charge = this.charges.get(providerPaymentId);
		if (charge?.status === "pending") charge.status = "succeeded";
	}

	/**
	 * The customer's side of 3-D Secure, as Stripe.js does it with the client secret (which the payments
	 * service checks against its record): passed (the money is taken) or failed. False when the payment
	 * is no longer waiting (canceled with its order, or done already).
	 */
	authenticate(providerPaymentId: string, passed: boolean): boolean {
		const charge = this.chargeOf(providerPaymentId);
		if (charge?.status !== "pending") return false;
		charge.status = passed ? "succeeded" : "failed";
		return true;
	}

	/** Runs `fn` once per key; another request under the same key must carry the same parameters. */
	private once<R>(store: Map<string, { fingerprint: string; result: Promise<R> }>, key: string, fingerprint: string, fn: () => Promise<R>): Promise<R> {
		const seen = store.get(key);
		if (seen) {
			if (seen.fingerprint !== fingerprint) return Promise.reject(new PaymentProviderError(`Idempotency key ${key} was used with other parameters`));
			return seen.result;
		}
		const result = fn();
		store.set(key, { fingerprint, result });
		// A request that errored was not applied, so the same key may try again (as with Stripe).
		result.catch(() => store.delete(key));
		return result;
	}
}
