/**
 * Stripe through stripe-node: a PaymentIntent created and confirmed in one request with the
 * caller's idempotency key (Stripe replays the first response for a repeated key), refunds likewise.
 * A card decline is an outcome (`failed`), not an error; anything else whose outcome is unknown
 * rejects with PaymentProviderError so the caller can retry under the same key.
 */
import type Stripe from "stripe";
import type { CancelPaymentResult, CreatePaymentInput, CreatePaymentResult, FindPaymentInput, PaymentProvider, RefundInput, RefundResult } from "./provider";
import { AMOUNT_REFUSED, PaymentProviderError, type ProviderRefund } from "./provider";
import type { StripeApiTarget } from "./config";

/** Placeholder key for a client that only verifies webhook signatures (that works offline). */
const VERIFY_ONLY_KEY = "sk_test_webhook_verification_only";

/**
 * stripe-node, required on first use rather than at import: the payments service imports this file
 * for webhook verification even when no Stripe key is set, and the SDK costs start-up time and memory.
 */
function stripeSdk(): typeof Stripe {
	return require("stripe");
}

export function createStripeClient(secretKey: string, api?: StripeApiTarget): Stripe {
	const StripeClient = stripeSdk();
	return new StripeClient(secretKey, {
		...(api ?? {}),
		// Stripe retries are safe: they resend the same Idempotency-Key.
		maxNetworkRetries: 2,
		timeout: 15_000,
		appInfo: { name: "moleculer-shop" },
	});
}

type StripeEvent = ReturnType<Stripe["webhooks"]["constructEvent"]>;

/** Verifies a webhook's raw body against its `Stripe-Signature` header; throws when it does not match. */
export function createWebhookVerifier(webhookSecret: string, secretKey?: string): (rawBody: string | Buffer, signature: string) => StripeEvent {
	const stripe = createStripeClient(secretKey ?? VERIFY_ONLY_KEY);
	return (rawBody, signature) => stripe.webhooks.constructEvent(rawBody, signature, webhookSecret);
}

/** Stripe's refund statuses as the shop's: `requires_action` and `pending` wait; `canceled` took nothing. */
function refundStatus(status: string | null): ProviderRefund["status"] {
	return status === "succeeded" ? "succeeded" : status === "failed" || status === "canceled" ? "failed" : "pending";
}

function card(intent: Stripe.PaymentIntent | undefined): { brand: string | null; last4: string | null } {
	const charge = intent?.latest_charge;
	const fromCharge = charge && typeof charge === "object" ? charge.payment_method_details?.card : undefined;
	const method = intent?.payment_method;
	const fromMethod = method && typeof method === "object" ? method.card : undefined;
	return { brand: fromCharge?.brand ?? fromMethod?.brand ?? null, last4: fromCharge?.last4 ?? fromMethod?.last4 ?? null };
}

/** What a PaymentIntent's status means for the payment. */
function outcomeOf(intent: Stripe.PaymentIntent): CreatePaymentResult {
	const c = card(intent);
	const base = { providerId: intent.id, cardBrand: c.brand, cardLast4: c.last4 };
	if (intent.status === "succeeded") return { ...base, status: "succeeded", failureReason: null };
	if (intent.status === "requires_payment_method" || intent.status === "canceled") {
		return { ...base, status: "failed", failureReason: intent.last_payment_error?.message ?? "Payment failed" };
	}
	// processing, requires_action, requires_capture: settled later by a webhook. Waiting for the customer
	// (3-D Secure), the browser completes it with the intent's client secret.
	return { ...base, status: "pending", failureReason: null, ...(intent.status === "requires_action" && intent.client_secret ? { clientSecret: intent.client_secret } : {}) };
}

/** A string in Stripe's search query language: single-quoted, with quotes and backslashes escaped. */
export function searchString(value: string): string {
	return `'${value.replace(/[\\']/g, (ch) => `\\${ch}`)}'`;
}

/** The rank of an intent's outcome when an order has several: money taken first, then one still able to take it. */
const OUTCOME_RANK: Record<CreatePaymentResult["status"], number> = { succeeded: 0, pending: 1, failed: 2 };

/** Of the intents found for an order, the one that says most about its money (see OUTCOME_RANK). */
export function pickOutcome(outcomes: CreatePaymentResult[]): CreatePaymentResult | null {
	return [...outcomes].sort((a, b) => OUTCOME_RANK[a.status] - OUTCOME_RANK[b.status])[0] ?? null;
}

export class StripePaymentProvider implements PaymentProvider {
	readonly name = "stripe";
	/**
	 * Stripe's search is eventually consistent ("typically within a minute", longer during incidents):
	 * an intent created by a call that started less than this long ago may not show yet, so a miss
	 * counts as "never charged" only after it. Ten times the usual lag, plus the call's own minute.
	 */
	readonly lookupLagMs = 10 * 60_000;
	readonly stripe: Stripe;

	constructor(secretKey: string, api?: StripeApiTarget) {
		this.stripe = createStripeClient(secretKey, api);
	}

