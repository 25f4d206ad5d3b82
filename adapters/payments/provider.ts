/**
 * The payment provider seam: the payments service holds one provider and never asks which.
 * Adding another provider is one new file implementing this interface plus a line in
 * `createPaymentProvider`.
 */
import type { PaymentsConfig } from "./config";

export interface CreatePaymentInput {
	/** Integer cents. */
	amount: number;
	currency: string;
	/** Payment method token from the client (Stripe's `pm_...`). */
	token: string;
	/** The same key always yields the same payment: a retry never charges twice. */
	idempotencyKey: string;
	metadata: Record<string, string>;
}

export interface CreatePaymentResult {
	providerId: string | null;
	/** `pending`: the provider needs more time or customer action; a webhook settles it. */
	status: "succeeded" | "failed" | "pending";
	cardBrand: string | null;
	cardLast4: string | null;
	failureReason: string | null;
	/**
	 * A payment waiting for the customer (3-D Secure): what their browser needs to complete it
	 * (Stripe's PaymentIntent client_secret, for Stripe.js `handleNextAction`). Absent otherwise.
	 */
	clientSecret?: string | null;
}

export interface RefundInput {
	providerPaymentId: string;
	/** Integer cents. */
	amount: number;
	idempotencyKey: string;
}

export interface RefundResult {
	/** Null when the provider refused the request outright: no refund was made. */
	providerRefundId: string | null;
	status: "succeeded" | "pending" | "failed";
	/** Why it failed or was refused, as the provider says. */
	failureReason?: string;
}

/** A refund as the provider lists it for a payment (made through the shop or elsewhere, e.g. Stripe's dashboard). */
export interface ProviderRefund {
	id: string;
	amount: number;
	status: "succeeded" | "pending" | "failed";
}

/**
 * Where a payment stands after asking to cancel it: `canceled` (it can no longer take money),
 * `succeeded` (the customer completed it first: the money was taken), or `pending` (it is being
 * processed and cannot be stopped; a webhook settles it).
 */
export interface CancelPaymentResult {
	status: "canceled" | "succeeded" | "pending";
}

/** What a charge was sent with, to look it up by when its answer was never recorded. */
export interface FindPaymentInput {
	idempotencyKey: string;
	orderId: string;
}

export interface PaymentProvider {
	readonly name: string;
	/**
	 * How long after a charge was sent `findPayment` may still miss it, the provider's look-up lagging
	 * behind its payments: a miss counts as "never charged" only once this long has passed since the
	 * charge call started. 0: a miss is final at once.
	 */
	readonly lookupLagMs: number;
	/** Resolves with `failed` on a decline; rejects with PaymentProviderError when the outcome is unknown. */
	createPayment(input: CreatePaymentInput): Promise<CreatePaymentResult>;
	/**
	 * The payment a charge with this key and order made, as it stands now, or null when the provider
	 * has none (see lookupLagMs). Rejects with PaymentProviderError when the provider cannot say.
	 */
	findPayment(input: FindPaymentInput): Promise<CreatePaymentResult | null>;
	/** Resolves with `failed` when the provider refuses it (nothing refunded); rejects with PaymentProviderError when the outcome is unknown. */
	refund(input: RefundInput): Promise<RefundResult>;
	/**
	 * Every refund of a payment, as the provider has them now (its webhook reports only a total). Absent
	 * for a provider that sends no refund webhooks of its own (the built-in one).
	 */
	listRefunds?(providerPaymentId: string): Promise<ProviderRefund[]>;
	/** Stops a payment still waiting (3-D Secure) so it can never take money; safe to repeat. */
	cancelPayment(providerPaymentId: string): Promise<CancelPaymentResult>;
}

/** The most Stripe charges in one payment, in minor units ($999,999.99; ¥99,999,999): the test provider refuses more, as Stripe does. */
export const MAX_CHARGE_MINOR_UNITS = 99_999_999;
/** The decline of an amount the provider does not take in one payment (Stripe's amount_too_large or amount_too_small). */
export const AMOUNT_REFUSED = "The payment provider does not take this amount in one payment";

/** The provider could not be reached or refused the request: the outcome is not a decline. */
export class PaymentProviderError extends Error {
	constructor(message: string, readonly cause?: unknown) {
		super(message);
		this.name = "PaymentProviderError";
	}
}

/**
 * What to warn about the payment provider at start: in production without STRIPE_SECRET_KEY every
 * order is "paid" by the built-in test provider, which takes no money (a secret missing from a
 * deployment looked like a working shop). Warned, not refused: the demo and the bench run in production
 * mode on purpose without Stripe.
 */
export function providerWarning(cfg: PaymentsConfig, nodeEnv: string): string | null {
	if (cfg.stripeSecretKey || nodeEnv !== "production") return null;
	return "STRIPE_SECRET_KEY is not set: payments go through the built-in test provider, which takes no money (Stripe's test cards only). Set STRIPE_SECRET_KEY (and STRIPE_WEBHOOK_SECRET) to take real payments.";
}

/** Stripe when a secret key is configured, the built-in test provider otherwise. */
export function createPaymentProvider(cfg: PaymentsConfig): PaymentProvider {
	if (cfg.stripeSecretKey) {
		const { StripePaymentProvider } = require("./stripe-provider") as typeof import("./stripe-provider");
		return new StripePaymentProvider(cfg.stripeSecretKey, cfg.stripeApi);
	}
	const { TestPaymentProvider } = require("./test-provider") as typeof import("./test-provider");
	return new TestPaymentProvider();
}
