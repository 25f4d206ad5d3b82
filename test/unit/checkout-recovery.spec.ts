import { checkoutRecoveryDue, followUpsDue, runnerIsGone, runnerState, type KnownNode, type RecoveryView, type SagaRunner } from "../../lib/checkout-recovery";

const self: SagaRunner = { nodeID: "checkout-1", instanceID: "run-2" };
const registry: Record<string, KnownNode> = {
	"checkout-2": { instanceID: "b-1", available: true },
	"checkout-3": { instanceID: "c-1", available: false },
};
const view: RecoveryView = {
	self,
	nodeOf: (id) => registry[id],
	discoverySettled: true,
	staleMs: 15 * 60_000,
	lostRunnerMs: 2 * 60_000,
	compensationRetryMs: 5000,
};
const now = new Date("2026-11-28T12:00:00Z");
const ago = (ms: number) => new Date(now.getTime() - ms);

describe("whose saga run is over", () => {
	test.each([
		["this node's current run", { nodeID: "checkout-1", instanceID: "run-2" }, true, false],
		["this node's previous run (it restarted)", { nodeID: "checkout-1", instanceID: "run-1" }, true, true],
		["a live node's current run", { nodeID: "checkout-2", instanceID: "b-1" }, true, false],
		["a live node's previous run (it restarted)", { nodeID: "checkout-2", instanceID: "b-0" }, true, true],
		["a node that left", { nodeID: "checkout-3", instanceID: "c-1" }, true, true],
		["a node never heard of", { nodeID: "checkout-9", instanceID: "z" }, true, true],
		// Just started: a live node may not have been heard from yet.
		["a node that left, before discovery settled", { nodeID: "checkout-3", instanceID: "c-1" }, false, false],
		["a node never heard of, before discovery settled", { nodeID: "checkout-9", instanceID: "z" }, false, false],
		["a restarted node, before discovery settled", { nodeID: "checkout-2", instanceID: "b-0" }, false, true],
		["this node's previous run, before discovery settled", { nodeID: "checkout-1", instanceID: "run-1" }, false, true],
	])("%s", (_what, runner, discoverySettled, gone) => {
		expect(runnerIsGone(runner, { ...view, discoverySettled })).toBe(gone);
	});

	test.each([
		["this node's current run", { nodeID: "checkout-1", instanceID: "run-2" }, "alive"],
		["this node's previous run", { nodeID: "checkout-1", instanceID: "run-1" }, "over"],
		["a restarted node's previous run", { nodeID: "checkout-2", instanceID: "b-0" }, "over"],
		// Not proof: a paused or cut-off process keeps its run and may carry on.
		["a node the registry lost", { nodeID: "checkout-3", instanceID: "c-1" }, "lost"],
		["a node never heard of", { nodeID: "checkout-9", instanceID: "z" }, "lost"],
	])("%s is %s", (_what, runner, state) => {
		expect(runnerState(runner, view)).toBe(state);
	});

	test("a checkout stored before runners were recorded has none to vouch for it", () => {
		expect(runnerIsGone(undefined, view)).toBe(false);
		expect(runnerIsGone(null, view)).toBe(false);
	});
});

describe("when an interrupted checkout is due for recovery", () => {
	test.each([
		["running on a live node", { state: "running", runner: { nodeID: "checkout-2", instanceID: "b-1" } }, ago(1000), false],
		["running on a node the registry lost, a moment ago", { state: "running", runner: { nodeID: "checkout-3", instanceID: "c-1" } }, ago(100), false],
		["running on a node the registry lost, long ago", { state: "running", runner: { nodeID: "checkout-3", instanceID: "c-1" } }, ago(2 * 60_000), true],
		["running on a node that came back as a new run", { state: "running", runner: { nodeID: "checkout-2", instanceID: "b-0" } }, ago(100), true],
		["running on this node's previous run", { state: "running", runner: { nodeID: "checkout-1", instanceID: "run-1" } }, ago(0), true],
		["running with no runner recorded, young", { state: "running" }, ago(60_000), false],
		["running with no runner recorded, past the stale window", { state: "running" }, ago(15 * 60_000), true],
		["running on a live node, past the stale window", { state: "running", runner: { nodeID: "checkout-2", instanceID: "b-1" } }, ago(16 * 60_000), true],
		["undoing failed a moment ago", { state: "compensation_failed", runner: { nodeID: "checkout-2", instanceID: "b-1" } }, ago(1000), false],
		["undoing failed a while ago", { state: "compensation_failed", runner: { nodeID: "checkout-2", instanceID: "b-1" } }, ago(5000), true],
		["completed", { state: "completed", runner: { nodeID: "checkout-3", instanceID: "c-1" } }, ago(60 * 60_000), false],
		["compensated", { state: "compensated" }, ago(60 * 60_000), false],
	])("%s", (_what, saga, updatedAt, due) => {
		expect(checkoutRecoveryDue({ id: "o1", saga, updatedAt }, now, view)).toBe(due);
	});

	test("a stored date string counts as the date", () => {
		expect(checkoutRecoveryDue({ id: "o1", saga: { state: "compensation_failed" }, updatedAt: ago(6000).toISOString() }, now, view)).toBe(true);
	});

	// Its saga ended here without recording how (its undoing failed, or the write of its end did: a full disk).
	test.each([
		["still driven here", true, ago(60_000), false],
		["no longer driven here, a moment ago", false, ago(1000), false],
		["no longer driven here, idle 5 s", false, ago(5000), true],
	])("this run's own running saga, %s", (_what, driven, updatedAt, due) => {
		const order = { id: "o1", saga: { state: "running", runner: self }, updatedAt };
		expect(checkoutRecoveryDue(order, now, { ...view, drivenHere: (id) => id === "o1" && driven })).toBe(due);
		// A view that cannot tell (no drivenHere) leaves it to its run, as before.
		expect(checkoutRecoveryDue(order, now, view)).toBe(false);
	});
});

describe("when an order's pending follow-ups need a driver", () => {
	const later = new Date(now.getTime() + 60_000);
	test.each([
		["nobody holds them and they have not moved for 5 s (their request failed)", { followUpLease: null, updatedAt: ago(5000) }, true],
		["nobody holds them, moved 4 s ago (the request may still retry)", { followUpLease: null, updatedAt: ago(4000) }, false],
		["an expired lease, idle long enough", { followUpLease: ago(1), updatedAt: ago(60_000) }, true],
		["a live run's lease", { followUpLease: later, followUpRunner: self, updatedAt: ago(60_000) }, false],
		["a lease of this node's previous run (it died holding it)", { followUpLease: later, followUpRunner: { nodeID: "checkout-1", instanceID: "run-1" }, updatedAt: ago(0) }, true],
		["a lease of a node back as a new run", { followUpLease: later, followUpRunner: { nodeID: "checkout-2", instanceID: "b-0" }, updatedAt: ago(0) }, true],
		// Lost is no proof: a paused process carries on, and its lease ends by itself.
		["a lease of a node that left", { followUpLease: later, followUpRunner: { nodeID: "checkout-3", instanceID: "c-1" }, updatedAt: ago(60_000) }, false],
		["a lease taken before runners were recorded", { followUpLease: later, updatedAt: ago(60_000) }, false],
		["a checkout still running (recovered as a checkout)", { saga: { state: "running" }, followUpLease: null, updatedAt: ago(60_000) }, false],
	])("%s: %s", (_what, order, due) => {
		expect(followUpsDue(order as any, now, view)).toBe(due);
	});
});
