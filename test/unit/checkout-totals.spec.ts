import { computeCheckoutTotals, DEFAULT_SHIPPING_RATES, shippingFor } from "../../lib/checkout-totals";

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
