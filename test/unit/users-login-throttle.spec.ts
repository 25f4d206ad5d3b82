/** Login throttling per account: 5 failures in 15 minutes lock the account until the window ends. */
import { LOGIN_THROTTLE, LoginFailureStore, attemptWaitSeconds, recordFailure, retryAfterSeconds, throttleKey, type FailureState } from "../../lib/login-throttle";

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

	test.each<[string, FailureState, number, number]>([
		["the first attempt", { count: 1, since: t0 }, t0, 0],
		["the fifth attempt goes on", { count: 5, since: t0 }, t0 + MIN, 0],
		["the sixth waits for the window to end", { count: 6, since: t0 }, t0 + MIN, 14 * 60],
		["the twentieth too", { count: 20, since: t0 }, t0 + 15 * MIN - 500, 1],
	])("attemptWaitSeconds (the attempt counted in the state): %s", (_label, state, now, expected) => {
		expect(attemptWaitSeconds(state, now)).toBe(expected);
	});

	test("keys are per normalised email and client address", () => {
		expect(throttleKey("  Jane@Example.COM ", "203.0.113.7")).toBe("login-fail:jane@example.com|203.0.113.7");
		expect(throttleKey("jane@example.com", "203.0.113.7")).not.toBe(throttleKey("jane@example.com", "198.51.100.2"));
	});
});

describe("the failure store of one process", () => {
	const fail = (store: LoginFailureStore, key: string, now: number) => store.set(key, recordFailure(store.get(key, now), now), now);
	const locked = (store: LoginFailureStore, key: string, now: number) => retryAfterSeconds(store.get(key, now), now) > 0;

	test("keeps a state until its window ends, then forgets it", () => {
		const store = new LoginFailureStore(10);
		for (let i = 0; i < 5; i++) fail(store, "victim", t0 + i * 1000);
		expect(locked(store, "victim", t0 + 14 * MIN)).toBe(true);
		expect(store.get("victim", t0 + 15 * MIN)).toBeNull();
		expect(store.size).toBe(0);
	});

	test("full, it lets go of the states closest to their end; a lock newer than those stays", () => {
		const store = new LoginFailureStore(3);
		fail(store, "a", t0);
		fail(store, "b", t0 + MIN);
		for (let i = 0; i < 5; i++) fail(store, "victim", t0 + 2 * MIN + i);
		// More failures in the same window do not make an old state look new.
		fail(store, "a", t0 + 3 * MIN);
		fail(store, "c", t0 + 4 * MIN);
		expect(store.size).toBe(3);
		expect(store.get("a", t0 + 4 * MIN)).toBeNull();
		expect(store.get("b", t0 + 4 * MIN)).toEqual({ count: 1, since: t0 + MIN });
		expect(locked(store, "victim", t0 + 4 * MIN)).toBe(true);
	});

	test("expired states go first, whatever the bound", () => {
		const store = new LoginFailureStore(100);
		for (let i = 0; i < 50; i++) fail(store, `old-${i}`, t0 + i);
		fail(store, "new", t0 + 16 * MIN);
		expect(store.size).toBe(1);
	});

	test("never holds more than its bound, however many keys come", () => {
		const store = new LoginFailureStore(1_000);
		for (let i = 0; i < 20_000; i++) fail(store, `k-${i}`, t0 + i * 10);
		expect(store.size).toBe(1_000);
		expect(store.get("k-19999", t0 + 200_000)).toEqual({ count: 1, since: t0 + 199_990 });
	});

	test("a new window moves a key to the end of the line", () => {
		const store = new LoginFailureStore(2);
		fail(store, "a", t0);
		fail(store, "b", t0 + 10 * MIN);
		// a's window is over: its next failure opens one that ends after b's.
		fail(store, "a", t0 + 16 * MIN);
		fail(store, "c", t0 + 17 * MIN);
		expect(store.get("b", t0 + 17 * MIN)).toBeNull();
		expect(store.get("a", t0 + 17 * MIN)).toEqual({ count: 1, since: t0 + 16 * MIN });
	});

	test("countFailure counts in one step: the first five attempts go on, the rest wait, and a new window starts over", () => {
		const store = new LoginFailureStore();
		const waits = Array.from({ length: 7 }, (_, i) => attemptWaitSeconds(store.countFailure("victim", t0 + i), t0 + i));
		expect(waits.map((w) => w > 0)).toEqual([false, false, false, false, false, true, true]);
		expect(store.get("victim", t0 + 10)).toEqual({ count: 7, since: t0 });
		expect(store.countFailure("victim", t0 + 15 * MIN)).toEqual({ count: 1, since: t0 + 15 * MIN });
	});

	test("delete forgets at once", () => {
		const store = new LoginFailureStore();
		fail(store, "a", t0);
		store.delete("a");
		expect(store.get("a", t0)).toBeNull();
	});
});
