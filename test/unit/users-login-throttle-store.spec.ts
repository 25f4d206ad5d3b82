/**
 * The login throttle's stores: a failure is counted in one step of the store, so parallel failures
 * are all counted (a read and then a write let every parallel guess read the same count). The Redis
 * store against a real redis-server: test/infra/login-throttle-redis.spec.ts.
 */
import { LOGIN_THROTTLE, LoginFailureStore, attemptWaitSeconds } from "../../lib/login-throttle";
import { cacherLoginThrottleStore, memoryLoginThrottleStore } from "../../adapters/login-throttle-store";
import { ServiceUnavailableError } from "../../lib/errors";

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe("the store of one process", () => {
	test("parallel failures are all counted: 12 at once count 1 to 12, and only the first five go on", async () => {
		const store = memoryLoginThrottleStore(new LoginFailureStore());
		const now = Date.now();
		const counted = await Promise.all(range(12).map(() => store.countFailure("login-fail:a@b.c|1.2.3.4", now)));
		expect(counted.map((s) => s.count).sort((a, b) => a - b)).toEqual(range(12));
		expect(counted.filter((s) => attemptWaitSeconds(s, now) === 0)).toHaveLength(LOGIN_THROTTLE.maxFailures);
		// Another key has a count of its own; del forgets one key.
		expect((await store.countFailure("login-fail:a@b.c|5.6.7.8", now)).count).toBe(1);
		await store.del("login-fail:a@b.c|1.2.3.4");
		expect(await store.countFailure("login-fail:a@b.c|1.2.3.4", now)).toEqual({ count: 1, since: now });
	});

	test("an attempt taken back leaves one count less in the same window; none is never less than none", async () => {
		const store = memoryLoginThrottleStore(new LoginFailureStore());
		const now = Date.now();
		for (const _ of range(3)) await store.countFailure("k", now);
		await store.uncountFailure("k", now + 1000);
		expect(await store.countFailure("k", now + 2000)).toEqual({ count: 3, since: now });
		await store.uncountFailure("none", now);
		await store.uncountFailure("one", now);
		expect(await store.countFailure("one", now)).toEqual({ count: 1, since: now });
		await store.uncountFailure("one", now);
		await store.uncountFailure("one", now);
		expect(await store.countFailure("one", now)).toEqual({ count: 1, since: now });
	});
});

describe("the store in the Redis cacher", () => {
	/** A RedisCacher as far as the store uses it, whose client records its commands and answers as told. */
	function fakeCacher(reply: (args: unknown[]) => Promise<unknown>) {
		const calls: unknown[][] = [];
		const client = {
			eval: (...args: unknown[]) => (calls.push(["eval", ...args]), reply(args)),
			del: (...args: unknown[]) => (calls.push(["del", ...args]), Promise.resolve(1)),
		};
		return { cacher: { connected: true, prefix: "shop-cache-", client } as any, calls };
	}

	test("a failure is one script call (INCR and the window's expiry together) under the cacher's prefix; its reply is the state", async () => {
		const { cacher, calls } = fakeCacher(() => Promise.resolve([6, 60_000]));
		const store = cacherLoginThrottleStore(cacher);
		const now = 1_700_000_000_000;
		const state = await store.countFailure("login-fail:a@b.c|1.2.3.4", now);
		expect(calls).toHaveLength(1);
		const [command, script, keys, key, windowMs] = calls[0] as [string, string, number, string, string];
		expect([command, keys, key, windowMs]).toEqual(["eval", 1, "shop-cache-login-fail:a@b.c|1.2.3.4:count", String(LOGIN_THROTTLE.windowMs)]);
		expect(script).toMatch(/INCR/);
		expect(script).toMatch(/PEXPIRE/);
		// A minute of the window left: it opened 14 minutes ago; the sixth attempt waits that minute.
		expect(state).toEqual({ count: 6, since: now - 14 * 60_000 });
		expect(attemptWaitSeconds(state, now)).toBe(60);

		await store.del("login-fail:a@b.c|1.2.3.4");
		expect(calls[1]).toEqual(["del", "shop-cache-login-fail:a@b.c|1.2.3.4:count"]);

		// Taking an attempt back is one script too (a read and a write would race the counts).
		await store.uncountFailure("login-fail:a@b.c|1.2.3.4", now);
		const [command2, script2, keys2, key2] = calls[2] as [string, string, number, string];
		expect([command2, keys2, key2]).toEqual(["eval", 1, "shop-cache-login-fail:a@b.c|1.2.3.4:count"]);
		expect(script2).toMatch(/DECR/);
	});

	test("fails closed: a cacher that is not connected is a 503 at once, a Redis that does not answer a 503 after the wait", async () => {
		const down = fakeCacher(() => Promise.resolve([1, 1000]));
		down.cacher.connected = false;
		await expect(cacherLoginThrottleStore(down.cacher).countFailure("k", Date.now())).rejects.toBeInstanceOf(ServiceUnavailableError);
		expect(down.calls).toHaveLength(0);

		const silent = fakeCacher(() => new Promise(() => undefined));
		const started = Date.now();
		await expect(cacherLoginThrottleStore(silent.cacher, 50).countFailure("k", Date.now())).rejects.toMatchObject({ code: 503, message: "Sign-in is unavailable for a moment, try again" });
		expect(Date.now() - started).toBeLessThan(1000);

		const refused = fakeCacher(() => Promise.reject(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" })));
		await expect(cacherLoginThrottleStore(refused.cacher).countFailure("k", Date.now())).rejects.toBeInstanceOf(ServiceUnavailableError);
	});
});
