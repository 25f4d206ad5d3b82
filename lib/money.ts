/** Money is an integer of minor units (cents) with an ISO 4217 currency; never a float. */
export interface Money {
	amount: number;
	currency: string;
}

export const DEFAULT_CURRENCY = "USD";

export function isCents(value: unknown): value is number {
	return typeof value === "number" && Number.isSafeInteger(value);
}

export function assertCents(value: number, what = "amount"): number {
	if (!isCents(value)) throw new TypeError(`${what} must be an integer number of cents, got ${value}`);
	return value;
}

export function sumCents(values: number[]): number {
	return values.reduce((a, b) => a + assertCents(b), 0);
}

export function multiplyCents(unit: number, quantity: number): number {
	return assertCents(unit, "unit price") * assertCents(quantity, "quantity");
}

/** Percentage of an amount, rounded half away from zero to whole cents. */
export function percentOf(amount: number, percent: number): number {
	assertCents(amount);
	return Math.sign(amount * percent) * Math.round(Math.abs(amount * percent) / 100);
}

/**
 * Splits `total` over `weights` proportionally in whole cents, the remainder going to the largest
 * shares first, so the parts always add up to the total exactly.
 */
export function allocateCents(total: number, weights: number[]): number[] {
	assertCents(total);
	const sum = weights.reduce((a, b) => a + b, 0);
	if (sum <= 0) return weights.map(() => 0);
	const raw = weights.map((w) => (total * w) / sum);
	const parts = raw.map(Math.floor);
	let rest = total - parts.reduce((a, b) => a + b, 0);
	const order = raw.map((r, i) => ({ i, frac: r - Math.floor(r) })).sort((a, b) => b.frac - a.frac);
	for (let k = 0; rest > 0; k = (k + 1) % order.length, rest--) parts[order[k].i]++;
	return parts;
}

/**
 * Digits of the minor unit (ISO 4217) where it is not 2. Intl's fraction digits are how a currency
 * is usually shown (none for HUF or IDR, which have cents), not its minor unit.
 */
const MINOR_UNIT_DIGITS: Record<string, number> = {
	...Object.fromEntries(["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"].map((c) => [c, 0])),
	...Object.fromEntries(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"].map((c) => [c, 3])),
	CLF: 4,
	UYW: 4,
};

/** Digits of a currency's minor unit: an amount of `currency` in minor units is amount / 10^digits of it. */
export function minorUnitDigits(currency: string): number {
	return Object.hasOwn(MINOR_UNIT_DIGITS, currency) ? MINOR_UNIT_DIGITS[currency] : 2;
}

/**
 * "$12.34" (1234 USD), "¥1,234" (1234 JPY) for messages and templates; amounts stay integers
 * everywhere else. Minor units are the currency's own (ISO 4217: 2 for USD, 0 for JPY, 3 for KWD).
 * Some currencies are written without their minor unit (Intl shows HUF, IDR, IQD and others in whole
 * units): an amount of whole units is shown so ("HUF 5,000"), one with a fraction with all its ISO
 * digits ("HUF 10.49"), never rounded (a refund of 49 HUF cents read "HUF 0", and lines did not add up).
 */
export function formatMoney(amount: number, currency = DEFAULT_CURRENCY, locale = "en-US"): string {
	const key = `${locale} ${currency}`;
	let entry = moneyFormats.get(key);
	if (!entry) {
		const digits = minorUnitDigits(currency);
		entry = {
			format: new Intl.NumberFormat(locale, { style: "currency", currency }),
			exact: new Intl.NumberFormat(locale, { style: "currency", currency, minimumFractionDigits: digits, maximumFractionDigits: digits }),
			perMajor: 10 ** digits,
		};
		moneyFormats.set(key, entry);
	}
	return (amount % entry.perMajor === 0 ? entry.format : entry.exact).format(amount / entry.perMajor);
}

/** Building an Intl.NumberFormat costs ~0.2 ms, formatting with one a microsecond: keep them. */
const moneyFormats = new Map<string, { format: Intl.NumberFormat; exact: Intl.NumberFormat; perMajor: number }>();
