/** lib/sampled-log.ts: a repeated log line once per interval per key, with how many were held back. */
import { SampledLog } from "../../lib/sampled-log";

test("the first line of a key passes, the next ones within the interval are held back and counted when the next passes", () => {
	let now = 1_000;
	const log = new SampledLog(60_000, () => now);
	expect(log.pass("a")).toEqual({ heldBack: 0, sinceMs: 0 });
	expect(log.pass("a")).toBeNull();
	expect(log.pass("a")).toBeNull();
	expect(log.pass("b")).toEqual({ heldBack: 0, sinceMs: 0 });
	now += 60_000;
	expect(log.pass("a")).toEqual({ heldBack: 2, sinceMs: 60_000 });
	expect(log.pass("a")).toBeNull();
});
