import { DEFAULT_BACKOFF, backoffBounds, backoffDelay, isTransientStatus, nextRetry, retryAfterMs, type BackoffOptions } from "../../lib/retry-backoff";
import { readNotificationConfig } from "../../adapters/channels";

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
		const d = nextRetry({ attempts: made, since: now, permanent }, { maxAttempts: max, windowMs: Infinity }, now, { ...opts, jitter: 0 });
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

	describe("a provider's Retry-After", () => {
		const now = new Date("2024-01-01T00:00:00Z");
		const since = now;
		const limits = { maxAttempts: 5, windowMs: Infinity };

		test.each([
			["60", 60_000],
			[" 0 ", 0],
			["Mon, 01 Jan 2024 00:02:00 GMT", 120_000],
			// A date already past: no wait of its own.
			["Sun, 31 Dec 2023 23:00:00 GMT", 0],
			["-5", null],
			["1.5", null],
			["soon", null],
			["", null],
			[undefined, null],
			[null, null],
		])("%j is %s ms", (header, ms) => {
			expect(retryAfterMs(header, now)).toBe(ms);
		});

		test("the next attempt is not before it, even when the backoff is shorter", () => {
			const d = nextRetry({ attempts: 1, since, retryAfterMs: 60_000 }, limits, now, { ...opts, jitter: 0.2 }, () => 0.5);
			expect(d.retry && d.delayMs).toBeGreaterThanOrEqual(60_000);
			// Spread after it (never before), so that messages throttled together do not come back together.
			expect(d.retry && d.delayMs).toBeLessThanOrEqual(60_000 * 1.2);
			const low = nextRetry({ attempts: 1, since, retryAfterMs: 60_000 }, limits, now, { ...opts, jitter: 0.2 }, () => 0);
			expect(low.retry && low.delayMs).toBe(60_000);
		});

		test("it is capped at the backoff's cap; a longer backoff wins over a shorter one", () => {
			const capped = nextRetry({ attempts: 1, since, retryAfterMs: 24 * 3600_000 }, limits, now, { ...opts, jitter: 0 });
			expect(capped.retry && capped.delayMs).toBe(60_000);
			const backoff = nextRetry({ attempts: 4, since, retryAfterMs: 1_000 }, limits, now, { ...opts, jitter: 0 });
			expect(backoff.retry && backoff.delayMs).toBe(8_000);
		});

		test("five attempts each told to wait 60 s span four minutes, not 30 s", () => {
			let at = since;
			let attempts = 1;
			for (let d = nextRetry({ attempts, since, retryAfterMs: 60_000 }, limits, at, DEFAULT_BACKOFF); d.retry; d = nextRetry({ attempts, since, retryAfterMs: 60_000 }, limits, at, DEFAULT_BACKOFF)) {
				at = d.at;
				attempts++;
			}
			expect(attempts).toBe(5);
			expect(at.getTime() - since.getTime()).toBeGreaterThanOrEqual(4 * 60_000);
		});
	});

	describe("the retry window", () => {
		const since = new Date("2024-01-01T00:00:00Z");
		const minutes = (n: number) => new Date(since.getTime() + n * 60_000);

		test("retried while the window lasts, whatever the number of attempts; the first failure past it is the last", () => {
			const limits = { maxAttempts: Infinity, windowMs: 60 * 60_000 };
			expect(nextRetry({ attempts: 40, since }, limits, minutes(59), DEFAULT_BACKOFF).retry).toBe(true);
			expect(nextRetry({ attempts: 40, since }, limits, minutes(60), DEFAULT_BACKOFF).retry).toBe(false);
			// NOTIFY_MAX_ATTEMPTS, when set, still ends it sooner.
			expect(nextRetry({ attempts: 5, since }, { ...limits, maxAttempts: 5 }, minutes(1), DEFAULT_BACKOFF).retry).toBe(false);
		});

		test("with the default settings, a message outlasts a provider outage of an hour", () => {
			const cfg = readNotificationConfig({});
			const limits = { maxAttempts: cfg.maxAttempts, windowMs: cfg.retryWindowMs };
			let at = since;
			let attempts = 1;
			// The shortest delays the jitter allows: the soonest a message could be given up.
			for (let d = nextRetry({ attempts, since }, limits, at, DEFAULT_BACKOFF, () => 0); d.retry; d = nextRetry({ attempts, since }, limits, at, DEFAULT_BACKOFF, () => 0)) {
				at = d.at;
				attempts++;
			}
			expect(at.getTime() - since.getTime()).toBeGreaterThanOrEqual(60 * 60_000);
		});
	});
});