	async createPayment(input: CreatePaymentInput): Promise<CreatePaymentResult> {
		let intent: Stripe.PaymentIntent;
		try {
			intent = await this.stripe.paymentIntents.create(
				{
					amount: input.amount,
					currency: input.currency.toLowerCase(),
					payment_method: input.token,
					// Cards confirm server-side; no redirect-based methods, so no return_url is needed.
					automatic_payment_methods: { enabled: true, allow_redirects: "never" },
					confirm: true,
					metadata: input.metadata,
					expand: ["latest_charge", "payment_method"],
				},
				{ idempotencyKey: input.idempotencyKey },
			);
		} catch (err) {
			const { errors } = stripeSdk();
			const e = err as InstanceType<typeof Stripe.errors.StripeError>;
			if (e instanceof errors.StripeCardError) {
				const declined = e.payment_intent as Stripe.PaymentIntent | undefined;
				const c = card(declined);
				return { providerId: declined?.id ?? null, status: "failed", cardBrand: c.brand, cardLast4: c.last4, failureReason: e.message || "Your card was declined." };
			}
			// An unknown or unusable payment method is the customer's problem, not an outage.
			if (e instanceof errors.StripeInvalidRequestError && e.param === "payment_method") {
				return { providerId: null, status: "failed", cardBrand: null, cardLast4: null, failureReason: "invalid payment method" };
			}
			// Above what Stripe takes in one payment ($999,999.99), or below its minimum: refused as it is, not an outage.
			if (e instanceof errors.StripeInvalidRequestError && (e.code === "amount_too_large" || e.code === "amount_too_small")) {
				return { providerId: null, status: "failed", cardBrand: null, cardLast4: null, failureReason: AMOUNT_REFUSED };
			}
			throw new PaymentProviderError(`Stripe: ${e?.message ?? String(err)}`, err);
		}
		return outcomeOf(intent);
	}

	/**
	 * Stripe does not look a payment up by idempotency key, so by the order id in its metadata (every
	 * charge sends it), through the search API (GET /v1/payment_intents/search).
	 */
	async findPayment(input: FindPaymentInput): Promise<CreatePaymentResult | null> {
		let found: Stripe.ApiSearchResult<Stripe.PaymentIntent>;
		try {
			found = await this.stripe.paymentIntents.search({ query: `metadata['orderId']:${searchString(input.orderId)}`, expand: ["data.latest_charge", "data.payment_method"] });
		} catch (err) {
			throw new PaymentProviderError(`Stripe search: ${(err as Error)?.message ?? String(err)}`, err);
		}
		// The query matches by metadata only: the order's own intents, checked again here.
		return pickOutcome(found.data.filter((pi) => pi.metadata?.orderId === input.orderId).map(outcomeOf));
	}

	async refund(input: RefundInput): Promise<RefundResult> {
		try {
			const refund = await this.stripe.refunds.create({ payment_intent: input.providerPaymentId, amount: input.amount }, { idempotencyKey: input.idempotencyKey });
			return { providerRefundId: refund.id, status: refundStatus(refund.status) };
		} catch (err) {
			// Refused as asked (more than is left on the charge, a charge disputed or not refundable): nothing was
			// refunded, and asking again gets the same answer. Anything else (an outage, a timeout) is unknown.
			if (err instanceof stripeSdk().errors.StripeInvalidRequestError) return { providerRefundId: null, status: "failed", failureReason: err.message };
			throw new PaymentProviderError(`Stripe refund: ${(err as Error)?.message ?? String(err)}`, err);
		}
	}

	async listRefunds(providerPaymentId: string): Promise<ProviderRefund[]> {
		try {
			const refunds = await this.stripe.refunds.list({ payment_intent: providerPaymentId, limit: 100 }).autoPagingToArray({ limit: 10_000 });
			return refunds.map((r) => ({ id: r.id, amount: r.amount, status: refundStatus(r.status) }));
		} catch (err) {
			throw new PaymentProviderError(`Stripe refund list: ${(err as Error)?.message ?? String(err)}`, err);
		}
	}

	async cancelPayment(providerPaymentId: string): Promise<CancelPaymentResult> {
		let intent: Stripe.PaymentIntent;
		try {
			intent = await this.stripe.paymentIntents.cancel(providerPaymentId, { cancellation_reason: "abandoned" });
		} catch (err) {
			const { errors } = stripeSdk();
			// Not cancelable any more (it succeeded, or was canceled already): where it stands is the answer.
			if (!(err instanceof errors.StripeInvalidRequestError)) throw new PaymentProviderError(`Stripe cancel: ${(err as Error)?.message ?? String(err)}`, err);
			// Unknown to this account (made under other keys): it can take no money here, and asking again changes nothing.
			if (err.code === "resource_missing") return { status: "canceled" };
			try {
				intent = await this.stripe.paymentIntents.retrieve(providerPaymentId);
			} catch (again) {
				throw new PaymentProviderError(`Stripe cancel: ${(again as Error)?.message ?? String(again)}`, again);
			}
		}
		if (intent.status === "canceled") return { status: "canceled" };
		if (intent.status === "succeeded") return { status: "succeeded" };
		return { status: "pending" };
	}
}
