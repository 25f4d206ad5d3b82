/**
 * Time buckets in UTC, keyed by the ISO string of their start ("2024-05-06T13:00:00.000Z"), so keys
 * sort and compare as strings in the same order as the times they stand for.
 */
export type Interval = "hour" | "day" | "week";

export const INTERVALS: readonly Interval[] = ["hour", "day", "week"];

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** Start of the bucket holding `at`; weeks start on Monday (ISO 8601). */
export function bucketStart(at: Date, interval: Interval): Date {
	const t = at.getTime();
	if (!Number.isFinite(t)) throw new RangeError("invalid date");
	switch (interval) {
		case "hour":
			return new Date(Math.floor(t / HOUR_MS) * HOUR_MS);
		case "day":
			return new Date(Math.floor(t / DAY_MS) * DAY_MS);
		case "week": {
			const day = new Date(Math.floor(t / DAY_MS) * DAY_MS);
			const sinceMonday = (day.getUTCDay() + 6) % 7;
			return new Date(day.getTime() - sinceMonday * DAY_MS);
		}
	}
}

export function bucketKey(at: Date, interval: Interval): string {
	return bucketStart(at, interval).toISOString();
}

export function hourKey(at: Date): string {
	return bucketKey(at, "hour");
}

/** The day or week bucket an hourly bucket rolls up into. */
export function rollUp(hourBucket: string, interval: Interval): string {
	return bucketKey(new Date(hourBucket), interval);
}

export interface HourRange {
	/** First hourly key included. */
	fromKey: string;
	/** First hourly key no longer included. */
	toKey: string;
}

/**
 * The hourly keys a report over [from, to) reads: `from` rounds down to its hour, and an hour that
 * starts before `to` counts whole (hourly buckets are the finest grain stored).
 */
export function hourRange(from: Date, to: Date): HourRange {
	const start = bucketStart(from, "hour");
	const lastStart = bucketStart(new Date(to.getTime() - 1), "hour");
	return { fromKey: start.toISOString(), toKey: new Date(lastStart.getTime() + HOUR_MS).toISOString() };
}

export const DEFAULT_RANGE_DAYS = 30;

export type RangeResult = { ok: true; from: Date; to: Date } | { ok: false; field: "from" | "to"; message: string };

/** Report range: `to` defaults to now, `from` to 30 days before `to`; `from` must precede `to`. */
export function resolveRange(from: Date | undefined, to: Date | undefined, now: Date = new Date()): RangeResult {
	const end = to ?? now;
	const start = from ?? new Date(end.getTime() - DEFAULT_RANGE_DAYS * DAY_MS);
	if (!Number.isFinite(start.getTime())) return { ok: false, field: "from", message: "from is not a valid date" };
	if (!Number.isFinite(end.getTime())) return { ok: false, field: "to", message: "to is not a valid date" };
	if (start.getTime() >= end.getTime()) return { ok: false, field: "to", message: "to must be after from" };
	return { ok: true, from: start, to: end };
}
