/** The order's money: subtotal from the priced lines, the cart's discount, shipping, total. In cents. */
import { assertCents, multiplyCents, sumCents } from "./money";

export interface ShippingRates {
	/** Flat shipping fee. */
	flatCents: number;
	/** Merchandise (after discount) at or above this ships free. */
	freeThresholdCents: number;
}

export const DEFAULT_SHIPPING_RATES: ShippingRates = { flatCents: 599, freeThresholdCents: 5000 };

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
export function shippingFor(merchandise: number, rates: ShippingRates): number {
	return merchandise >= rates.freeThresholdCents ? 0 : rates.flatCents;
}

/**
 * Totals of a checkout. The subtotal is recomputed from unit price × quantity (never taken from the
 * client, nor trusted as a sum from elsewhere); the discount can never exceed the subtotal.
 */
export function computeCheckoutTotals(lines: PricedLine[], discount: number, rates: ShippingRates): CheckoutTotals {
	assertCents(rates.flatCents, "flat shipping");
	assertCents(rates.freeThresholdCents, "free shipping threshold");
	const subtotal = sumCents(lines.map((l) => multiplyCents(l.unitPrice, l.quantity)));
	const applied = Math.min(Math.max(0, assertCents(discount, "discount")), subtotal);
	// Nothing to send costs nothing (an empty cart never gets this far; the rule is for completeness).
	const shipping = lines.length ? shippingFor(subtotal - applied, rates) : 0;
	return { subtotal, discount: applied, shipping, total: subtotal - applied + shipping };
}
