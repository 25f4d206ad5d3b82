/** What a span may carry of a call's params: no secrets, no request objects. */
import { EventEmitter } from "node:events";
import { REDACTED, safeParamTags, traceSafe } from "../../lib/trace-tags";

describe("traceSafe", () => {
	test.each([
		["a password", { email: "a@example.com", password: "hunter2-hunter2" }, { email: "a@example.com", password: REDACTED }],
		["the change-password pair", { currentPassword: "old-one", newPassword: "new-one" }, { currentPassword: REDACTED, newPassword: REDACTED }],
		["a refresh token", { refreshToken: "abc.def" }, { refreshToken: REDACTED }],
		["a card token, nested", { paymentMethod: { type: "card", token: "pm_card_visa" }, amount: 1999 }, { paymentMethod: { type: "card", token: REDACTED }, amount: 1999 }],
		["sealed event tokens", { userId: "u1", resetToken: "sealed", verificationToken: "sealed" }, { userId: "u1", resetToken: REDACTED, verificationToken: REDACTED }],
		["keys, secrets, signatures", { apiKey: "k", webhookSecret: "s", "stripe-signature": "t=1,v1=x", Authorization: "Bearer x" }, { apiKey: REDACTED, webhookSecret: REDACTED, "stripe-signature": REDACTED, Authorization: REDACTED }],
		["inside arrays", { items: [{ variantId: "v", quantity: 2, token: "x" }] }, { items: [{ variantId: "v", quantity: 2, token: REDACTED }] }],
		["an absent secret stays absent", { password: null, token: "" }, { password: null, token: "" }],
		["plain data unchanged", { q: "shirt", page: 2, inStock: true, code: "SAVE10" }, { q: "shirt", page: 2, inStock: true, code: "SAVE10" }],
		["a payment secret under any name", { paymentMethod: "pm_card_LeakStr8", secretOf: "pi_3Nx_secret_Ab", note: "tok_visa", sku: "pm-card", slug: "card_holder" }, { paymentMethod: REDACTED, secretOf: REDACTED, note: REDACTED, sku: "pm-card", slug: "card_holder" }],
	])("%s", (_what, params, expected) => {
		expect(traceSafe(params)).toEqual(expected);
	});

	test("request objects, buffers and dates are named or converted, never copied", () => {
		const req = new EventEmitter();
		expect(traceSafe({ req, raw: Buffer.from("abc"), at: new Date("2026-01-02T03:04:05Z") })).toEqual({ req: "[EventEmitter]", raw: "[3 bytes]", at: "2026-01-02T03:04:05.000Z" });
	});

	test("the params it is given are not changed", () => {
		const params = { password: "p" };
		traceSafe(params);
		expect(params).toEqual({ password: "p" });
	});

	test("deep or long values are cut", () => {
		let deep: any = { leaf: 1 };
		for (let i = 0; i < 10; i++) deep = { deep };
		expect(JSON.stringify(traceSafe(deep))).toContain("[…]");
		expect((traceSafe(Array.from({ length: 500 }, (_, i) => i)) as unknown[]).length).toBe(50);
	});

	test("as moleculer's tag function: the params when the span starts, nothing of the response when it ends", () => {
		expect(safeParamTags({ params: { password: "p" } })).toEqual({ params: { password: REDACTED } });
		expect(safeParamTags({ params: {} }, { accessToken: "x" })).toEqual({});
		expect(safeParamTags({ params: {} }, undefined)).toEqual({});
	});
});
