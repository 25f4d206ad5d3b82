/** The order's money: subtotal from the priced lines, the cart's discount, shipping, total. In cents. */
import { assertCents, multiplyCents, sumCents } from "./money";

export interface ShippingRate {
	/** Flat shipping fee, in minor units of the cart's currency. */
	flatCents: number;
	/** Merchandise (after discount) at or above this ships free. */
	freeThresholdCents: number;
}

/** The shop's rate, and per currency the rates that replace it (599 cents is not 599 yen). */
export interface ShippingRates extends ShippingRate {
	byCurrency?: Record<string, ShippingRate>;
}

export const DEFAULT_SHIPPING_RATES: ShippingRates = { flatCents: 599, freeThresholdCents: 5000 };

/** The rate for a cart in `currency`: its own when configured, else the shop's, read in that currency's minor units. */
export function rateFor(rates: ShippingRates, currency: string | undefined): ShippingRate {
	return (currency && rates.byCurrency?.[currency]) || rates;
}

/**
 * SHIPPING_RATES: "EUR:499:4500,JPY:800:8000", per currency the flat fee and the free-shipping
 * threshold in its minor units. Returns the problem with `value`, or the rates.
 */
export function parseShippingRates(value: string, isCurrency: (code: string) => boolean): Record<string, ShippingRate> | string {
	const out: Record<string, ShippingRate> = {};
	for (const entry of value.split(",").map((e) => e.trim()).filter(Boolean)) {
		const m = /^([A-Z]{3}):(\d{1,15}):(\d{1,15})$/.exec(entry);
		if (!m) return `"${entry}" is not CUR:flat:threshold (whole minor units, e.g. JPY:800:8000)`;
		if (!isCurrency(m[1])) return `${m[1]} is not an ISO 4217 currency code`;
		if (out[m[1]]) return `${m[1]} is given twice`;
		out[m[1]] = { flatCents: Number(m[2]), freeThresholdCents: Number(m[3]) };
	}
	return out;
}

export interface PricedLine {
	unitPrice: number;
	quantity: number;
}

export interface CheckoutTotals {
	subtotal: number;
	discount: number;
	shipping: number;
	total: number;
}

/**
 * Shipping for goods worth `merchandise` cents after the discount: free at or above the threshold,
 * else the flat rate. Goods a discount made free still travel: a code covers goods, not shipping.
 */
export function shippingFor(merchandise: number, rate: ShippingRate): number {
	return merchandise >= rate.freeThresholdCents ? 0 : rate.flatCents;
}

/**
 * Totals of a checkout. The subtotal is recomputed from unit price × quantity (never taken from the
 * client, nor trusted as a sum from elsewhere); the discount can never exceed the subtotal.
 */
export function computeCheckoutTotals(lines: PricedLine[], discount: number, rates: ShippingRate): CheckoutTotals {
	assertCents(rates.flatCents, "flat shipping");
	assertCents(rates.freeThresholdCents, "free shipping threshold");
	const subtotal = sumCents(lines.map((l) => multiplyCents(l.unitPrice, l.quantity)));
	const applied = Math.min(Math.max(0, assertCents(discount, "discount")), subtotal);
	// Nothing to send costs nothing (an empty cart never gets this far; the rule is for completeness).
	const shipping = lines.length ? shippingFor(subtotal - applied, rates) : 0;
	return { subtotal, discount: applied, shipping, total: subtotal - applied + shipping };
}
