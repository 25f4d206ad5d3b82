/** Reading a CPU profile for `npm run bench:profile`: the busy window and the shares in it. */
import { busyWindow, packageOf, summarize, summaryTables, type CpuProfile } from "../../bench/lib/profile";

const frame = (functionName: string, url = "", lineNumber = 0) => ({ functionName, url, lineNumber });

/** root → handler (dist/services/orders.service.js) → deepCopy (nedb), plus (idle) under root. */
function profile(seconds: Array<"idle" | "busy">): CpuProfile {
	const nodes = [
		{ id: 1, callFrame: frame("(root)"), children: [2, 4] },
		{ id: 2, callFrame: frame("handler", "file:///shop/dist/services/orders.service.js", 9), children: [3] },
		{ id: 3, callFrame: frame("deepCopy", "file:///shop/node_modules/@seald-io/nedb/lib/model.js", 110) },
		{ id: 4, callFrame: frame("(idle)") },
	];
	const samples: number[] = [];
	const timeDeltas: number[] = [];
	// Ten samples of 100 ms per second: a busy second is 3 in the handler, 7 in deepCopy.
	seconds.forEach((kind) => {
		for (let i = 0; i < 10; i++) {
			// The first sample at the profile's start, then one every 100 ms.
			timeDeltas.push(samples.length === 0 ? 0 : 100_000);
			samples.push(kind === "idle" ? 4 : i < 3 ? 2 : 3);
		}
	});
	return { nodes, startTime: 0, endTime: seconds.length * 1e6, samples, timeDeltas };
}

test("the window is the longest busy stretch", () => {
	const p = profile(["idle", "busy", "idle", "busy", "busy", "busy", "idle"]);
	expect(busyWindow(p)).toEqual({ from: 3, to: 6 });
	expect(busyWindow(profile(["idle", "idle"]))).toBeNull();
	expect(busyWindow(profile(["busy", "busy"]))).toEqual({ from: 0, to: 2 });
});

test("self time by package and function, and time with callees, over the window only", () => {
	const p = profile(["idle", "busy", "busy", "idle"]);
	const s = summarize(p, { from: 1, to: 3 });
	expect(s.idle).toBeCloseTo(0, 5);
	const share = (rows: { name: string; share: number }[], name: string) => rows.find((r) => r.name === name)?.share;
	expect(share(s.byPackage, "@seald-io/nedb")).toBeCloseTo(0.7, 5);
	expect(share(s.byPackage, "services/orders.service.js")).toBeCloseTo(0.3, 5);
	expect(share(s.selfByFunction, "deepCopy @seald-io/nedb:111")).toBeCloseTo(0.7, 5);
	expect(share(s.inclusiveByFunction, "handler services/orders.service.js:10")).toBeCloseTo(1, 5);
	expect(s.inclusiveByFunction.some((r) => r.name === "(root)")).toBe(false);
	const whole = summarize(p, { from: 0, to: 4 });
	// The last sample stands for no time: nothing follows it.
	expect(whole.idle).toBeCloseTo(19 / 39, 5);
	expect(summaryTables(s)).toContain("| deepCopy @seald-io/nedb:111 | 70.0% |");
});

test("packages: npm scoped and plain, the shop's own files, node's, V8's", () => {
	expect(packageOf(frame("f", "file:///x/node_modules/moleculer/src/context.js"))).toBe("moleculer");
	expect(packageOf(frame("f", "file:///x/node_modules/@seald-io/nedb/lib/model.js"))).toBe("@seald-io/nedb");
	expect(packageOf(frame("f", "file:///x/dist/mixins/collection.js"))).toBe("mixins/collection.js");
	expect(packageOf(frame("f", "node:internal/streams/readable"))).toBe("node:internal/streams/readable");
	expect(packageOf(frame("(garbage collector)"))).toBe("(garbage collector)");
});
