import { canTransition, planRefund, statusAfterFailedRefund, statusAfterRefunds, statusesLeadingTo, PAYMENT_STATUSES, isPaymentStatus, type PaymentStatus } from "../../lib/payment-state";

describe("payment state machine", () => {
	const legal: Array<[PaymentStatus, PaymentStatus]> = [
		["pending", "succeeded"],
		["pending", "failed"],
		["succeeded", "partially_refunded"],
		["succeeded", "refunded"],
		["partially_refunded", "partially_refunded"],
		["partially_refunded", "refunded"],
	];
	const isLegal = (from: PaymentStatus, to: PaymentStatus) => legal.some(([f, t]) => f === from && t === to);
	const allPairs = PAYMENT_STATUSES.flatMap((from) => PAYMENT_STATUSES.map((to) => [from, to] as [PaymentStatus, PaymentStatus]));

	test.each(allPairs)("%s → %s", (from, to) => {
		expect(canTransition(from, to)).toBe(isLegal(from, to));
	});

	test.each([
		// A webhook that arrives late or twice must not undo a settled payment.
		["succeeded", "failed"],
		["failed", "succeeded"],
		["refunded", "succeeded"],
		["refunded", "partially_refunded"],
		["succeeded", "pending"],
		["succeeded", "succeeded"],
	] as Array<[PaymentStatus, PaymentStatus]>)("out of order: %s → %s is refused", (from, to) => {
		expect(canTransition(from, to)).toBe(false);
	});

	test.each([
		["succeeded", ["pending"]],
		["failed", ["pending"]],
		["partially_refunded", ["succeeded", "partially_refunded"]],
		["refunded", ["succeeded", "partially_refunded"]],
		["pending", []],
	] as Array<[PaymentStatus, PaymentStatus[]]>)("statusesLeadingTo(%s) = %j", (to, from) => {
		expect(statusesLeadingTo(to)).toEqual(from);
	});

	test("unknown statuses are neither statuses nor transitions", () => {
		expect(isPaymentStatus("captured")).toBe(false);
		expect(isPaymentStatus("refunded")).toBe(true);
		expect(canTransition("captured" as PaymentStatus, "refunded")).toBe(false);
	});
});

describe("refunds", () => {
	test.each([
		[1000, 0, "succeeded"],
		[1000, 1, "partially_refunded"],
		[1000, 999, "partially_refunded"],
		[1000, 1000, "refunded"],
	] as Array<[number, number, PaymentStatus]>)("statusAfterRefunds(%i paid, %i refunded) = %s", (paid, refunded, status) => {
		expect(statusAfterRefunds(paid, refunded)).toBe(status);
	});

	test.each([
		// status, paid, refunded, failed → status, or null
		["refunded", 1000, 1000, 1000, "succeeded"],
		["refunded", 1000, 1000, 400, "partially_refunded"],
		["partially_refunded", 1000, 600, 600, "succeeded"],
		["partially_refunded", 1000, 600, 100, "partially_refunded"],
		// Nothing refunded to take back, or more than was counted, or not an amount.
		["succeeded", 1000, 0, 100, null],
		["pending", 1000, 0, 100, null],
		["failed", 1000, 0, 100, null],
		["partially_refunded", 1000, 600, 601, null],
		["refunded", 1000, 1000, 0, null],
		["refunded", 1000, 1000, 1.5, null],
	] as Array<[PaymentStatus, number, number, number, PaymentStatus | null]>)("statusAfterFailedRefund(%s, %i paid, %i refunded, %p failed) = %p", (status, amount, refundedAmount, failed, expected) => {
		expect(statusAfterFailedRefund({ status, amount, refundedAmount }, failed)).toBe(expected);
	});

	test.each([
		// status, paid, already refunded, requested → plan
		["succeeded", 1000, 0, undefined, { ok: true, amount: 1000, refundable: 1000 }],
		["succeeded", 1000, 0, 250, { ok: true, amount: 250, refundable: 1000 }],
		["partially_refunded", 1000, 250, undefined, { ok: true, amount: 750, refundable: 750 }],
		["partially_refunded", 1000, 250, 750, { ok: true, amount: 750, refundable: 750 }],
		["partially_refunded", 1000, 250, 751, { ok: false, reason: "exceeds_refundable", refundable: 750 }],
		["succeeded", 1000, 0, 1001, { ok: false, reason: "exceeds_refundable", refundable: 1000 }],
		["refunded", 1000, 1000, undefined, { ok: false, reason: "fully_refunded", refundable: 0 }],
		["refunded", 1000, 1000, 1, { ok: false, reason: "fully_refunded", refundable: 0 }],
		["succeeded", 1000, 0, 0, { ok: false, reason: "not_positive", refundable: 1000 }],
		["succeeded", 1000, 0, 10.5, { ok: false, reason: "not_positive", refundable: 1000 }],
		["pending", 1000, 0, undefined, { ok: false, reason: "not_paid", refundable: 0 }],
		["failed", 1000, 0, 100, { ok: false, reason: "not_paid", refundable: 0 }],
	] as Array<[PaymentStatus, number, number, number | undefined, object]>)("%s, paid %i, refunded %i, asked %p", (status, paid, alreadyRefunded, requested, plan) => {
		expect(planRefund({ status, paid, alreadyRefunded, requested })).toEqual(plan);
	});
});
