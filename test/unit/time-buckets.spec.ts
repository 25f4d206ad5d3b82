/** UTC hour/day/week buckets, roll-ups and report ranges. */
import { bucketKey, hourKey, hourRange, LAST_REPORT_END, resolveRange, rollUp, type Interval } from "../../lib/time-buckets";

describe("time buckets", () => {
	test.each<[string, Interval, string]>([
		["2024-05-08T13:45:12.345Z", "hour", "2024-05-08T13:00:00.000Z"],
		["2024-05-08T13:00:00.000Z", "hour", "2024-05-08T13:00:00.000Z"],
		["2024-05-08T23:59:59.999Z", "day", "2024-05-08T00:00:00.000Z"],
		// Wednesday → Monday of that week
		["2024-05-08T13:45:00.000Z", "week", "2024-05-06T00:00:00.000Z"],
		// Monday stays, Sunday goes back six days
		["2024-05-06T00:00:00.000Z", "week", "2024-05-06T00:00:00.000Z"],
		["2024-05-12T23:00:00.000Z", "week", "2024-05-06T00:00:00.000Z"],
		// across a year boundary
		["2025-01-01T10:00:00.000Z", "week", "2024-12-30T00:00:00.000Z"],
		// local offsets do not matter: the instant decides
		["2024-05-08T01:30:00+03:00", "day", "2024-05-07T00:00:00.000Z"],
	])("%s by %s → %s", (at, interval, expected) => expect(bucketKey(new Date(at), interval)).toBe(expected));

	test("keys sort like the times they stand for", () => {
		const keys = ["2024-05-08T09:00:00Z", "2024-05-08T10:00:00Z", "2024-12-01T00:00:00Z"].map((s) => hourKey(new Date(s)));
		expect([...keys].sort()).toEqual(keys);
	});

	test.each<[Interval, string]>([
		["hour", "2024-05-08T13:00:00.000Z"],
		["day", "2024-05-08T00:00:00.000Z"],
		["week", "2024-05-06T00:00:00.000Z"],
	])("an hourly key rolls up by %s to %s", (interval, expected) => expect(rollUp("2024-05-08T13:00:00.000Z", interval)).toBe(expected));

	test("an invalid date is refused", () => expect(() => hourKey(new Date("nope"))).toThrow(RangeError));

	test.each([
		["2024-05-08T13:00:00Z", "2024-05-08T15:00:00Z", "2024-05-08T13:00:00.000Z", "2024-05-08T14:00:00.000Z"],
		["2024-05-08T13:00:00Z", "2024-05-08T14:00:00Z", "2024-05-08T13:00:00.000Z", "2024-05-08T13:00:00.000Z"],
		// The end of year 9999: to's own key would be "+010000-01-01T…", which sorts before every other key.
		["2024-05-08T13:00:00Z", "+010000-01-01T00:00:00Z", "2024-05-08T13:00:00.000Z", "9999-12-31T23:00:00.000Z"],
	])("hourRange(%s, %s) reads the hours from %s to %s", (from, to, fromKey, lastKey) => {
		expect(hourRange(new Date(from), new Date(to))).toEqual({ fromKey, lastKey });
	});

	test("resolveRange: defaults to the last 30 days up to the end of the hour under way, and from must precede to", () => {
		const now = new Date("2024-05-31T12:34:56Z");
		const end = new Date("2024-05-31T13:00:00Z");
		expect(resolveRange(undefined, undefined, now)).toEqual({ ok: true, from: new Date("2024-05-01T13:00:00Z"), to: end });
		// Exactly on the hour, the hour that starts now has nothing yet.
		expect(resolveRange(undefined, undefined, new Date("2024-05-31T12:00:00Z"))).toMatchObject({ ok: true, to: new Date("2024-05-31T12:00:00Z") });
		expect(resolveRange(new Date("2024-05-31T12:00:00Z"), undefined, now)).toEqual({ ok: true, from: new Date("2024-05-31T12:00:00Z"), to: end });
		const to = new Date("2024-02-10T00:00:00Z");
		expect(resolveRange(undefined, to, now)).toEqual({ ok: true, from: new Date("2024-01-11T00:00:00Z"), to });
		expect(resolveRange(to, to, now)).toMatchObject({ ok: false, field: "to" });
		// A from in the future with no to: the from is what is wrong, not a to never sent.
		expect(resolveRange(new Date("2027-01-01T00:00:00Z"), undefined, now)).toMatchObject({ ok: false, field: "from" });
		expect(resolveRange(new Date("x"), undefined, now)).toMatchObject({ ok: false, field: "from" });
	});
	test("resolveRange: a default range starts on a whole bucket of the interval, so its first day or week is not part of one", () => {
		// Sunday 2024-05-26 13:20: 30 days back is Friday 2024-04-26 14:00.
		const now = new Date("2024-05-26T13:20:00Z");
		const to = new Date("2024-05-26T14:00:00Z");
		expect(resolveRange(undefined, undefined, now, "hour")).toEqual({ ok: true, from: new Date("2024-04-26T14:00:00Z"), to });
		expect(resolveRange(undefined, undefined, now, "day")).toEqual({ ok: true, from: new Date("2024-04-26T00:00:00Z"), to });
		expect(resolveRange(undefined, undefined, now, "week")).toEqual({ ok: true, from: new Date("2024-04-22T00:00:00Z"), to });
		// A `from` given is kept as given.
		expect(resolveRange(new Date("2024-05-26T13:00:00Z"), undefined, now, "week")).toEqual({ ok: true, from: new Date("2024-05-26T13:00:00Z"), to });
	});


	// Counters are hourly: a bound inside an hour could only be widened to it, and two adjacent
	// ranges would then both count that hour.
	test.each([
		["2024-05-08T02:30:00Z", "2024-05-08T03:00:00Z", "from"],
		["2024-05-08T02:00:00Z", "2024-05-08T02:30:00Z", "to"],
		["2024-05-08T02:00:00Z", "2024-05-08T02:00:00.001Z", "to"],
		["2024-05-08T00:00:00+05:30", "2024-05-09T00:00:00+05:30", "from"],
		["2024-05-08T02:30:00Z", "2024-05-08T02:31:00Z", "from"],
	])("resolveRange(%s, %s) is refused on %s: not a whole hour", (from, to, field) => {
		const res = resolveRange(new Date(from), new Date(to));
		expect(res).toMatchObject({ ok: false, field });
		expect(!res.ok && res.message).toMatch(new RegExp(`^${field} must be on a whole hour in UTC.*counts by the hour`));
	});

	test.each([
		["2024-05-08", "2024-05-09", "2024-05-08T00:00:00.000Z", "2024-05-09T00:00:00.000Z"],
		["2024-05-08T05:00:00+02:00", "2024-05-08T12:00:00-01:00", "2024-05-08T03:00:00.000Z", "2024-05-08T13:00:00.000Z"],
	])("dates and whole hours with an offset that lands on a UTC hour are kept: %s to %s", (from, to, fromIso, toIso) => {
		expect(resolveRange(new Date(from), new Date(to))).toEqual({ ok: true, from: new Date(fromIso), to: new Date(toIso) });
	});

	test.each(["9999-12-31T23:59:59Z", "9999-12-31T23:00:00.001Z", "+010000-01-01T00:00:00Z", "+010000-01-01T01:00:00Z", "+275760-09-13T00:00:00Z"])(
		"a to at the end of year 9999 or later (%s) reads up to the last hour there is",
		(to) => {
			const res = resolveRange(new Date("2024-05-08T00:00:00Z"), new Date(to));
			expect(res).toEqual({ ok: true, from: new Date("2024-05-08T00:00:00Z"), to: LAST_REPORT_END });
			expect(res.ok && hourRange(res.from, res.to).lastKey).toBe("9999-12-31T23:00:00.000Z");
		},
	);

	test.each([
		["-271821-05-01T00:00:00Z", "hour"],
		["-271821-05-24T00:00:00Z", "week"],
		["0000-12-31T23:00:00Z", "day"],
	] as const)("a to before the year 1 (%s, by %s) is refused, not thrown on (30 days before it may be no date)", (to, interval) => {
		expect(resolveRange(undefined, new Date(to), new Date(), interval)).toMatchObject({ ok: false, field: "to" });
		expect(resolveRange(new Date(to), undefined, new Date(), interval)).toMatchObject({ ok: false, field: "from" });
		expect(resolveRange(undefined, new Date("0001-01-01T00:00:00Z"), new Date(), interval)).toMatchObject({ ok: false, field: "to", message: "to must be after from" });
	});

	test("the last hour of year 9999 is kept as a to; a from after it is refused", () => {
		expect(resolveRange(new Date("2024-05-08T00:00:00Z"), new Date("9999-12-31T23:00:00Z"))).toMatchObject({ ok: true, to: new Date("9999-12-31T23:00:00Z") });
		expect(resolveRange(new Date("9999-12-31T23:00:00Z"), new Date("9999-12-31T23:59:59Z"))).toMatchObject({ ok: true, to: LAST_REPORT_END });
		expect(resolveRange(new Date("+010000-01-01T00:00:00Z"), undefined)).toMatchObject({ ok: false, field: "from" });
	});
});
