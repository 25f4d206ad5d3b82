import { formatOrderNumber, fromCrockfordBase32, orderNumberDay, parseOrderNumber, toCrockfordBase32 } from "../../lib/order-number";

describe("Crockford base32", () => {
	test.each([
		[0, "0"],
		[9, "9"],
		[10, "A"],
		[17, "H"],
		[18, "J"],
		[31, "Z"],
		[32, "10"],
		[1023, "ZZ"],
		[1024, "100"],
	])("%i ↔ %s", (n, s) => {
		expect(toCrockfordBase32(n)).toBe(s);
		expect(fromCrockfordBase32(s)).toBe(n);
	});

	test("reads lowercase and the look-alikes O, I, L", () => {
		expect(fromCrockfordBase32("zz")).toBe(1023);
		expect(fromCrockfordBase32("1O")).toBe(32);
		expect(fromCrockfordBase32("IL")).toBe(33);
	});

	test("never uses I, L, O or U", () => {
		const digits = new Set(Array.from({ length: 32 }, (_, i) => toCrockfordBase32(i)));
		for (const bad of ["I", "L", "O", "U"]) expect(digits.has(bad)).toBe(false);
	});

	test.each([-1, 1.5, Number.NaN])("refuses %p", (n) => expect(() => toCrockfordBase32(n)).toThrow(RangeError));
});

describe("order numbers", () => {
	const day = new Date("2025-01-14T23:59:59Z");

	test.each([
		[1, "SH-250114-0001"],
		[32, "SH-250114-0010"],
		[1_048_575, "SH-250114-ZZZZ"],
		[1_048_576, "SH-250114-10000"],
	])("sequence %i → %s", (seq, number) => {
		expect(formatOrderNumber(day, seq)).toBe(number);
		expect(parseOrderNumber(number)).toEqual({ day: "250114", sequence: seq });
	});

	test("the day is the UTC day", () => {
		expect(orderNumberDay(new Date("2025-03-01T00:30:00+02:00"))).toBe("250228");
		expect(orderNumberDay(new Date("2099-12-31T12:00:00Z"))).toBe("991231");
	});

	test("distinct sequences give distinct numbers", () => {
		const numbers = new Set(Array.from({ length: 5000 }, (_, i) => formatOrderNumber(day, i + 1)));
		expect(numbers.size).toBe(5000);
	});

	test.each(["SH-250114-000I", "XX-250114-0001", "SH-2501-0001", "SH-250114-001"])("%s is not an order number", (s) => expect(parseOrderNumber(s)).toBeNull());
	test.each([0, -3, 2.5])("refuses sequence %p", (seq) => expect(() => formatOrderNumber(day, seq)).toThrow(RangeError));
});
