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
	/** Last hourly key included. */
	lastKey: string;
}

/**
 * The hourly keys a report over [from, to) reads, for bounds on whole hours (resolveRange). The
 * last key is the hour before `to`, not `to`'s own: that one may be past year 9999, whose keys
 * ("+010000-…") sort before every other and would match nothing.
 */
export function hourRange(from: Date, to: Date): HourRange {
	return { fromKey: hourKey(from), lastKey: hourKey(new Date(to.getTime() - HOUR_MS)) };
}

export const DEFAULT_RANGE_DAYS = 30;

/** The end of the last hour whose key sorts with the others ("9999-12-31T23:00:00.000Z"): reports end there at the latest. */
export const LAST_REPORT_END = new Date(Date.UTC(10_000, 0, 1));

/** Reports start in the year 1 at the earliest: 30 days before a `to` near the first date JavaScript has is none. */
export const FIRST_REPORT_START = new Date("0001-01-01T00:00:00Z");

export type RangeResult = { ok: true; from: Date; to: Date } | { ok: false; field: "from" | "to"; message: string };

function isWholeHour(at: Date): boolean {
	return bucketStart(at, "hour").getTime() === at.getTime();
}

function notOnAnHour(field: "from" | "to"): RangeResult {
	return {
		ok: false,
		field,
		message: `${field} must be on a whole hour in UTC, such as 2024-05-06T13:00:00Z or 2024-05-06: analytics counts by the hour, so a report cannot start or end inside one`,
	};
}

/**
 * Report range [from, to), both on whole UTC hours: counters are hourly, so a bound inside an hour
 * could only be widened to it (and two adjacent reports would count that hour twice). `to`
 * defaults to the end of the hour under way (what is counted so far), `from` to 30 days before
 * `to`, moved back to the start of its `interval` bucket: the first day or week of a default report
 * is a whole one, not part of one labelled as the whole. A `to` after the last hour of year 9999
 * ("9999-12-31T23:59:59Z" for "no end") stands for the end of that hour: no counter is later.
 */
export function resolveRange(from: Date | undefined, to: Date | undefined, now: Date = new Date(), interval: Interval = "hour"): RangeResult {
	if (from && !Number.isFinite(from.getTime())) return { ok: false, field: "from", message: "from is not a valid date" };
	if (to && !Number.isFinite(to.getTime())) return { ok: false, field: "to", message: "to is not a valid date" };
	for (const [field, at] of [["from", from], ["to", to]] as const) {
		if (at && at.getTime() < FIRST_REPORT_START.getTime()) return { ok: false, field, message: `${field} must be in the year 1 or later` };
	}
	if (from && !isWholeHour(from)) return notOnAnHour("from");
	if (from && from.getTime() >= LAST_REPORT_END.getTime()) return { ok: false, field: "from", message: "from must be before the year 10000" };
	const lastHourStart = LAST_REPORT_END.getTime() - HOUR_MS;
	let end: number;
	if (!to) end = Math.min(Math.ceil(now.getTime() / HOUR_MS) * HOUR_MS, LAST_REPORT_END.getTime());
	else if (to.getTime() > lastHourStart) end = LAST_REPORT_END.getTime();
	else if (!isWholeHour(to)) return notOnAnHour("to");
	else end = to.getTime();
	const defaultStart = end - DEFAULT_RANGE_DAYS * DAY_MS;
	const start = from ?? (defaultStart < FIRST_REPORT_START.getTime() ? FIRST_REPORT_START : bucketStart(new Date(defaultStart), interval));
	if (start.getTime() >= end) {
		// Without a `to`, the range ends now: the `from` given is what is wrong.
		if (!to) return { ok: false, field: "from", message: "from must be before the end of the current hour (to is not given)" };
		return { ok: false, field: "to", message: "to must be after from" };
	}
	return { ok: true, from: start, to: new Date(end) };
}
