/** UTC hour/day/week buckets, roll-ups and report ranges. */
import { bucketKey, hourKey, hourRange, resolveRange, rollUp, type Interval } from "../../lib/time-buckets";

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
		["2024-05-08T13:20:00Z", "2024-05-08T15:00:00Z", "2024-05-08T13:00:00.000Z", "2024-05-08T15:00:00.000Z"],
		["2024-05-08T13:20:00Z", "2024-05-08T15:00:00.001Z", "2024-05-08T13:00:00.000Z", "2024-05-08T16:00:00.000Z"],
		["2024-05-08T13:00:00Z", "2024-05-08T13:00:01Z", "2024-05-08T13:00:00.000Z", "2024-05-08T14:00:00.000Z"],
	])("hourRange(%s, %s) reads [%s, %s)", (from, to, fromKey, toKey) => {
		expect(hourRange(new Date(from), new Date(to))).toEqual({ fromKey, toKey });
	});

	test("resolveRange: defaults to the last 30 days, and from must precede to", () => {
		const now = new Date("2024-05-31T12:00:00Z");
		expect(resolveRange(undefined, undefined, now)).toEqual({ ok: true, from: new Date("2024-05-01T12:00:00Z"), to: now });
		const to = new Date("2024-02-10T00:00:00Z");
		expect(resolveRange(undefined, to, now)).toEqual({ ok: true, from: new Date("2024-01-11T00:00:00Z"), to });
		expect(resolveRange(to, to, now)).toMatchObject({ ok: false, field: "to" });
		expect(resolveRange(new Date("x"), undefined, now)).toMatchObject({ ok: false, field: "from" });
	});
});
