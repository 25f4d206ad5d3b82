import { allocateCents, percentOf, sumCents, multiplyCents, formatMoney, assertCents } from "../../lib/money";

describe("money", () => {
	test.each([
		[1000, 10, 100],
		[999, 15, 150],
		[5, 50, 3],
		[1, 100, 1],
		[0, 30, 0],
	])("percentOf(%i, %i) = %i", (amount, pct, expected) => expect(percentOf(amount, pct)).toBe(expected));

	test("allocateCents keeps the total exactly", () => {
		expect(allocateCents(100, [1, 1, 1])).toEqual([34, 33, 33]);
		expect(allocateCents(1001, [3, 7]).reduce((a, b) => a + b)).toBe(1001);
		expect(allocateCents(10, [0, 0])).toEqual([0, 0]);
	});

	test("floats are refused", () => {
		expect(() => assertCents(10.5)).toThrow(TypeError);
		expect(() => sumCents([1, 2.5])).toThrow(TypeError);
		expect(multiplyCents(1999, 3)).toBe(5997);
	});

	test.each([
		[123456, "USD", "$1,234.56"],
		[5, "EUR", "€0.05"],
		// Minor units are the currency's own: yen have none, dinars three.
		[10000, "JPY", "¥10,000"],
		[1234, "KWD", "KWD 1.234"],
		// Cents on paper, shown without them: still divided by 100.
		[500000, "HUF", "HUF 5,000"],
		[1250000, "IDR", "IDR 12,500"],
		// ... unless there is a fraction: never rounded away (a refund of 49 HUF cents read "HUF 0").
		[1049, "HUF", "HUF 10.49"],
		[49, "HUF", "HUF 0.49"],
		[12345, "IQD", "IQD 12.345"],
		[400, "IQD", "IQD 0.400"],
		[12000, "IQD", "IQD 12"],
		[-650, "USD", "-$6.50"],
	])("formatMoney(%p, %s) → %s", (amount, currency, text) => expect(formatMoney(amount, currency).replace(/\u00a0/g, " ")).toBe(text));
});
