import { TestPaymentProvider, INVALID_PAYMENT_METHOD } from "../../adapters/payments/test-provider";
import { AMOUNT_REFUSED, MAX_CHARGE_MINOR_UNITS, PaymentProviderError } from "../../adapters/payments/provider";

const charge = (provider: TestPaymentProvider, token: string, key = `key-${token}`, amount = 1999) =>
	provider.createPayment({ amount, currency: "USD", token, idempotencyKey: key, metadata: { orderId: "o1" } });

describe("built-in test payment provider", () => {
	test.each([
		["pm_card_visa", "succeeded", "visa", "4242", null],
		["pm_card_mastercard", "succeeded", "mastercard", "4444", null],
		["pm_card_chargeDeclined", "failed", "visa", "0002", "Your card was declined."],
		["pm_card_chargeDeclinedInsufficientFunds", "failed", "visa", "9995", "Your card has insufficient funds."],
		["pm_card_authenticationRequired", "pending", "visa", "3184", null],
	])("%s → %s", async (token, status, brand, last4, reason) => {
		const result = await charge(new TestPaymentProvider(), token);
		expect(result).toMatchObject({ status, cardBrand: brand, cardLast4: last4, failureReason: reason });
		expect(result.providerId).toMatch(/^pi_test_/);
		// Only a payment waiting for the customer carries a client secret, named after it as Stripe's are.
		if (status === "pending") expect(result.clientSecret).toMatch(new RegExp(`^${result.providerId}_secret_[0-9a-f]{24}$`));
		else expect(result.clientSecret).toBeUndefined();
	});

	test("the customer's side of 3-D Secure: passed, the payment succeeds; failed, it fails; once only, and never for a canceled one", async () => {
		const provider = new TestPaymentProvider();
		const passed = await charge(provider, "pm_card_authenticationRequired", "k1");
		expect(provider.authenticate(passed.providerId!, true)).toBe(true);
		expect(await provider.findPayment({ idempotencyKey: "k1", orderId: "o1" })).toMatchObject({ status: "succeeded" });
		expect(provider.authenticate(passed.providerId!, false)).toBe(false);
		const failed = await charge(provider, "pm_card_authenticationRequired", "k2");
		expect(provider.authenticate(failed.providerId!, false)).toBe(true);
		await expect(provider.refund({ providerPaymentId: failed.providerId!, amount: 1, idempotencyKey: "r" })).rejects.toThrow(/failed/);
		const canceled = await charge(provider, "pm_card_authenticationRequired", "k3");
		await provider.cancelPayment(canceled.providerId!);
		expect(provider.authenticate(canceled.providerId!, true)).toBe(false);
		expect(provider.authenticate((await charge(provider, "pm_card_visa", "k4")).providerId!, true)).toBe(false);
	});

	test.each(["pm_card_unknown", "tok_visa", "", "4242424242424242", "constructor", "__proto__", "toString", "hasOwnProperty"])("unknown token %p is declined as an invalid payment method", async (token) => {
		const provider = new TestPaymentProvider();
		expect(await charge(provider, token)).toEqual({ providerId: null, status: "failed", cardBrand: null, cardLast4: null, failureReason: INVALID_PAYMENT_METHOD });
		expect(provider.chargesCreated).toBe(0);
	});

	test("more than Stripe takes in one payment ($999,999.99) is declined, as Stripe refuses it; up to it is charged", async () => {
		const provider = new TestPaymentProvider();
		expect(await charge(provider, "pm_card_visa", "big", MAX_CHARGE_MINOR_UNITS + 1)).toEqual({ providerId: null, status: "failed", cardBrand: null, cardLast4: null, failureReason: AMOUNT_REFUSED });
		expect(provider.chargesCreated).toBe(0);
		expect(await charge(provider, "pm_card_visa", "most", MAX_CHARGE_MINOR_UNITS)).toMatchObject({ status: "succeeded" });
	});

	test("the same idempotency key returns the same payment and charges once, also concurrently", async () => {
		const provider = new TestPaymentProvider();
		const results = await Promise.all(Array.from({ length: 10 }, () => charge(provider, "pm_card_visa", "order-1-charge")));
		expect(new Set(results.map((r) => r.providerId)).size).toBe(1);
		expect(await charge(provider, "pm_card_visa", "order-1-charge")).toEqual(results[0]);
		expect(provider.chargesCreated).toBe(1);
		const other = await charge(provider, "pm_card_visa", "order-2-charge");
		expect(other.providerId).not.toBe(results[0].providerId);
		expect(provider.chargesCreated).toBe(2);
	});

	test("a decline is replayed for its key too", async () => {
		const provider = new TestPaymentProvider();
		const first = await charge(provider, "pm_card_chargeDeclined", "k");
		expect(await charge(provider, "pm_card_chargeDeclined", "k")).toEqual(first);
		expect(provider.chargesCreated).toBe(1);
	});

	test("a key reused with other parameters is refused", async () => {
		const provider = new TestPaymentProvider();
		await charge(provider, "pm_card_visa", "k", 1000);
		await expect(charge(provider, "pm_card_visa", "k", 2000)).rejects.toBeInstanceOf(PaymentProviderError);
		await expect(charge(provider, "pm_card_mastercard", "k", 1000)).rejects.toBeInstanceOf(PaymentProviderError);
	});

	test("refunds: idempotent per key, never above the charge", async () => {
		const provider = new TestPaymentProvider();
		const paid = await charge(provider, "pm_card_visa", "k", 1000);
		const refund = (amount: number, key: string) => provider.refund({ providerPaymentId: paid.providerId!, amount, idempotencyKey: key });
		const first = await refund(600, "r1");
		expect(first).toMatchObject({ status: "succeeded", providerRefundId: expect.stringMatching(/^re_test_/) });
		expect(await refund(600, "r1")).toEqual(first);
		await expect(refund(401, "r2")).rejects.toBeInstanceOf(PaymentProviderError);
		// The rejected request was not applied, so its key can carry the valid amount.
		expect((await refund(400, "r2")).status).toBe("succeeded");
		await expect(refund(1, "r3")).rejects.toThrow(/exceeds/);
		await expect(provider.refund({ providerPaymentId: "pi_unknown", amount: 1, idempotencyKey: "r4" })).rejects.toThrow(/No such payment/);
		// A 3-D Secure payment, settled later (by the webhook), can be refunded like any other; a declined one cannot.
		const pending = await charge(provider, "pm_card_authenticationRequired", "k-3ds", 1500);
		expect((await provider.refund({ providerPaymentId: pending.providerId!, amount: 1500, idempotencyKey: "r5" })).status).toBe("succeeded");
	});

	test("declined payments cannot be refunded", async () => {
		const provider = new TestPaymentProvider();
		const declined = await charge(provider, "pm_card_chargeDeclined", "k");
		await expect(provider.refund({ providerPaymentId: declined.providerId!, amount: 1, idempotencyKey: "r" })).rejects.toBeInstanceOf(PaymentProviderError);
	});
});
