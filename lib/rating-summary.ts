/**
 * A product's rating summary over its approved reviews. It is stored as counters (count, sum and
 * one count per star), counted again from the approved reviews after each status change (so a
 * change finished twice after a crash counts once); average and histogram are derived from them.
 */
export const STARS = [1, 2, 3, 4, 5] as const;
export type Star = (typeof STARS)[number];

export type Histogram = Record<"1" | "2" | "3" | "4" | "5", number>;

export interface RatingSummary {
	/** Mean rating rounded to two decimals; 0 without reviews. */
	average: number;
	count: number;
	histogram: Histogram;
}

/** What is stored per product: plain counters, each moved by `$inc`. */
export interface RatingCounters {
	count: number;
	sum: number;
	r1: number;
	r2: number;
	r3: number;
	r4: number;
	r5: number;
}

export function isStar(value: unknown): value is Star {
	return typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= 5;
}

export function emptyCounters(): RatingCounters {
	return { count: 0, sum: 0, r1: 0, r2: 0, r3: 0, r4: 0, r5: 0 };
}

/**
 * The `$inc` that adds (direction 1) or removes (direction -1) one rating: count, sum and the
 * star's bucket move together in one update.
 */
export function ratingIncrement(rating: number, direction: 1 | -1): Record<keyof RatingCounters, number> {
	if (!isStar(rating)) throw new RangeError(`rating must be an integer 1..5, got ${rating}`);
	const inc = { count: direction, sum: direction * rating, r1: 0, r2: 0, r3: 0, r4: 0, r5: 0 };
	inc[`r${rating}` as keyof RatingCounters] = direction;
	return inc;
}

/** Applies one increment to counters in memory (the same arithmetic the store's `$inc` does). */
export function applyRating(counters: RatingCounters, rating: number, direction: 1 | -1): RatingCounters {
	const inc = ratingIncrement(rating, direction);
	const out = { ...counters };
	for (const key of Object.keys(inc) as Array<keyof RatingCounters>) out[key] = (out[key] ?? 0) + inc[key];
	return out;
}

export function countRatings(ratings: number[]): RatingCounters {
	return ratings.reduce((acc, r) => applyRating(acc, r, 1), emptyCounters());
}

export function averageOf(sum: number, count: number): number {
	return count > 0 ? Math.round((sum * 100) / count) / 100 : 0;
}

/** Summary from stored counters; missing counters (a product without reviews) read as 0. */
export function summaryFromCounters(counters: Partial<RatingCounters> | null | undefined): RatingSummary {
	const c = { ...emptyCounters(), ...(counters ?? {}) };
	return {
		average: averageOf(c.sum, c.count),
		count: c.count,
		histogram: { "1": c.r1, "2": c.r2, "3": c.r3, "4": c.r4, "5": c.r5 },
	};
}

/** The recount: a summary straight from a list of ratings. */
export function summarize(ratings: number[]): RatingSummary {
	return summaryFromCounters(countRatings(ratings));
}

/** What a consumer of `review.moderated` stores of it: the product's rating now, and its version. */
export interface ProductRatingUpdate {
	productId: string;
	rating: { average: number; count: number };
	/** Grows with every change of the product's rating; absent in events older than it. */
	version: number | null;
}

/** The rating a `review.moderated` payload carries, or null when the payload is not one. */
export function productRatingUpdate(payload: unknown): ProductRatingUpdate | null {
	const p = payload as { productId?: unknown; rating?: { average?: unknown; count?: unknown } | null; ratingVersion?: unknown } | null;
	if (!p || typeof p.productId !== "string" || !p.productId || !p.rating || typeof p.rating !== "object") return null;
	const { average, count } = p.rating;
	if (!Number.isSafeInteger(count) || (count as number) < 0) return null;
	if (average !== null && average !== undefined && (typeof average !== "number" || !Number.isFinite(average) || average < 0 || average > 5)) return null;
	const version = Number.isSafeInteger(p.ratingVersion) ? (p.ratingVersion as number) : null;
	return { productId: p.productId, rating: { average: (average as number | null | undefined) ?? 0, count: count as number }, version };
}
