/**
 * Human-friendly order numbers: "SH-250114-00K7" = shop prefix, UTC day, and that day's sequence in
 * Crockford base32 (no I, L, O, U: nothing to misread on the phone). The sequence comes from an
 * atomic per-day counter, and a unique index on the number backs it up.
 */

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

export const ORDER_NUMBER_PREFIX = "SH";
const SEQUENCE_WIDTH = 4;

export function toCrockfordBase32(n: number): string {
	if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`Not a non-negative integer: ${n}`);
	let out = "";
	do {
		out = CROCKFORD[n % 32] + out;
		n = Math.floor(n / 32);
	} while (n > 0);
	return out;
}

/** Decodes case-insensitively and reads O as 0 and I/L as 1, as Crockford intends. */
export function fromCrockfordBase32(s: string): number {
	let n = 0;
	for (const ch of s.toUpperCase().replace(/O/g, "0").replace(/[IL]/g, "1")) {
		const v = CROCKFORD.indexOf(ch);
		if (v < 0) throw new RangeError(`Not a Crockford base32 digit: ${ch}`);
		n = n * 32 + v;
	}
	return n;
}

/** "250114" for 2025-01-14 (UTC): the day part of the number and the key of its counter. */
export function orderNumberDay(date: Date): string {
	const y = String(date.getUTCFullYear() % 100).padStart(2, "0");
	const m = String(date.getUTCMonth() + 1).padStart(2, "0");
	const d = String(date.getUTCDate()).padStart(2, "0");
	return `${y}${m}${d}`;
}

/** The number of the `sequence`-th order (1-based) of `date`'s day. */
export function formatOrderNumber(date: Date, sequence: number): string {
	if (!Number.isSafeInteger(sequence) || sequence < 1) throw new RangeError(`Order sequence must be a positive integer, got ${sequence}`);
	return `${ORDER_NUMBER_PREFIX}-${orderNumberDay(date)}-${toCrockfordBase32(sequence).padStart(SEQUENCE_WIDTH, "0")}`;
}

const NUMBER_RE = new RegExp(`^${ORDER_NUMBER_PREFIX}-(\\d{6})-([0-9A-HJKMNP-TV-Z]{${SEQUENCE_WIDTH},})$`);

/** Day and sequence of a well-formed number, or null. */
export function parseOrderNumber(number: string): { day: string; sequence: number } | null {
	const m = NUMBER_RE.exec(number);
	return m ? { day: m[1], sequence: fromCrockfordBase32(m[2]) } : null;
}
