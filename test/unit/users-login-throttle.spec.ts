/** Login throttling per account: 5 failures in 15 minutes lock the account until the window ends. */
import { LOGIN_THROTTLE, recordFailure, retryAfterSeconds, stateTtlSeconds, throttleKey, type FailureState } from "../../lib/login-throttle";

const MIN = 60_000;
const t0 = 1_700_000_000_000;

describe("login throttle", () => {
	test("the policy is 5 failures per 15 minutes", () => {
		expect(LOGIN_THROTTLE).toEqual({ maxFailures: 5, windowMs: 15 * MIN });
	});

	test.each<[string, FailureState | null, number, number]>([
		["no failures", null, t0, 0],
		["4 failures", { count: 4, since: t0 }, t0 + MIN, 0],
		["5 failures, just after the first", { count: 5, since: t0 }, t0 + 1000, 15 * 60 - 1],
		["5 failures, 14 minutes later", { count: 5, since: t0 }, t0 + 14 * MIN, 60],
		["5 failures, window over", { count: 5, since: t0 }, t0 + 15 * MIN, 0],
		["9 failures, half a second before the end", { count: 9, since: t0 }, t0 + 15 * MIN - 500, 1],
	])("retryAfterSeconds: %s", (_label, state, now, expected) => {
		expect(retryAfterSeconds(state, now)).toBe(expected);
	});

	test.each<[string, FailureState | null, number, FailureState]>([
		["first failure opens a window", null, t0, { count: 1, since: t0 }],
		["within the window it counts up", { count: 2, since: t0 }, t0 + 5 * MIN, { count: 3, since: t0 }],
		["after the window it starts over", { count: 5, since: t0 }, t0 + 15 * MIN, { count: 1, since: t0 + 15 * MIN }],
	])("recordFailure: %s", (_label, state, now, expected) => {
		expect(recordFailure(state, now)).toEqual(expected);
	});

	test("five failures lock, the sixth attempt waits", () => {
		let state: FailureState | null = null;
		for (let i = 0; i < 5; i++) {
			expect(retryAfterSeconds(state, t0 + i * 1000)).toBe(0);
			state = recordFailure(state, t0 + i * 1000);
		}
		expect(retryAfterSeconds(state, t0 + 5000)).toBeGreaterThan(0);
	});

	test("the state lives in the cacher until its window ends", () => {
		expect(stateTtlSeconds({ count: 1, since: t0 }, t0)).toBe(15 * 60);
		expect(stateTtlSeconds({ count: 1, since: t0 }, t0 + 15 * MIN + 5)).toBe(1);
	});

	test("keys are per normalised email and client address", () => {
		expect(throttleKey("  Jane@Example.COM ", "203.0.113.7")).toBe("login-fail:jane@example.com|203.0.113.7");
		expect(throttleKey("jane@example.com", "203.0.113.7")).not.toBe(throttleKey("jane@example.com", "198.51.100.2"));
	});
});
