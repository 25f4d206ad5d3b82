import { computeCheckoutTotals, DEFAULT_SHIPPING_RATES, parseShippingRates, rateFor, shippingFor } from "../../lib/checkout-totals";

const rates = DEFAULT_SHIPPING_RATES; // 599 flat, free from 5000

describe("computeCheckoutTotals", () => {
	test.each([
		// lines, discount, expected
		[[{ unitPrice: 1999, quantity: 1 }], 0, { subtotal: 1999, discount: 0, shipping: 599, total: 2598 }],
		[[{ unitPrice: 2500, quantity: 2 }], 0, { subtotal: 5000, discount: 0, shipping: 0, total: 5000 }],
		[[{ unitPrice: 4999, quantity: 1 }], 0, { subtotal: 4999, discount: 0, shipping: 599, total: 5598 }],
		// the threshold applies to the goods after the discount
		[[{ unitPrice: 3000, quantity: 2 }], 1500, { subtotal: 6000, discount: 1500, shipping: 599, total: 5099 }],
		[[{ unitPrice: 1000, quantity: 3 }, { unitPrice: 250, quantity: 4 }], 0, { subtotal: 4000, discount: 0, shipping: 599, total: 4599 }],
		// a discount never exceeds the subtotal, nor goes negative; goods it made free still ship at the flat rate
		[[{ unitPrice: 1000, quantity: 1 }], 5000, { subtotal: 1000, discount: 1000, shipping: 599, total: 599 }],
		[[{ unitPrice: 999, quantity: 1 }], 999, { subtotal: 999, discount: 999, shipping: 599, total: 599 }],
		// nothing to send costs nothing
		[[], 0, { subtotal: 0, discount: 0, shipping: 0, total: 0 }],
		[[{ unitPrice: 1000, quantity: 1 }], -50, { subtotal: 1000, discount: 0, shipping: 599, total: 1599 }],
	])("%j with discount %i", (lines, discount, expected) => {
		expect(computeCheckoutTotals(lines, discount, rates)).toEqual(expected);
	});

	test("configured rates are used", () => {
		expect(computeCheckoutTotals([{ unitPrice: 1000, quantity: 1 }], 0, { flatCents: 250, freeThresholdCents: 1000 })).toEqual({ subtotal: 1000, discount: 0, shipping: 0, total: 1000 });
		expect(computeCheckoutTotals([{ unitPrice: 999, quantity: 1 }], 0, { flatCents: 250, freeThresholdCents: 1000 }).shipping).toBe(250);
	});

	test("floats are refused", () => {
		expect(() => computeCheckoutTotals([{ unitPrice: 19.99, quantity: 1 }], 0, rates)).toThrow(TypeError);
		expect(() => computeCheckoutTotals([{ unitPrice: 1999, quantity: 1 }], 0.5, rates)).toThrow(TypeError);
	});

	test.each([
		[0, 599],
		[1, 599],
		[4999, 599],
		[5000, 0],
	])("shippingFor(%i) = %i", (merchandise, expected) => expect(shippingFor(merchandise, rates)).toBe(expected));
});

describe("shipping rates per currency", () => {
	const isCurrency = (c: string) => ["JPY", "EUR", "USD"].includes(c);

	test("a currency with its own rate gets it; any other the shop's, in its own minor units", () => {
		const perCurrency = { ...rates, byCurrency: { JPY: { flatCents: 800, freeThresholdCents: 8000 } } };
		expect(rateFor(perCurrency, "JPY")).toEqual({ flatCents: 800, freeThresholdCents: 8000 });
		expect(rateFor(perCurrency, "USD")).toBe(perCurrency);
		expect(rateFor(rates, "JPY")).toBe(rates);
		expect(computeCheckoutTotals([{ unitPrice: 5000, quantity: 1 }], 0, rateFor(perCurrency, "JPY"))).toEqual({ subtotal: 5000, discount: 0, shipping: 800, total: 5800 });
	});

	test("parseShippingRates reads CUR:flat:threshold lists and names what is wrong", () => {
		expect(parseShippingRates("JPY:800:8000,EUR:499:4500", isCurrency)).toEqual({ JPY: { flatCents: 800, freeThresholdCents: 8000 }, EUR: { flatCents: 499, freeThresholdCents: 4500 } });
		expect(parseShippingRates(" JPY:0:0 ,", isCurrency)).toEqual({ JPY: { flatCents: 0, freeThresholdCents: 0 } });
		expect(parseShippingRates("JPY:800", isCurrency)).toMatch(/"JPY:800" is not CUR:flat:threshold/);
		expect(parseShippingRates("GBP:1:2", isCurrency)).toMatch(/GBP is not an ISO 4217/);
		expect(parseShippingRates("JPY:1:2,JPY:3:4", isCurrency)).toMatch(/JPY is given twice/);
		expect(parseShippingRates("EUR:4.99:50", isCurrency)).toMatch(/not CUR:flat:threshold/);
	});
});
