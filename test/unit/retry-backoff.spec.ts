import { backoffBounds, backoffDelay, isTransientStatus, nextRetry, type BackoffOptions } from "../../lib/retry-backoff";

const opts: BackoffOptions = { baseMs: 1000, factor: 2, maxMs: 60_000, jitter: 0.2 };

describe("retry backoff", () => {
	test.each([
		[1, 800, 1200],
		[2, 1600, 2400],
		[3, 3200, 4800],
		[6, 25_600, 38_400],
		// Capped: the exact delay stops at maxMs, and jitter never goes past it.
		[7, 48_000, 60_000],
		[50, 48_000, 60_000],
		[10_000, 48_000, 60_000],
		[0, 800, 1200],
	])("retry %i waits between %i and %i ms", (retry, min, max) => {
		expect(backoffBounds(retry, opts)).toEqual({ min, max });
	});

	test.each([
		[0, 800],
		[0.5, 1000],
		[0.999999, 1200],
	])("random %f picks %i within the bounds", (r, expected) => {
		expect(backoffDelay(1, opts, () => r)).toBe(expected);
	});

	test("without jitter the delay is exact", () => {
		expect(backoffBounds(3, { ...opts, jitter: 0 })).toEqual({ min: 4000, max: 4000 });
		expect(backoffBounds(3, { ...opts, jitter: 5 })).toEqual({ min: 0, max: 8000 });
	});

	test.each([
		[1, 5, false, true],
		[4, 5, false, true],
		[5, 5, false, false],
		[9, 5, false, false],
		[1, 5, true, false],
	])("after %i attempts of %i (permanent: %s) retry is %s", (made, max, permanent, retry) => {
		const now = new Date("2024-01-01T00:00:00Z");
		const d = nextRetry(made, max, now, { ...opts, jitter: 0 }, permanent);
		expect(d.retry).toBe(retry);
		if (d.retry) {
			expect(d.delayMs).toBe(Math.min(60_000, 1000 * 2 ** (made - 1)));
			expect(d.at.getTime()).toBe(now.getTime() + d.delayMs);
		}
	});

	test.each([
		[undefined, true],
		[500, true],
		[503, true],
		[429, true],
		[408, true],
		[400, false],
		[401, false],
		[404, false],
		[422, false],
	])("status %s is transient: %s", (status, transient) => {
		expect(isTransientStatus(status)).toBe(transient);
	});
});
