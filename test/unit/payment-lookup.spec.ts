/**
 * Settling a charge whose provider answer was never recorded, without I/O: which payments qualify,
 * what a look-up at the provider decides (lib/payment-records.ts), the one way out of `failed`
 * (lib/payment-state.ts), and the providers' look-ups (built-in provider, Stripe's search query).
 */
import { chargeStartedAt, isUnrecordedCharge, lookupVerdict } from "../../lib/payment-records";
import { canOverturnFailure, PAYMENT_STATUSES, type PaymentStatus } from "../../lib/payment-state";
import { TestPaymentProvider } from "../../adapters/payments/test-provider";
import { PaymentProviderError, providerWarning, type CreatePaymentResult } from "../../adapters/payments/provider";
import { pickOutcome, searchString } from "../../adapters/payments/stripe-provider";

const NOW = new Date("2025-03-01T12:00:00Z");
const ago = (ms: number) => new Date(NOW.getTime() - ms);

describe("isUnrecordedCharge", () => {
	test.each([
		["pending, no provider id, lease ran out", { status: "pending", providerPaymentId: null, chargeLeaseUntil: ago(1) }, true],
		["pending, no provider id, lease dropped (epoch)", { status: "pending", providerPaymentId: null, chargeLeaseUntil: new Date(0) }, true],
		["pending, no provider id, lease ends now", { status: "pending", providerPaymentId: null, chargeLeaseUntil: NOW }, true],
		["pending, no provider id, no lease (older payments)", { status: "pending", providerPaymentId: null, chargeLeaseUntil: null }, true],
		["its charge call may still be talking to the provider (lease live)", { status: "pending", providerPaymentId: null, chargeLeaseUntil: ago(-1) }, false],
		["named by the provider (3-D Secure): its webhook settles it", { status: "pending", providerPaymentId: "pi_1", chargeLeaseUntil: null }, false],
		["settled", { status: "succeeded", providerPaymentId: "pi_1", chargeLeaseUntil: null }, false],
		["failed without a provider id", { status: "failed", providerPaymentId: null, chargeLeaseUntil: null }, false],
	] as const)("%s → %s", (_name, p, expected) => {
		expect(isUnrecordedCharge(p as any, NOW)).toBe(expected);
	});
});

describe("chargeStartedAt", () => {
	test.each([
		["the recorded start", { chargeStartedAt: ago(5000), updatedAt: ago(1000), createdAt: ago(9000) }, ago(5000)],
		["older payments: their last change", { updatedAt: ago(1000), createdAt: ago(9000) }, ago(1000)],
		["older payments without updatedAt: their creation", { createdAt: ago(9000) }, ago(9000)],
	] as const)("%s", (_name, p, expected) => {
		expect(chargeStartedAt(p as any)).toEqual(expected);
	});
});

describe("lookupVerdict", () => {
	const TEN_MIN = 10 * 60_000;
	test.each([
		["found: applied, however recent", true, 0, TEN_MIN, "apply"],
		["found long after", true, TEN_MIN * 3, TEN_MIN, "apply"],
		["a miss at a provider without lag is final at once", false, 0, 0, "not_charged"],
		["a miss within the lag may not show yet", false, TEN_MIN - 1, TEN_MIN, "ask_later"],
		["a miss once the lag has passed", false, TEN_MIN, TEN_MIN, "not_charged"],
		["a miss long after", false, TEN_MIN * 6, TEN_MIN, "not_charged"],
	] as const)("%s → %s", (_name, found, sinceStartMs, lagMs, expected) => {
		expect(lookupVerdict(found, ago(sinceStartMs), NOW, lagMs)).toBe(expected);
	});
});

describe("canOverturnFailure", () => {
	test.each([
		["failed without the provider naming a payment, then reported succeeded", "failed", null, "succeeded", "pi_1", true],
		["a decline (or failed 3-D Secure) of the payment the provider names, then paid with its client secret", "failed", "pi_1", "succeeded", "pi_1", true],
		["another payment of the provider's is not this one", "failed", "pi_1", "succeeded", "pi_2", false],
		["failed is not reopened to anything but succeeded", "failed", null, "pending", "pi_1", false],
		["failed → refunded is not a shortcut", "failed", null, "refunded", "pi_1", false],
	] as const)("%s", (_name, status, providerPaymentId, to, reported, expected) => {
		expect(canOverturnFailure({ status, providerPaymentId }, to, reported)).toBe(expected);
	});

	test.each(PAYMENT_STATUSES.filter((s) => s !== "failed"))("only a failure is overturned, never %s", (status) => {
		for (const to of PAYMENT_STATUSES) expect(canOverturnFailure({ status: status as PaymentStatus, providerPaymentId: null }, to)).toBe(false);
	});
});

