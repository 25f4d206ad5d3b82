/**
 * Reports assembled from hourly counters (`{bucket, metric, key, value, ...dims}`): sales per
 * hour/day/week and currency, top products, and the purchase funnel. No broker, no I/O.
 */
import { rollUp, type Interval } from "./time-buckets";
import type { FunnelStep, MetricName } from "./analytics-events";

export interface HourlyCounter {
	bucket: string;
	metric: MetricName;
	key: string;
	value: number;
	status?: string;
	currency?: string;
	productId?: string;
	name?: string;
	step?: string;
}

export interface SalesRow {
	bucket: string;
	currency: string;
	/** Orders confirmed (paid) in the bucket. */
	orders: number;
	/**
	 * Orders cancelled in the bucket, whatever their state before: by the customer or an admin, a
	 * pending payment that failed, and a checkout that failed once its order existed (declined, stock
	 * short), which GET /orders lists as cancelled too. The funnel's checkoutFailures tells those apart.
	 */
	cancelled: number;
	/** Paid totals, shipping included. */
	grossRevenue: number;
	refunded: number;
	/** grossRevenue - refunded, in cents. */
	revenue: number;
}

export function salesReport(counters: HourlyCounter[], interval: Interval): SalesRow[] {
	const rows = new Map<string, SalesRow>();
	const rowFor = (bucket: string, currency: string) => {
		const key = `${bucket}|${currency}`;
		let row = rows.get(key);
		if (!row) rows.set(key, (row = { bucket, currency, orders: 0, cancelled: 0, grossRevenue: 0, refunded: 0, revenue: 0 }));
		return row;
	};
	for (const c of counters) {
		if (!c.currency) continue;
		const row = rowFor(rollUp(c.bucket, interval), c.currency);
		if (c.metric === "orders" && c.status === "confirmed") row.orders += c.value;
		else if (c.metric === "orders" && c.status === "cancelled") row.cancelled += c.value;
		else if (c.metric === "revenue") row.revenue += c.value;
		else if (c.metric === "refunds") row.refunded += c.value;
	}
	for (const row of rows.values()) row.grossRevenue = row.revenue + row.refunded;
	return [...rows.values()].sort((a, b) => a.bucket.localeCompare(b.bucket) || a.currency.localeCompare(b.currency));
}

export interface ProductUnits {
	productId: string;
	name: string | null;
	units: number;
}

export interface ProductRevenue {
	productId: string;
	name: string | null;
	revenue: number;
	currency: string;
}

export interface TopProducts {
	/** Units of every currency: a unit is a unit wherever it was sold. */
	byUnits: ProductUnits[];
	/**
	 * Revenue is ranked within one currency only (minor units of KRW, USD and KWD are no common
	 * measure): the top `limit` of `currency` when one is asked for, otherwise the top `limit` of each
	 * currency, grouped by currency in code order. Gross of refunds: only a cancellation takes a sale back.
	 */
	byRevenue: ProductRevenue[];
}

/** Ties are broken by product id, so the same data always gives the same order. */
export function topProductsReport(counters: HourlyCounter[], limit: number, currency?: string): TopProducts {
	const units = new Map<string, ProductUnits>();
	const revenue = new Map<string, ProductRevenue>();
	for (const c of counters) {
		if (!c.productId) continue;
		if (c.metric === "units") {
			const row = units.get(c.productId) ?? { productId: c.productId, name: null, units: 0 };
			row.units += c.value;
			row.name = c.name ?? row.name;
			units.set(c.productId, row);
		} else if (c.metric === "product_revenue" && c.currency && (!currency || c.currency === currency)) {
			const k = `${c.productId}|${c.currency}`;
			const row = revenue.get(k) ?? { productId: c.productId, name: null, revenue: 0, currency: c.currency };
			row.revenue += c.value;
			row.name = c.name ?? row.name;
			revenue.set(k, row);
		}
	}
	const byCurrency = new Map<string, ProductRevenue[]>();
	// A product whose sales in the range were all taken back (cancelled) has nothing to rank for.
	for (const row of revenue.values()) {
		if (row.revenue <= 0) continue;
		const list = byCurrency.get(row.currency);
		if (list) list.push(row);
		else byCurrency.set(row.currency, [row]);
	}
	return {
		byUnits: [...units.values()].filter((r) => r.units > 0).sort((a, b) => b.units - a.units || a.productId.localeCompare(b.productId)).slice(0, limit),
		byRevenue: [...byCurrency.keys()]
			.sort()
			.flatMap((code) => byCurrency.get(code)!.sort((a, b) => b.revenue - a.revenue || a.productId.localeCompare(b.productId)).slice(0, limit)),
	};
}

/**
 * The report with each product's name as the catalog has it now (a product renamed since its sales
 * shows its new name); a product the catalog no longer has keeps the name it was sold under.
 */
export function withCatalogNames(report: TopProducts, names: ReadonlyMap<string, string>): TopProducts {
	const named = <R extends { productId: string; name: string | null }>(r: R): R => ({ ...r, name: names.get(r.productId) ?? r.name });
	return { byUnits: report.byUnits.map(named), byRevenue: report.byRevenue.map(named) };
}

export interface FunnelReport {
	views: number;
	addedToCart: number;
	checkoutStarted: number;
	paid: number;
	/** Started checkouts that did not go through, by reason (payment_declined, insufficient_stock, ...). */
	checkoutFailures: Record<string, number>;
	/** Each step over the one before it, and paid over views; 0 when the step before is 0. */
	rates: { viewToCart: number; cartToCheckout: number; checkoutToPaid: number; viewToPaid: number };
}

function rate(part: number, whole: number): number {
	return whole > 0 ? Math.round((part / whole) * 10_000) / 10_000 : 0;
}

export function funnelReport(counters: HourlyCounter[]): FunnelReport {
	const totals: Record<FunnelStep, number> = { views: 0, addedToCart: 0, checkoutStarted: 0, paid: 0 };
	const checkoutFailures: Record<string, number> = {};
	for (const c of counters) {
		if (c.metric === "funnel" && c.key in totals) totals[c.key as FunnelStep] += c.value;
		else if (c.metric === "checkout_failures") checkoutFailures[c.key] = (checkoutFailures[c.key] ?? 0) + c.value;
	}
	return {
		...totals,
		checkoutFailures,
		rates: {
			viewToCart: rate(totals.addedToCart, totals.views),
			cartToCheckout: rate(totals.checkoutStarted, totals.addedToCart),
			checkoutToPaid: rate(totals.paid, totals.checkoutStarted),
			viewToPaid: rate(totals.paid, totals.views),
		},
	};
}