describe("built-in provider findPayment", () => {
	const input = (key: string, token: string) => ({ amount: 1500, currency: "USD", token, idempotencyKey: key, metadata: { orderId: "o1" } });

	test("a payment made under the key is found as it stands; another key, or a fresh provider (a restart), finds none", async () => {
		const provider = new TestPaymentProvider();
		const made = await provider.createPayment(input("k1", "pm_card_visa"));
		expect(await provider.findPayment({ idempotencyKey: "k1", orderId: "o1" })).toEqual(made);
		expect(await provider.findPayment({ idempotencyKey: "k2", orderId: "o1" })).toBeNull();
		expect(await new TestPaymentProvider().findPayment({ idempotencyKey: "k1", orderId: "o1" })).toBeNull();
		expect(provider.lookupLagMs).toBe(0);
	});

	test("a 3-D Secure payment shows what happened since: completed → succeeded, canceled → failed", async () => {
		const provider = new TestPaymentProvider();
		const done = await provider.createPayment(input("3ds-done", "pm_card_authenticationRequired"));
		const dropped = await provider.createPayment(input("3ds-dropped", "pm_card_authenticationRequired"));
		expect(await provider.findPayment({ idempotencyKey: "3ds-done", orderId: "o1" })).toMatchObject({ status: "pending" });
		provider.completeAuthentication(done.providerId!);
		await provider.cancelPayment(dropped.providerId!);
		expect(await provider.findPayment({ idempotencyKey: "3ds-done", orderId: "o1" })).toMatchObject({ status: "succeeded", providerId: done.providerId });
		expect(await provider.findPayment({ idempotencyKey: "3ds-dropped", orderId: "o1" })).toMatchObject({ status: "failed", providerId: dropped.providerId });
	});

	test("a decline is found as the decline, also after a refused reuse of its key", async () => {
		const provider = new TestPaymentProvider();
		await provider.createPayment(input("declined", "pm_card_chargeDeclined"));
		expect(await provider.findPayment({ idempotencyKey: "declined", orderId: "o1" })).toMatchObject({ status: "failed", failureReason: "Your card was declined." });
		// The same key with another card is refused as an error; the first payment is still the one found.
		await expect(provider.createPayment(input("declined", "pm_card_visa"))).rejects.toBeInstanceOf(PaymentProviderError);
		expect(await provider.findPayment({ idempotencyKey: "declined", orderId: "o1" })).toMatchObject({ status: "failed" });
	});
});

describe("Stripe look-up helpers", () => {
	test.each([
		["order-1", "'order-1'"],
		["it's", "'it\\'s'"],
		["back\\slash", "'back\\\\slash'"],
		["' OR metadata['x']:'y", "'\\' OR metadata[\\'x\\']:\\'y'"],
	])("searchString(%p) = %s", (value, quoted) => {
		expect(searchString(value)).toBe(quoted);
	});

	const outcome = (status: CreatePaymentResult["status"], providerId: string): CreatePaymentResult => ({ providerId, status, cardBrand: null, cardLast4: null, failureReason: null });
	test.each([
		["none", [], null],
		["one", [outcome("failed", "pi_a")], "pi_a"],
		["money taken wins over a failure", [outcome("failed", "pi_a"), outcome("succeeded", "pi_b")], "pi_b"],
		["one that may still take money wins over a failure", [outcome("failed", "pi_a"), outcome("pending", "pi_b")], "pi_b"],
		["money taken wins over one waiting", [outcome("pending", "pi_a"), outcome("succeeded", "pi_b")], "pi_b"],
	] as const)("pickOutcome: %s", (_name, outcomes, expected) => {
		expect(pickOutcome([...outcomes])?.providerId ?? null).toBe(expected);
	});
});

describe("providerWarning", () => {
	test("production without STRIPE_SECRET_KEY is warned about: the built-in provider takes no money", () => {
		expect(providerWarning({ stripeSecretKey: undefined } as any, "production")).toMatch(/STRIPE_SECRET_KEY is not set.*takes no money/);
		expect(providerWarning({ stripeSecretKey: "sk_live_x" } as any, "production")).toBeNull();
		expect(providerWarning({ stripeSecretKey: undefined } as any, "development")).toBeNull();
		expect(providerWarning({ stripeSecretKey: undefined } as any, "test")).toBeNull();
	});
});
